"""Data sets for training and evaluating Spikformer: small bundled or system-installed ones
that work offline, and loaders for the paper's data sets that read files the user already has.
Nothing is ever downloaded."""
from .base import DatasetError, DatasetInfo
from .registry import dataset_names, load_dataset

__all__ = ["DatasetError", "DatasetInfo", "dataset_names", "load_dataset"]
