"""tonic's event data sets with downloading switched off.

tonic downloads whenever its own check finds the files incomplete. These subclasses raise
instead, so nothing is ever fetched whatever that check decides. They keep tonic's class
names because tonic derives the folder it reads (save_to/<class name>) from them, and they live
at module level so DataLoader workers can unpickle them. Importing this module needs tonic.
"""
from __future__ import annotations

import tonic.datasets

from .base import DatasetError


def _refuse_download(self) -> None:
    raise DatasetError(f"{self.location_on_system}: tonic finds the files incomplete and would "
                       f"download {self.filename}, but downloading is disabled; put "
                       f"{self.filename} and its extracted contents in that folder")


class DVSGesture(tonic.datasets.DVSGesture):
    download = _refuse_download


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    download = _refuse_download
