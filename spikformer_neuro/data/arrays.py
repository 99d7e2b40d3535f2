"""Samples that are not a registered data set: a user's arrays (``.npy`` files given on the
command line), and another data set's samples reshaped for a network whose input is a vector.

Both are ordinary ``torch.utils.data.Dataset`` objects whose items are ``(x, label)`` like
every loader's: ``x`` a float32 tensor, ``label`` an int (-1 when the arrays came without
labels: :attr:`ArrayDataset.labelled` says whether they did). Checking the arrays against a
network is the compiler's business (``compiler.encoding.check_samples``), not this module's.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset


class ArrayDataset(Dataset):
    """Samples held as one array (``[B, ...]``), with optional integer labels (``[B]``)."""

    def __init__(self, x: np.ndarray, y: Optional[np.ndarray] = None) -> None:
        if y is not None and len(y) != len(x):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = None if y is None else np.asarray(y, dtype=np.int64)

    @property
    def labelled(self) -> bool:
        return self.y is not None

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        label = -1 if self.y is None else int(self.y[index])
        return torch.from_numpy(self.x[index]), label

    def head(self, n: int) -> "ArrayDataset":
        """The first ``n`` samples (all when there are fewer)."""
        return ArrayDataset(self.x[:n], None if self.y is None else self.y[:n])

    def arrays(self) -> Tuple[torch.Tensor, Optional[np.ndarray]]:
        """All samples as one tensor, and the labels (None without)."""
        return torch.from_numpy(self.x), self.y


class Reshaped(Dataset):
    """Another data set's samples reshaped row-major to ``shape`` (e.g. 8x8 images
    ``[1, 8, 8]`` as the vectors ``[64]`` an MLP takes); labels unchanged."""

    def __init__(self, dataset: Dataset, shape: Tuple[int, ...]) -> None:
        self.dataset = dataset
        self.shape = tuple(int(s) for s in shape)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, label = self.dataset[index]
        return x.reshape(self.shape), label


__all__ = ["ArrayDataset", "Reshaped"]
