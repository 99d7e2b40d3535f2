"""Where the reference executor computes, and the float settings under which its GEMMs are exact."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Union

import torch

from ..ir import OptionError

DeviceLike = Union[str, torch.device]


def resolve_device(device: DeviceLike) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", a torch.device) checked; an :class:`OptionError`
    on the parameter ``device`` when it names no usable device (a CUDA one without CUDA)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise OptionError(f"device {str(device)!r} is not 'cpu', 'cuda' or 'cuda:N'", "device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device {str(dev)!r} was asked for, but this machine has no "
                              f"usable CUDA GPU (torch {torch.__version__}: "
                              "torch.cuda.is_available() is False); use device 'cpu'", "device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OptionError(f"device {str(dev)!r}: this machine has "
                              f"{torch.cuda.device_count()} CUDA GPU(s)", "device")
    return dev


@contextmanager
def exact_float_math() -> Iterator[None]:
    """float32 GEMMs at full precision while the block runs, then the caller's settings back.

    TF32 (CUDA) and bf16 (oneDNN, ``set_float32_matmul_precision("medium")``) multiply with
    a 10- or 7-bit mantissa: the exactness bound of a float32 GEMM (every partial sum an
    integer below 2**24) holds only for true float32 products."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]
