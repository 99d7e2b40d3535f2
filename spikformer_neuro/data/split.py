"""A held-out validation split of a training set: stratified, seeded, recorded by a digest.

Model selection (which epoch becomes the best checkpoint) must not look at the test split, or
the test accuracy it reports is biased upwards. The validation samples come from the training
split instead; `stratified_split` is a pure function of the labels, the fraction and the seed,
so every process of a distributed run, and every resumed run, draws the same one.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Tuple

import numpy as np
from torch.utils.data import Dataset, Subset

from .base import InMemoryImages
from .events import EventFrames
from .imagefolder import ImageFolderData


def dataset_labels(ds: Dataset) -> np.ndarray:
    """The label of every sample of ``ds``, in order, as int64.

    The project's data sets keep their labels apart from the samples, so this reads no images
    or event recordings; any other data set is read sample by sample, without augmentation
    (which would draw from torch's global generator and shift a seeded run)."""
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices, dtype=np.int64)]
    if isinstance(ds, InMemoryImages):
        return ds.labels.numpy().astype(np.int64)
    if isinstance(ds, ImageFolderData):
        return np.asarray(ds.folder.targets, dtype=np.int64)
    if isinstance(ds, EventFrames) and hasattr(ds.recordings, "targets"):
        targets = ds.recordings.targets
        return np.asarray([int(targets[i]) for i in ds.indices], dtype=np.int64)
    plain = without_augmentation(ds)
    return np.asarray([int(plain[i][1]) for i in range(len(plain))], dtype=np.int64)


def without_augmentation(ds: Dataset) -> Dataset:
    """A view of ``ds`` that serves its samples unaugmented (validation must see what the test
    split sees); it shares the data, it does not load it again."""
    if isinstance(ds, Subset):
        return Subset(without_augmentation(ds.dataset), ds.indices)
    if getattr(ds, "augment", None) is not None:
        plain = copy.copy(ds)
        plain.augment = None
        return plain
    return ds


def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions into ``labels``, each sorted, disjoint, covering all.

    round(fraction * N) samples are held out, spread over the classes in proportion to their
    sizes (largest remainder: each class gives floor or ceil of fraction * its size). A class
    always keeps at least one training sample. Which members of a class are held out is drawn
    from numpy's PCG64 seeded with ``seed``, independent of torch's generators.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = fraction * counts
    quota = np.floor(exact).astype(np.int64)
    missing = int(np.floor(fraction * len(labels) + 0.5)) - int(quota.sum())
    # Largest fractional part first; ties go to the smaller class label (stable sort).
    for c in np.argsort(-(exact - quota), kind="stable"):
        if missing <= 0:
            break
        if quota[c] + 1 <= counts[c] - 1:
            quota[c] += 1
            missing -= 1
    rng = np.random.Generator(np.random.PCG64(seed % 2**64))  # negative seeds are fine too
    held_out = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    val = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def indices_digest(indices: np.ndarray) -> str:
    """SHA-256 of the positions (as little-endian int64): names a split in a few bytes."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()
