"""Pieces every loader shares: the error type, the description of a data set, the request a
loader receives, and the in-memory dataset used by the static image data sets."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch.utils.data import Dataset

SPLITS = ("train", "test")


class DatasetError(Exception):
    """A data set that cannot be loaded; the message says which files to put where, or what to
    install. ``option``, when set, is the ``load_dataset`` parameter the fix concerns
    (``data_dir``): the message names that parameter, and a command-line tool names its own
    flag for it instead."""

    def __init__(self, message: str, option: Optional[str] = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class DatasetInfo:
    name: str                 # registry name, e.g. "fashion-mnist"
    input_shape: tuple        # one sample: (C, H, W) static, or (T, C, H, W) event frames
    num_classes: int
    class_names: Tuple[str, ...]
    event: bool               # True for event-frame data
    source: str               # where the data was read from


@dataclass(frozen=True)
class Request:
    """What the caller asked for, already checked for type and range by the registry."""
    name: str
    split: str
    data_dir: Optional[Path]
    augment: bool             # already False for the test split
    img_size: Optional[int]
    time_steps: Optional[int]
    event_counts: bool = False  # event data: count frames (split by number), not binary

    @property
    def train(self) -> bool:
        return self.split == "train"

    def check_native_size(self, size: int) -> None:
        """Static data sets are never resized silently: a different img_size is an error."""
        if self.img_size is not None and self.img_size != size:
            raise DatasetError(
                f"{self.name}: images are {size}x{size} and are not resized; got "
                f"img_size={self.img_size} (use img_size={size} or leave it unset)")

    def require_data_dir(self, what: str) -> Path:
        """The data directory for data sets that have no default location."""
        if self.data_dir is None:
            raise DatasetError(f"{self.name}: no data directory given; {what}, and pass that "
                               "folder as data_dir", option="data_dir")
        return self.data_dir


class InMemoryImages(Dataset):
    """A whole data set held as one tensor, stored compactly (uint8 for 8-bit images) and
    scaled to float32 in [0, 1] one sample at a time, so that memory stays at one byte per
    pixel while iteration needs no file access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, scale: float,
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.scale = float(scale)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = self.images[index].to(torch.float32) / self.scale
        if self.augment is not None:
            x = self.augment(x)
        return x, int(self.labels[index])
