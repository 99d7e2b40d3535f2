"""MNIST and Fashion-MNIST from their four IDX files."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from .augment import RandomShiftFlip
from .base import DatasetError, DatasetInfo, InMemoryImages, Request
from .idx import read_idx

SIZE = 28
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES = ", ".join(f"{n}[.gz]" for pair in FILES.values() for n in pair)


def load_mnist(req: Request):
    folder = req.require_data_dir(f"put the four MNIST IDX files ({ALL_FILES}) in a folder")
    # Digits are not mirror-symmetric: shift only.
    return _load(req, folder, DIGIT_CLASSES, RandomShiftFlip(pad=2, flip=False),
                 f"put the four MNIST IDX files ({ALL_FILES}) in {folder}", fix_option=None)


def load_fashion_mnist(req: Request):
    folder = req.data_dir if req.data_dir is not None else FASHION_MNIST_DIR
    fix = (f"install them with `apt-get install dataset-fashion-mnist` (they land in "
           f"{FASHION_MNIST_DIR}) or put the four IDX files ({ALL_FILES}) in a folder passed "
           "as data_dir")
    return _load(req, folder, FASHION_CLASSES, RandomShiftFlip(pad=2, flip=True), fix,
                 fix_option="data_dir")


def _load(req: Request, folder: Path, classes: Tuple[str, ...], augment: RandomShiftFlip,
          fix: str, fix_option: Optional[str]):
    """``fix``: what to do when files are missing; ``fix_option``: the parameter it names."""
    req.check_native_size(SIZE)
    images_name, labels_name = FILES[req.split]
    images_path = _find(folder, images_name)
    labels_path = _find(folder, labels_name)
    missing = [n for n, p in ((images_name, images_path), (labels_name, labels_path)) if p is None]
    if missing:
        raise DatasetError(f"{req.name}: {'[.gz], '.join(missing)}[.gz] not found in {folder}; "
                           f"{fix}", option=fix_option)
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check(images, labels, images_path, labels_path, len(classes))
    dataset = InMemoryImages(torch.from_numpy(images.copy()).unsqueeze(1),
                             torch.from_numpy(labels.astype(np.int64)), 255.0,
                             augment if req.augment else None)
    info = DatasetInfo(req.name, (1, SIZE, SIZE), len(classes), classes, False, str(folder))
    return dataset, info


def _find(folder: Path, name: str) -> Optional[Path]:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _check(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path,
           num_classes: int) -> None:
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise DatasetError(f"{images_path}: expected {SIZE}x{SIZE} images, found shape "
                           f"{images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected a vector of labels, found shape "
                           f"{labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                           f"{len(labels)} labels")
    if len(labels) and labels.max() >= num_classes:
        raise DatasetError(f"{labels_path}: label {labels.max()} is out of range for "
                           f"{num_classes} classes")
