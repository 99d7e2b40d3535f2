"""CIFAR-10 and CIFAR-100 from the "python version" archives the user already has.

Layout (data_dir may be the folder itself or its parent):
  cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
  cifar-100-python/     train, test, meta
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from .augment import RandomShiftFlip
from .base import DatasetError, DatasetInfo, InMemoryImages, Request
from .safe_pickle import load_pickle

SIZE = 32
PIXELS = 3 * SIZE * SIZE  # rows store the red, then green, then blue 32x32 planes


@dataclass(frozen=True)
class _Layout:
    folder: str
    files: Dict[str, Tuple[str, ...]]  # split -> batch files
    meta: str
    labels_key: bytes
    names_key: bytes
    archive: str


CIFAR10 = _Layout("cifar-10-batches-py",
                  {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                   "test": ("test_batch",)},
                  "batches.meta", b"labels", b"label_names", "cifar-10-python.tar.gz")
CIFAR100 = _Layout("cifar-100-python", {"train": ("train",), "test": ("test",)},
                   "meta", b"fine_labels", b"fine_label_names", "cifar-100-python.tar.gz")


def load_cifar10(req: Request):
    return _load(req, CIFAR10)


def load_cifar100(req: Request):
    return _load(req, CIFAR100)


def _load(req: Request, layout: _Layout):
    req.check_native_size(SIZE)
    what = (f"extract {layout.archive} (from https://www.cs.toronto.edu/~kriz/cifar.html) so "
            f"that a folder {layout.folder}/ holds {', '.join(_all_files(layout))}")
    folder = _resolve(req.require_data_dir(what), layout, req.name, what)
    class_names = _class_names(folder / layout.meta, layout.names_key)
    images, labels = [], []
    for name in layout.files[req.split]:
        batch_images, batch_labels = _read_batch(folder / name, layout.labels_key,
                                                 len(class_names))
        images.append(batch_images)
        labels.append(batch_labels)
    augment = RandomShiftFlip(pad=4, flip=True) if req.augment else None
    dataset = InMemoryImages(torch.from_numpy(np.concatenate(images)),
                             torch.from_numpy(np.concatenate(labels)), 255.0, augment)
    info = DatasetInfo(req.name, (3, SIZE, SIZE), len(class_names), class_names, False,
                       str(folder))
    return dataset, info


def _all_files(layout: _Layout) -> List[str]:
    return [f for split in ("train", "test") for f in layout.files[split]] + [layout.meta]


def _resolve(data_dir: Path, layout: _Layout, name: str, what: str) -> Path:
    """data_dir itself when it holds the files, else its `layout.folder` subfolder."""
    for folder in (data_dir, data_dir / layout.folder):
        if (folder / layout.meta).is_file():
            missing = [f for f in _all_files(layout) if not (folder / f).is_file()]
            if missing:
                raise DatasetError(f"{name}: {folder} lacks {', '.join(missing)}; {what}")
            return folder
    raise DatasetError(f"{name}: no {layout.meta} in {data_dir} or {data_dir / layout.folder}; "
                       f"{what}, and pass its parent or the folder itself as data_dir",
                       option="data_dir")


def _get(record, key: bytes, path: Path):
    """Value of `key` in an unpickled dict; files re-pickled by Python 3 may use str keys."""
    if isinstance(record, dict):
        for candidate in (key, key.decode()):
            if candidate in record:
                return record[candidate]
    raise DatasetError(f"{path}: not a CIFAR file (no {key!r} entry)")


def _class_names(path: Path, key: bytes) -> Tuple[str, ...]:
    names = _get(load_pickle(path), key, path)
    if not isinstance(names, list) or not names or \
            not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"{path}: {key!r} is not a list of class names")
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)


def _read_batch(path: Path, labels_key: bytes, num_classes: int):
    record = load_pickle(path)
    data = _get(record, b"data", path)
    labels = np.asarray(_get(record, labels_key, path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        raise DatasetError(f"{path}: expected uint8 data of shape (N, {PIXELS}), found "
                           f"{getattr(data, 'dtype', type(data).__name__)} "
                           f"{getattr(data, 'shape', '')}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: expected {len(data)} integer labels, found "
                           f"{labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels must lie in 0..{num_classes - 1}, found "
                           f"{labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, SIZE, SIZE), labels.astype(np.int64)
