"""Data sets by name: argument checks common to all, then the data set's own loader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from torch.utils.data import Dataset

from . import cifar, digits, events, imagefolder, mnist
from .base import SPLITS, DatasetError, DatasetInfo, Request

_LOADERS: Dict[str, Callable[[Request], Tuple[Dataset, DatasetInfo]]] = {
    "digits": digits.load,
    "mnist": mnist.load_mnist,
    "fashion-mnist": mnist.load_fashion_mnist,
    "cifar10": cifar.load_cifar10,
    "cifar100": cifar.load_cifar100,
    "imagefolder": imagefolder.load,
    "dvs-gesture": events.load_dvs_gesture,
    "cifar10-dvs": events.load_cifar10_dvs,
}


#: data sets whose samples are event frames (DatasetInfo.event)
EVENT_DATASETS = ("dvs-gesture", "cifar10-dvs")


def dataset_names() -> List[str]:
    return list(_LOADERS)


def load_dataset(name: str, split: str, data_dir: Union[str, os.PathLike, None] = None, *,
                 augment: bool = False, img_size: Optional[int] = None,
                 time_steps: Optional[int] = None,
                 event_counts: bool = False) -> Tuple[Dataset, DatasetInfo]:
    """One split of a data set and its description.

    Samples are (x, label): x a float32 tensor in [0, 1] (not normalised: the model does
    that) of shape info.input_shape, label an int.

    augment: random shifts (and flips where the classes allow) on the train split; it has no
    effect on the test split or on event data.
    img_size: the side of the images. Only imagefolder resizes (default 32); for the other
    data sets a value other than the native size is an error.
    time_steps: number of frames per event recording (default 16); static data sets ignore
    it, the model repeats their images over time.
    event_counts: event data as count frames split by event number (the official Spikformer's
    CIFAR10-DVS input, for networks that take counts) instead of binary frames.
    """
    if name not in _LOADERS:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(_LOADERS)}")
    if split not in SPLITS:
        raise DatasetError(f"{name}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    for key, value in (("img_size", img_size), ("time_steps", time_steps)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise DatasetError(f"{name}: {key} must be a positive integer, got {value!r}")
    if event_counts and name not in EVENT_DATASETS:
        raise DatasetError(f"{name}: event counts come from event recordings "
                           f"({', '.join(EVENT_DATASETS)}); {name} holds static images")
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    request = Request(name, split, directory, bool(augment) and split == "train", img_size,
                      time_steps, bool(event_counts))
    return _LOADERS[name](request)
