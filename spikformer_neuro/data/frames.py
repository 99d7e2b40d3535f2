"""Binning of event streams into a fixed number of frames, without tonic: binary frames
(windows of equal time), or event-count frames as the official Spikformer's CIFAR10-DVS
pipeline makes them (spikingjelly's split_by='number')."""
from __future__ import annotations

import numpy as np


def events_to_frames(events: np.ndarray, time_steps: int, height: int, width: int) -> np.ndarray:
    """Frames of shape (time_steps, 2, height, width), float32, from a structured event array
    with fields x, y, p, t.

    Time is cut like tonic.transforms.ToFrame(n_time_bins=time_steps): windows of equal length
    (t_last - t_first) // time_steps starting at the first event, events past the last whole
    window dropped (a recording shorter than time_steps ticks gets 1-tick windows). Channel 0
    holds events with p <= 0 (OFF; p is 0/1 or -1/+1 depending on the data set), channel 1
    those with p > 0 (ON). Events outside the sensor are dropped.

    Frames are binary: a pixel is 1.0 when it saw at least one event in the window, 0.0
    otherwise. Counts would depend on sensor activity and recording length, and a spiking
    network's input layer treats its input as spikes anyway.
    """
    frames = np.zeros((time_steps, 2, height, width), dtype=np.float32)
    if len(events) == 0:
        return frames
    t = events["t"].astype(np.int64)
    t0 = t.min()
    window = max((t.max() - t0) // time_steps, 1)
    step = (t - t0) // window
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    channel = (events["p"].astype(np.int64) > 0).astype(np.int64)
    keep = (step < time_steps) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    frames[step[keep], channel[keep], y[keep], x[keep]] = 1.0
    return frames


def events_to_count_frames(events: np.ndarray, time_steps: int, height: int,
                           width: int) -> np.ndarray:
    """Event-count frames of shape (time_steps, 2, height, width), float32, as spikingjelly's
    ``integrate_events_by_fixed_frames_number(events, 'number', ...)`` makes them (the
    official Spikformer's CIFAR10-DVS input): the N events, in the order the recording holds
    them, cut into time_steps segments of N // time_steps events (the last segment takes the
    remainder), and each pixel of each segment holds how many events it saw. Channel 0 holds
    events with p <= 0, channel 1 those with p > 0 (spikingjelly indexes the channel by p,
    which is 0/1 there). Events outside the sensor are dropped."""
    frames = np.zeros((time_steps, 2, height, width), dtype=np.float32)
    n = len(events)
    if n == 0:
        return frames
    per = n // time_steps
    segment = np.minimum(np.arange(n) // per, time_steps - 1) if per else \
        np.full(n, time_steps - 1)   # fewer events than frames: all in the last segment
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    channel = (events["p"].astype(np.int64) > 0).astype(np.int64)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    flat = ((segment * 2 + channel) * height + y) * width + x
    counts = np.bincount(flat[keep], minlength=frames.size)
    return counts.reshape(frames.shape).astype(np.float32)
