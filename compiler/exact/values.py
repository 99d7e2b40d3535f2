"""Integer values held exactly in torch tensors, with a proven bound on their magnitude.

The bound decides the arithmetic (``loihi_numerics.exact_matmul.exact_path``): a float32
tensor holds every integer of magnitude below 2**24 exactly, float64 below 2**53, int64 any.
:class:`IntSeq` refuses a dtype its bound does not allow, so a value in a float tensor is
always an exact integer.

Layout: a timed map (a node of shape ``(C, H, W)``) is ``[T, B, H, W, C]``, channels last:
the token layout of attention and of the token-wise 1x1 convolutions, so that those are GEMMs
on the tensor as it lies. Untimed values (the readout, the head) are ``[B, K]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from loihi_numerics import exact_matmul
from loihi_numerics.constants import INT32_MIN

_TORCH_DTYPE = {exact_matmul.PATH_FLOAT32: torch.float32,
                exact_matmul.PATH_FLOAT64: torch.float64,
                exact_matmul.PATH_INT64: torch.int64}
_BITS = {torch.float32: 24, torch.float64: 53}    # significand bits: the exact integers


def exact_dtype(bound: int) -> torch.dtype:
    """The cheapest torch dtype in which integers, and sums of products, whose magnitudes
    stay ``<= bound`` are exact (``exact_matmul.exact_path``; the limits are read at each call,
    so tests can lower them to force the float64 and int64 paths)."""
    return _TORCH_DTYPE[exact_matmul.exact_path(int(bound))]


def holds(dtype: torch.dtype, bound: int) -> bool:
    """Whether ``dtype`` represents every integer of magnitude ``<= bound`` exactly."""
    bits = _BITS.get(dtype)
    return bits is None or bound <= (1 << bits)


@dataclass(frozen=True)
class IntSeq:
    """An integer-valued tensor and a proven bound on its magnitude.

    ``binary``: every value is 0 or 1 (spikes), which binary convolutions take as they are.
    ``data`` may be a strided view; every consumer reads it through torch ops."""

    data: torch.Tensor
    bound: int
    binary: bool = False

    def __post_init__(self):
        if self.data.dtype not in (torch.float32, torch.float64, torch.int64):
            raise TypeError(f"IntSeq holds float32, float64 or int64 data, not {self.data.dtype}")
        if not holds(self.data.dtype, self.bound):
            raise ValueError(f"bound {self.bound} exceeds the exact integers of {self.data.dtype}")

    def as_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        """The values in ``dtype``; exact because the caller chose ``dtype`` from a bound at
        least this value's."""
        if not holds(dtype, self.bound):
            raise ValueError(f"{dtype} cannot hold values up to {self.bound} exactly")
        return self.data if self.data.dtype == dtype else self.data.to(dtype)

    def tightened(self) -> "IntSeq":
        """The same values with the bound replaced by their actual max |value| when smaller
        (one reduction; worth it only where the propagated bound forces a slower path)."""
        if self.data.numel() == 0:
            return IntSeq(self.data, 0, self.binary)
        actual = int(self.data.abs().max().item()) if self.data.dtype != torch.int64 else \
            max(abs(int(self.data.max().item())), abs(int(self.data.min().item())))
        return IntSeq(self.data, min(self.bound, actual), self.binary)


def max_abs(x: np.ndarray) -> int:
    """Exact ``max |x|`` of an integer array as a Python int (0 if empty; no int64 overflow)."""
    return max(abs(int(x.max())), abs(int(x.min()))) if x.size else 0


def from_numpy(x: np.ndarray, device: torch.device, binary: Optional[bool] = None) -> IntSeq:
    """An int64 array in the IR's layout (``[T, B, C, H, W]`` timed maps, else ``[B, K]``) as
    an :class:`IntSeq` in the cheapest exact dtype, channels last, on ``device``."""
    x = np.asarray(x, dtype=np.int64)
    bound = max_abs(x)
    if binary is None:
        binary = bool(x.size == 0 or (x.min() >= 0 and x.max() <= 1))
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dim() == 5:
        t = t.permute(0, 1, 3, 4, 2)
    t = t.to(device=device, dtype=exact_dtype(bound)).contiguous()
    return IntSeq(t, bound, binary)


def to_numpy(value: IntSeq) -> np.ndarray:
    """The values as an int64 numpy array in the IR's layout (``[T, B, C, H, W]``, ``[B, K]``)."""
    t = value.data
    if t.dim() == 5:
        t = t.permute(0, 1, 4, 2, 3)
    return t.to(torch.int64).cpu().contiguous().numpy()


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor into ``bits`` signed bits: exactly
    ``loihi_numerics.fixed_point.wrap_signed`` (the same formula, in torch)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def add_int32(values: List[IntSeq]) -> IntSeq:
    """Lava's fan-in: several messages into one port are added in int32.

    While the bounds add up to less than 2**31 the int32 sum cannot wrap and is the plain
    sum, computed in the dtype the summed bound allows (every partial sum is below it, so
    float additions are exact). Otherwise int64 then the 32-bit wrap."""
    if len(values) == 1:
        return values[0]
    total = sum(v.bound for v in values)
    dtype = exact_dtype(total) if total < 1 << 31 else torch.int64
    acc = values[0].as_dtype(dtype)
    for v in values[1:]:
        acc = acc + v.as_dtype(dtype)
    if total < 1 << 31:
        return IntSeq(acc, total)
    return IntSeq(wrap_signed(acc, 32), -INT32_MIN)
