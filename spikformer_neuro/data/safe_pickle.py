"""A restricted unpickler for the CIFAR "python version" files.

Those files are pickles, and plain pickle.load runs whatever callable a file names. The genuine
files need only numpy's array reconstruction, so every other global is refused before it can
be looked up, let alone called.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .base import DatasetError

_ALLOWED = frozenset({
    # ndarray.__reduce__ (numpy 1.x module names, and numpy 2.x ones for files re-pickled there)
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocol 2.
    ("_codecs", "encode"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        # encoding="bytes" reads the Python 2 strings of the genuine files as bytes,
        # which is how their keys (b"data", b"labels", ...) are documented.
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise DatasetError(f"{self._path}: refusing to unpickle the global {module}.{name}; "
                               f"a genuine CIFAR file only holds numpy arrays, lists and "
                               f"strings, so this file is not one (corrupt or malicious)")
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    """The object stored in `path`, with globals limited to numpy array reconstruction."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DatasetError:
        raise
    except Exception as exc:  # a malformed pickle can fail in many ways; all mean "corrupt"
        raise DatasetError(f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is "
                           f"truncated or corrupt") from exc
