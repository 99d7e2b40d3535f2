"""Exact integer matrix products through floating-point BLAS.

The accelerated Lava models need ``x @ M`` for an integer matrix ``M`` that is
fixed between steps and integer inputs ``x`` that change every step. Integer
products have no BLAS; float products are fast but only *exact* in a known
range. This module decides, from the actual numbers, which path is exact.

Exactness argument (the "proof" the models rely on)
---------------------------------------------------
Let ``y[n] = sum_k x[k] * M[k, n]`` with integer ``x`` and ``M``. Put

    R = max_n sum_k |M[k, n]|          (computed once, exactly, in int64)
    m = max_k |x[k]|                    (computed per call, exactly)

so every product and every partial sum -- in *any* summation order, blocked or
not, with or without FMA -- is an integer of magnitude at most ``R * m``
(each partial sum is a sum over a subset of the terms ``x[k] * M[k, n]``).

A binary floating-point format with a ``p``-bit significand represents every
integer of magnitude ``<= 2**p`` exactly, and an IEEE-754 operation (``*``,
``+`` or fused ``a*b + c``) whose exact result is representable returns it
unrounded. By induction over the operations BLAS performs, every intermediate
value is then the exact integer, and so is the result. Hence:

* ``R * m < 2**24``  -> float32 GEMM/GEMV is exact (p = 24);
* ``R * m < 2**53``  -> float64 GEMM/GEMV is exact (p = 53);
* otherwise          -> an int64 ``einsum`` is used, which is exact modulo
  2**64, i.e. it wraps exactly like numpy's own int64 (and, after casting,
  int32) accumulation does.

The inputs are converted to the float format first; that conversion is exact
because ``|x[k]| <= m <= max(R, 1) * m`` (the test uses ``max(R, 1)``).
``R * m`` is evaluated with Python integers, so it cannot overflow.

Who uses it: the accelerated Lava Conv model (``deploy.accelerated.models``;
Lava's stock Conv computes in float64 and may round in its own order past the
bound, so that model does not use the int64 path but a tight per-output check
and, failing that, stock's own code), the attention process's products and
``fixed_point.conv_accumulate``, which choose their dtype with :func:`exact_dtype`, and the
torch kernels of the reference executor (``compiler.exact``), which choose theirs with
:func:`exact_path` (the limits are read at each call: tests lower the module's
``FLOAT32_EXACT_LIMIT`` / ``FLOAT64_EXACT_LIMIT`` to force the wider paths there).

Tests force the int64 path by setting ``float32_limit = float64_limit = 0``
on an instance (or a subclass of the model that owns it).
"""

from __future__ import annotations

import typing as ty

import numpy as np

FLOAT32_EXACT_LIMIT = 1 << 24
FLOAT64_EXACT_LIMIT = 1 << 53

PATH_FLOAT32 = "float32"
PATH_FLOAT64 = "float64"
PATH_INT64 = "int64"


def exact_path(bound: int) -> str:
    """The cheapest arithmetic in which integers of magnitude ``<= bound``, and every sum of
    products whose sum of |products| is ``<= bound``, are exact (the argument above):
    ``PATH_FLOAT32`` below 2**24, ``PATH_FLOAT64`` below 2**53, else ``PATH_INT64``. The one
    rule for numpy here and for the torch kernels of the reference executor
    (``compiler.exact``)."""
    if bound < FLOAT32_EXACT_LIMIT:
        return PATH_FLOAT32
    if bound < FLOAT64_EXACT_LIMIT:
        return PATH_FLOAT64
    return PATH_INT64


def exact_dtype(bound: int):
    """The numpy dtype of :func:`exact_path` ``(bound)``: float32, float64, else int64."""
    return ExactIntMatmul.dtype_of(exact_path(bound))


def max_abs_int(x: np.ndarray) -> int:
    """Exact ``max |x|`` of an integer/bool array as a Python int (0 if empty)."""
    if x.size == 0:
        return 0
    if x.dtype == np.bool_:
        return int(x.any())
    # Python ints: no overflow at the int64 minimum.
    return max(abs(int(x.max())), abs(int(x.min())))


