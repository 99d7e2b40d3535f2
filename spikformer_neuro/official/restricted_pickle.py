"""A pickle module for ``torch.load(pickle_module=...)`` that can only build data.

Checkpoints of the official Spikformer code hold an ``argparse.Namespace`` (the training
arguments), which torch 2.3.1's weights-only unpickler refuses and which it has no way to
admit (``add_safe_globals`` came later). Loading them with plain pickle would run whatever
a file names. This module's :class:`Unpickler` resolves a global only when it is on an
allowlist: everything torch's own weights-only unpickler admits (tensors, storages, their
rebuild functions, ``OrderedDict``, dtypes, ``torch.Size``) plus ``argparse.Namespace``.
Every global of a pickle, however deeply nested (a ``__reduce__`` inside a list inside the
optimizer state), goes through ``find_class`` before it can be called, so anything else --
``os.system``, ``builtins.eval``, a class of some training script -- raises
:class:`RefusedGlobal` and nothing of it ever runs (Python's "Restricting Globals" recipe).
"""
from __future__ import annotations

import _compat_pickle
import argparse
import pickle
from typing import Any, Dict

from torch._weights_only_unpickler import _get_allowed_globals

NAMESPACE = "argparse.Namespace"


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside the allowlist; ``name`` is ``module.qualname``."""

    def __init__(self, name: str):
        super().__init__(f"global '{name}' is not allowed")
        self.name = name


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come from the allowlist only."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # A subclass of its own per load: a pickle may set attributes on a class it names
        # (BUILD on the class object), and must not change argparse.Namespace for the
        # rest of the process.
        namespace = type("Namespace", (argparse.Namespace,), {"__module__": "argparse"})
        self._allowed: Dict[str, Any] = {**_get_allowed_globals(), NAMESPACE: namespace}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 (torch.save's) writes Python 3 names the Python 2 way (__builtin__.exec)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        try:
            return self._allowed[full]
        except KeyError:
            raise RefusedGlobal(full) from None


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with the restricted :class:`Unpickler` (torch.load's legacy path
    calls it; the zip path that the container reader admits uses :class:`Unpickler`)."""
    return Unpickler(file, **kwargs).load()
