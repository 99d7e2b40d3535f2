"""Cheap per-sample augmentation with torch ops (no PIL round trip)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RandomShiftFlip:
    """Random crop of the image zero-padded by `pad` pixels (a shift of up to `pad` pixels in
    each direction) and, if `flip`, a horizontal flip with probability 1/2.

    Draws from torch's global generator, so torch.manual_seed and DataLoader worker seeding
    make it reproducible.
    """
    pad: int
    flip: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            h, w = x.shape[-2:]
            padded = F.pad(x, (self.pad,) * 4)
            top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = padded[..., top:top + h, left:left + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x
