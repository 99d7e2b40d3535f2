"""DVS128 Gesture and CIFAR10-DVS: recordings the user already has, read by tonic (optional
extra `tonic==1.7.0`) and binned into binary frames (see frames.events_to_frames), or, for a
network that takes event counts, into count frames split by event number as the official
Spikformer code does (frames.events_to_count_frames).

data_dir is tonic's save_to folder (or the data set's folder inside it), in tonic 1.7.0's
layout, archive included because tonic checks for it:
  DVSGesture/ibmGestureTrain.tar.gz, ibmGestureTrain/user*/<label>.npy (and the same for Test)
  CIFAR10DVS/CIFAR10DVS.zip, CIFAR10DVS/<class>/*.aedat4
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from .base import DatasetError, DatasetInfo, Request
from .frames import events_to_count_frames, events_to_frames

SENSOR = 128
DEFAULT_TIME_STEPS = 16  # the paper's T on both event data sets
GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise",
                   "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar",
                   "other_gestures")
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck")
# CIFAR10-DVS has no official split; like the Spikformer paper we test on 10% of each class.
CIFAR10_DVS_TEST_FRACTION = 0.1
INSTALL = "`pip install tonic==1.7.0` (or `pip install spikformer-neuro[events]`)"


@dataclass(frozen=True)
class _Files:
    folder: str       # tonic's folder under save_to (its class name)
    archive: str      # tonic 1.7.0 insists on finding the archive next to its contents
    recordings: str   # where the recordings lie, relative to `folder`
    suffix: str
    min_count: int    # tonic 1.7.0 tries to download when it finds fewer recordings
    url: str          # where tonic would fetch the archive from


_GESTURE_URL = "https://figshare.com/ndownloader/files/"
_GESTURE = {
    "train": _Files("DVSGesture", "ibmGestureTrain.tar.gz", "ibmGestureTrain", ".npy", 100,
                    _GESTURE_URL + "38022171"),
    "test": _Files("DVSGesture", "ibmGestureTest.tar.gz", "ibmGestureTest", ".npy", 100,
                   _GESTURE_URL + "38020584"),
}
_CIFAR10_DVS = _Files("CIFAR10DVS", "CIFAR10DVS.zip", "", ".aedat4", 1000,
                      "https://figshare.com/ndownloader/files/38023437")


class EventFrames(Dataset):
    """The recordings `indices` of a tonic data set, as (T, 2, H, W) binary frames, or event
    counts with ``counts``.

    Recordings are read and binned on access: event data sets are far too large to hold as
    frames in memory.
    """

    def __init__(self, recordings, indices: Sequence[int], time_steps: int,
                 counts: bool = False) -> None:
        self.recordings = recordings
        self.indices = list(indices)
        self.time_steps = time_steps
        self.binning = events_to_count_frames if counts else events_to_frames

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        events, label = self.recordings[self.indices[index]]
        frames = self.binning(events, self.time_steps, SENSOR, SENSOR)
        return torch.from_numpy(frames), int(label)


def load_dvs_gesture(req: Request):
    req.check_native_size(SENSOR)
    files = _GESTURE[req.split]
    save_to = _check_files(req, files)
    recordings = _tonic_offline(req.name).DVSGesture(save_to=str(save_to), train=req.train)
    return _result(req, recordings, range(len(recordings)), GESTURE_CLASSES,
                   save_to / files.folder)


def load_cifar10_dvs(req: Request):
    req.check_native_size(SENSOR)
    save_to = _check_files(req, _CIFAR10_DVS)
    offline = _tonic_offline(req.name)
    _require_aedat(req.name)
    recordings = offline.CIFAR10DVS(save_to=str(save_to))
    train, test = split_per_class(recordings.data, recordings.targets,
                                  CIFAR10_DVS_TEST_FRACTION)
    return _result(req, recordings, train if req.train else test, CIFAR10_DVS_CLASSES,
                   save_to / _CIFAR10_DVS.folder)


def split_per_class(paths: Sequence[str], labels: Sequence[int],
                    test_fraction: float) -> Tuple[List[int], List[int]]:
    """Indices of a fixed train/test split: in each class, sorted by file path, the last
    round(test_fraction * count) recordings are the test set. Sorting makes the split
    independent of the order in which the file system lists the files."""
    by_class: Dict[int, List[int]] = {}
    for i in sorted(range(len(paths)), key=lambda i: str(paths[i])):
        by_class.setdefault(int(labels[i]), []).append(i)
    train: List[int] = []
    test: List[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        n_test = round(test_fraction * len(members))
        train += members[:len(members) - n_test]
        test += members[len(members) - n_test:]
    return train, test


def _result(req: Request, recordings, indices, classes: Tuple[str, ...], source: Path):
    time_steps = req.time_steps or DEFAULT_TIME_STEPS
    info = DatasetInfo(req.name, (time_steps, 2, SENSOR, SENSOR), len(classes), classes, True,
                       str(source))
    return EventFrames(recordings, indices, time_steps, counts=req.event_counts), info


def _check_files(req: Request, files: _Files) -> Path:
    """tonic's save_to folder, after checking that tonic will find the files without trying
    to download them (its own check, repeated here to give a clear message)."""
    data_dir = req.require_data_dir(
        f"put {files.archive} (tonic fetches it from {files.url}) and its extracted contents in "
        f"a folder {files.folder}/")
    save_to = data_dir.parent if data_dir.name == files.folder else data_dir
    root = save_to / files.folder
    archive = root / files.archive
    found = sum(1 for _ in islice((root / files.recordings).glob(f"**/*{files.suffix}"),
                                  files.min_count))
    if not archive.is_file() or found < files.min_count:
        place = root / files.recordings if files.recordings else f"class folders in {root}"
        raise DatasetError(
            f"{req.name}: recordings missing or incomplete in {root} (archive {files.archive}: "
            f"{'present' if archive.is_file() else 'missing'}; *{files.suffix} recordings "
            f"found: {found}{'+' if found == files.min_count else ''}). tonic 1.7.0 needs the "
            f"archive there (from {files.url}) and at least {files.min_count} recordings "
            f"extracted into {place}. Nothing is downloaded here: put them there yourself.")
    return save_to


def _tonic_offline(name: str):
    try:
        from . import tonic_offline
    except ImportError as exc:
        raise DatasetError(f"{name}: reading event recordings needs the optional package tonic "
                           f"({exc}); install it with {INSTALL}") from exc
    return tonic_offline


def _require_aedat(name: str) -> None:
    """tonic reads .aedat4 files through the aedat package but does not depend on it (it is in
    tonic's test extra only): fail here with the fix rather than on the first sample, possibly
    inside a DataLoader worker."""
    try:
        import aedat  # noqa: F401
    except ImportError as exc:
        raise DatasetError(f"{name}: tonic reads .aedat4 recordings through the package aedat "
                           f"({exc}); install it with `pip install aedat`") from exc
