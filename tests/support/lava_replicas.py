"""Test-only replicas of Lava 0.10 models the product does not use: the Dense process's
weight handling and accumulation, and LIFReset's reset schedule. They feed and check the
LIF/LIFReset comparisons in test_fixed_point.py (and are themselves checked against Lava)."""
from __future__ import annotations

import typing as ty

import numpy as np

from loihi_numerics.constants import INT32_MAX as _INT32_MAX
from loihi_numerics.exact_matmul import exact_dtype as _exact_dtype
from loihi_numerics.fixed_point import _as_int64, _int_scalar, wrap_signed


def lif_reset_due(time_step: int, reset_interval: int,
                  reset_offset: int) -> bool:
    """Whether ``LIFReset`` zeroes ``u`` and ``v`` at ``time_step``.

    ``time_step`` is Lava's 1-based step counter (the first ``run_spk`` sees
    ``time_step == 1``; it keeps counting across successive ``run`` calls).
    ``PyLifResetModelBitAcc``: reset iff
    ``time_step % reset_interval == reset_offset % reset_interval``.
    """
    if reset_interval < 1:
        raise ValueError("reset_interval must be >= 1")
    if reset_offset < 0:
        raise ValueError("reset_offset must be >= 0")
    return time_step % reset_interval == reset_offset % reset_interval


def dense_weights(weights, num_weight_bits: int = 8, sign_mode=None
                  ) -> np.ndarray:
    """The integer weights ``PyDenseModelBitAcc`` actually uses.

    On its first ``run_spk`` the model replaces its weights by
    ``truncate_weights(clip_weights(W, sign_mode, num_bits=8), sign_mode,
    num_weight_bits)`` (``lava/utils/weightutils.py``), with ``sign_mode``
    defaulting to ``determine_sign_mode(W)``.  This calls those very functions:

    - MIXED (both signs present): clip to [-256, 255], then
      ``(w >> k) << k`` with ``k = 8 - num_weight_bits + 1`` -- so even at 8
      bits the LSB is dropped (floor: 3 -> 2, -3 -> -4).
    - EXCITATORY (all >= 0): clip to [0, 255], ``k = 8 - num_weight_bits``.
    - INHIBITORY (all <= 0): negate, clip to [0, 255], truncate, negate.

    ``weight_exp`` plays no part here: the model applies it to the
    accumulated sum, see :func:`dense_accumulate`.

    Parameters
    ----------
    weights : int array ``[out, in]`` (Lava's Dense layout). Non-integral
        values raise (Lava would truncate them toward zero when casting to
        its int32 ``weights`` Var).
    num_weight_bits : 1..8.
    sign_mode : ``lava.utils.weightutils.SignMode`` or None (auto, as Lava).
    """
    from lava.utils.weightutils import (SignMode, clip_weights,
                                        determine_sign_mode, truncate_weights)
    w = _as_int64(weights, "weights")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [out, in]; got shape {w.shape}")
    if w.size and np.max(np.abs(w)) > _INT32_MAX:
        raise ValueError("weights do not fit Lava's int32 weights Var")
    nwb = _int_scalar(num_weight_bits, "num_weight_bits", 1, 8)
    w32 = w.astype(np.int32)
    if sign_mode is None:
        sign_mode = determine_sign_mode(w32)
    elif not isinstance(sign_mode, SignMode):
        raise TypeError(f"sign_mode must be a SignMode or None; got "
                        f"{sign_mode!r}")
    w32 = clip_weights(w32, sign_mode, num_bits=8)
    w32 = truncate_weights(w32, sign_mode, nwb)
    return np.asarray(w32, dtype=np.int64)


def _exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for int64 ``a`` [..., n, k] and ``b`` [..., k, m].

    Uses float32 / float64 BLAS when ``max|a| * max|b| * k`` is below 2**24 /
    2**53 (then every product and every partial sum is an exactly
    representable integer, so the result is exact whatever the summation
    order, FMA included), else numpy's int64 matmul (exact, or wrapping mod
    2**64 -- which preserves the value mod 2**32).
    """
    k = a.shape[-1]
    ma = int(np.max(np.abs(a))) if a.size else 0
    mb = int(np.max(np.abs(b))) if b.size else 0
    dt = _exact_dtype(ma * mb * max(k, 1))
    if dt is np.int64:
        return np.matmul(a, b)
    return np.matmul(a.astype(dt), b.astype(dt)).astype(np.int64)


def _shift(x: np.ndarray, exp: int) -> np.ndarray:
    """Lava's ``left_shift(x, e) if e > 0 else right_shift(x, -e)``."""
    return x << exp if exp > 0 else x >> (-exp)


def dense_accumulate(w_eff, s_in, weight_exp: int = 0,
                     num_message_bits: int = 0) -> np.ndarray:
    """What ``PyDenseModelBitAcc`` accumulates from ``s_in`` (int64 [batch, out]).

    Lava sends this value one step LATER than it receives ``s_in`` (at step
    t it sends what it accumulated at t-1; zeros at step 1).

    ``acc = W @ s`` with ``s = (s_in != 0)`` when ``num_message_bits == 0``
    (binary: any non-zero payload counts as 1) or ``s = s_in`` (graded) when
    ``num_message_bits > 0``; then the SUM is shifted:
    ``acc << weight_exp`` if ``weight_exp > 0`` else ``acc >> -weight_exp``
    (arithmetic, i.e. floor division by ``2**-weight_exp``).  Lava computes
    the graded dot product and its shift in int32, the binary sum and its
    shift in int64, and sends through an int32 channel, so the result is
    ``wrap32(shift(wrap32(W @ s), weight_exp))`` (graded) or
    ``wrap32(shift(W @ s, weight_exp))`` (binary) -- identical whenever
    ``|W @ s| < 2**31``.  No 16- or 24-bit limit is applied by the simulator
    (the ``precision=16`` of ``a_out`` is not enforced).

    Parameters
    ----------
    w_eff : int array [out, in] from :func:`dense_weights`.
    s_in : int/bool array [batch, in].
    weight_exp : int in [-31, 31].
    num_message_bits : int >= 0 (only ``> 0`` vs ``== 0`` matters in Lava).
    """
    w = _as_int64(w_eff, "w_eff")
    s = np.asarray(s_in)
    if w.ndim != 2:
        raise ValueError(f"w_eff must be 2-D [out, in]; got {w.shape}")
    if s.ndim != 2 or s.shape[1] != w.shape[1]:
        raise ValueError(f"s_in must be [batch, {w.shape[1]}]; got {s.shape}")
    e = _int_scalar(weight_exp, "weight_exp", -31, 31)
    nmb = _int_scalar(num_message_bits, "num_message_bits", 0, 31)
    if nmb == 0:
        # Lava: weights[:, s].sum(axis=1) -> int64 sum, int64 shift
        acc = _exact_int_matmul((s != 0).astype(np.int64), w.T)
    else:
        # Lava: weights.dot(s_in), int32 x int32 -> int32 (wraps)
        acc = wrap_signed(_exact_int_matmul(_as_int64(s, "s_in"), w.T), 32)
    # the int32 a_out channel wraps what is sent
    return wrap_signed(_shift(acc, e), 32)