def integral_view(x: np.ndarray) -> ty.Optional[np.ndarray]:
    """Return ``x`` if it holds only integers (any int/uint/bool dtype, or a
    float dtype whose values are all finite integers), else ``None``."""
    kind = x.dtype.kind
    if kind in "biu":
        return x
    if kind == "f":
        if x.size == 0:
            return x
        if not np.all(np.isfinite(x)):
            return None
        if not np.array_equal(x, np.trunc(x)):
            return None
        return x
    return None


class ExactIntMatmul:
    """``x @ M`` for a fixed integer matrix ``M`` -- exact, as fast as the
    numbers allow.

    ``M`` has shape ``(K, N)`` or, batched, ``(G, K, N)`` (then ``x`` is
    ``(G, P, K)``); ``x`` rows are contracted with ``M``'s ``K`` axis. The
    bound ``R`` is the maximum over all output columns (and batches) of
    ``sum_k |M[..., k, n]|``.

    Results of the float paths are float arrays whose values are exact
    integers; the int64 path returns int64. ``last_path`` records which path
    served the last call and ``path_counts`` counts them.
    """

    float32_limit: int = FLOAT32_EXACT_LIMIT
    float64_limit: int = FLOAT64_EXACT_LIMIT

    def __init__(self, m: np.ndarray) -> None:
        if m.dtype.kind not in "biu":
            raise TypeError(f"ExactIntMatmul needs an integer matrix, got {m.dtype}")
        if m.ndim not in (2, 3):
            raise ValueError(f"matrix must be 2-D or batched 3-D, got shape {m.shape}")
        if m.dtype == np.uint64 and m.size and int(m.max()) >= 1 << 63:
            raise OverflowError("uint64 matrix entries >= 2**63 do not fit int64")
        m64 = np.ascontiguousarray(m, dtype=np.int64)
        self.shape = m64.shape
        if m64.size:
            # Exact max column sum of |M|. A float estimate tells whether the
            # int64 sum could overflow (it also catches |int64 min|, whose
            # np.abs is negative); then fall back to Python ints.
            est = float(np.abs(m64.astype(np.float64)).sum(axis=-2).max())
            if est < 2.0 ** 62:
                self.bound = int(np.abs(m64).sum(axis=-2).max())
            else:
                self.bound = int(np.abs(m64.astype(object)).sum(axis=-2).max())
        else:
            self.bound = 0
        self._m = {PATH_INT64: m64}
        self.last_path: ty.Optional[str] = None
        self.path_counts: ty.Dict[str, int] = {
            PATH_FLOAT32: 0, PATH_FLOAT64: 0, PATH_INT64: 0}

    # -- path selection -------------------------------------------------------
    def choose(self, max_abs_x: int) -> str:
        """The cheapest exact path for inputs with ``max |x| <= max_abs_x``."""
        # max(R, 1): the input itself must also convert exactly (matters
        # only for an all-zero matrix, where any path gives zeros).
        b = max(self.bound, 1) * int(max_abs_x)
        if b < self.float32_limit:
            return PATH_FLOAT32
        if b < self.float64_limit:
            return PATH_FLOAT64
        return PATH_INT64

    @staticmethod
    def dtype_of(path: str) -> type:
        return {PATH_FLOAT32: np.float32, PATH_FLOAT64: np.float64,
                PATH_INT64: np.int64}[path]

    def matrix(self, path: str) -> np.ndarray:
        """``M`` in the dtype of ``path`` (converted lazily, then cached)."""
        mat = self._m.get(path)
        if mat is None:
            mat = self._m[PATH_INT64].astype(self.dtype_of(path))
            self._m[path] = mat
        return mat

    def _count(self, path: str) -> None:
        self.last_path = path
        self.path_counts[path] += 1

    # -- products -------------------------------------------------------------
    def matmul(self, x: np.ndarray, path: str) -> np.ndarray:
        """``x @ M`` on ``path``; ``x`` must already be in ``dtype_of(path)``
        (the caller chose ``path`` with :meth:`choose` for ``max |x|``)."""
        self._count(path)
        mat = self.matrix(path)
        if path == PATH_INT64:
            if mat.ndim == 2:
                return np.einsum("...k,kn->...n", x, mat)
            return np.einsum("gpk,gkn->gpn", x, mat)
        return np.matmul(x, mat)
