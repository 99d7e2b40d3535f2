"""scikit-learn's bundled 8x8 digits (1797 images), with a fixed train/test split."""
from __future__ import annotations

import numpy as np
import torch

from .augment import RandomShiftFlip
from .base import DatasetInfo, InMemoryImages, Request

SIZE = 8
CLASSES = tuple(str(d) for d in range(10))
MAX_VALUE = 16.0  # pixel values are counts 0..16
# The split is part of the data set's definition: a fixed seed keeps every run comparable.
TEST_SIZE = 0.2
SPLIT_SEED = 0


def load(req: Request):
    # scikit-learn costs ~0.3 s to import: only when the digits are read, not for every
    # command that imports the data package
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    req.check_native_size(SIZE)
    bunch = load_digits()
    images = bunch.images.astype(np.float32)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE,
                                           random_state=SPLIT_SEED, stratify=labels)
    idx = train_idx if req.train else test_idx
    # On an 8x8 image a larger shift would cut off strokes; digits are never flipped.
    augment = RandomShiftFlip(pad=1, flip=False) if req.augment else None
    dataset = InMemoryImages(torch.from_numpy(images[idx]).unsqueeze(1),
                             torch.from_numpy(labels[idx]), MAX_VALUE, augment)
    info = DatasetInfo(req.name, (1, SIZE, SIZE), len(CLASSES), CLASSES, False,
                       "scikit-learn bundled")
    return dataset, info
