"""Event-count frames (the official Spikformer's CIFAR10-DVS input) equal those of the real
spikingjelly 0.0.0.0.12 (``integrate_events_by_fixed_frames_number(..., 'number', ...)``, the
binning its CIFAR10DVS data set uses), and the data sets hand them to count networks."""
import numpy as np
import pytest

from spikformer_neuro.data import DatasetError, load_dataset
from spikformer_neuro.data.frames import events_to_count_frames
from support.requirements import import_interop

EVENTS = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])


def _random_events(rng, n, side=16):
    ev = np.zeros(n, dtype=EVENTS)
    ev["t"] = np.sort(rng.integers(0, 10 ** 6, n))
    ev["x"], ev["y"] = rng.integers(0, side, n), rng.integers(0, side, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


@pytest.mark.parametrize("n,time_steps", [(5000, 16), (1003, 10), (17, 16), (5, 16), (0, 4),
                                          (100, 1)])
def test_count_frames_equal_spikingjelly(n, time_steps):
    sj = import_interop("spikingjelly.datasets", "spikingjelly")
    rng = np.random.default_rng(n)
    ev = _random_events(rng, n)
    got = events_to_count_frames(ev, time_steps, 16, 16)
    if n == 0:   # spikingjelly cannot bin an empty recording; ours is all zeros
        assert got.shape == (time_steps, 2, 16, 16) and not got.any()
        return
    want = sj.integrate_events_by_fixed_frames_number(
        {k: ev[k].astype(np.int64) for k in ("t", "x", "y", "p")}, "number", time_steps, 16, 16)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert got.sum() == n and (n < 50 or got.max() > 1)   # counts, not binary


def test_count_frames_drop_events_off_the_sensor_and_read_signed_polarity():
    ev = np.array([(0, 1, 1, -1), (1, 1, 1, 1), (2, 1, 1, 1), (3, 20, 1, 1), (4, 1, -2, 1),
                   (5, 0, 0, -1)], dtype=EVENTS)
    frames = events_to_count_frames(ev, 2, 8, 8)     # segments of 3 events
    assert frames[0, 0, 1, 1] == 1 and frames[0, 1, 1, 1] == 2
    assert frames[1, 0, 0, 0] == 1 and frames.sum() == 4


def test_counts_are_refused_for_static_data_sets():
    with pytest.raises(DatasetError, match="digits: event counts come from event recordings"):
        load_dataset("digits", "test", event_counts=True)
