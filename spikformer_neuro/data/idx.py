"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

Every header field is checked against the file length, so a truncated or corrupt download is
reported with its name instead of surfacing as a reshape error later.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .base import DatasetError

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08  # IDX element type of every MNIST-style file


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise DatasetError(f"{path}: IDX element type 0x{raw[2]:02x}, expected unsigned bytes "
                           f"(0x{_UBYTE:02x})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path}: IDX header is truncated or corrupt")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: holds {len(raw) - header} data bytes but its header "
                           f"announces {expected} for shape {dims} (truncated or corrupt file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        # Decide by content, not by name: some copies are gunzipped but keep ".gz", or not.
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); the file is truncated or corrupt") from exc
