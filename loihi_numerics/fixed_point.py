"""Bit-exact numpy replicas of Lava 0.10's fixed-point ProcessModels.

Every function here computes, for ONE time step and with a leading batch
dimension, exactly the integers that the stock Lava 0.10 CPU models selected by
``Loihi2SimCfg(select_tag="fixed_pt")`` compute:

=====================  ===========================================================
function               Lava source it replicates
=====================  ===========================================================
``lif_step``           ``lava/proc/lif/models.py``: ``AbstractPyLifModelFixed``
                       (``scale_bias``, ``subthr_dynamics``, ``reset_voltage``),
                       ``PyLifModelBitAcc`` and ``PyLifResetModelBitAcc.run_spk``
``conv_accumulate``    ``lava/proc/conv/models.py``: ``PyConvModelFixed`` /
                       ``AbstractPyConvModel.run_spk`` + ``lava/proc/conv/utils.py``
                       (``conv``, ``conv_scipy``, ``signed_clamp``)
=====================  ===========================================================

All arrays are ``int64`` (spikes from :func:`lif_step` are ``bool``).  Where
Lava computes in ``int32`` and silently overflows, the overflow is reproduced
with :func:`wrap_signed` ``(x, 32)``; Lava's 24-bit behaviours are reproduced
with :func:`wrap_signed` (conv accumulator), :func:`wrap_lif_current` (LIF
current ``u``) and :func:`clip_signed` (LIF voltage ``v``).

Timing (see ``docs/reference-semantics.md``): in Lava, ``Dense`` and ``Conv``
send at step ``t`` the accumulation of what they received at step ``t-1``
(zeros at ``t = 1``); ``LIF``/``LIFReset``/``GradedVec`` send at step ``t`` the
result of what they received at step ``t``.  The functions below are pure
per-step functions without any delay: putting the hop delays in is the
backend's business, not the reference executor's.
"""
from __future__ import annotations

from dataclasses import dataclass
import typing as ty

import numpy as np

__all__ = [
    "UV_BITS", "DECAY_SHIFT", "DECAY_UNITY", "VTH_SHIFT", "ACT_SHIFT",
    "U_MAX", "V_MAX", "CONV_ACC_BITS",
    "DU_RANGE", "DV_RANGE", "VTH_RANGE", "BIAS_MANT_RANGE", "BIAS_EXP_RANGE",
    "wrap_signed", "clip_signed", "wrap_lif_current",
    "LifParams", "lif_step", "lif_voltage",
    "conv_output_hw", "conv_accumulate",
    "to_lava_conv_weight", "to_lava_layout", "from_lava_layout", "to_lava_xy", "lava_shape",
]

from loihi_numerics.constants import (ACT_SHIFT, BIAS_EXP_RANGE, BIAS_MANT_RANGE,
                                     CONV_ACC_BITS, DECAY_SHIFT, DECAY_UNITY, DU_RANGE,
                                     DV_RANGE, INT32_MAX as _INT32_MAX,
                                     INT32_MIN as _INT32_MIN, U_MAX, UV_BITS, V_MAX,
                                     VTH_RANGE, VTH_SHIFT)
from loihi_numerics.exact_matmul import exact_dtype as _exact_dtype


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _as_int64(x, name: str) -> np.ndarray:
    """``x`` as an int64 array; non-integral values raise ``ValueError``."""
    a = np.asarray(x)
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integers, got non-integral "
                             f"values")
        if a.size and np.max(np.abs(a)) >= 2.0 ** 62:
            raise ValueError(f"{name} is too large for int64")
        return a.astype(np.int64)
    raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")


def _check_range(a: np.ndarray, name: str, rng: ty.Tuple[int, int]) -> None:
    lo, hi = rng
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}] (inclusive); got "
                         f"values in [{a.min()}, {a.max()}]")


def _int_scalar(x, name: str, lo: int, hi: int) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {x!r}")
    x = int(x)
    if not lo <= x <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}]; got {x}")
    return x


def wrap_signed(x, bits: int) -> np.ndarray:
    """Two's-complement wrap of ``x`` into ``bits`` signed bits (int64).

    ``((x + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``.  This is exactly
    ``lava.proc.conv.utils.signed_clamp`` (which, despite its name, wraps) and,
    for ``bits=32``, what numpy int32 arithmetic does on overflow.
    """
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must lie in [1, 62]; got {bits}")
    half = np.int64(1) << np.int64(bits - 1)
    x = np.asarray(x, dtype=np.int64)
    return ((x + half) & ((half << 1) - 1)) - half


def clip_signed(x, bits: int) -> np.ndarray:
    """Symmetric saturation to ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.

    The only saturating operation in Lava's fixed-point models is the LIF
    voltage (``np.clip(updated_volt, -max_uv_val + 1, max_uv_val - 1)`` in
    ``AbstractPyLifModelFixed.subthr_dynamics``), and it is symmetric: the
    most negative two's-complement value ``-2**(bits-1)`` is excluded.
    """
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must lie in [1, 62]; got {bits}")
    m = (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), -m, m)


def wrap_lif_current(x) -> np.ndarray:
    """Lava's wrap of the LIF current ``u`` (``subthr_dynamics``).

    Lava applies ONE correction, not a modulo::

        x >  2**23  ->  x - 2**24
        x <= -2**23 ->  x + 2**24

    so, unlike :func:`wrap_signed` ``(x, 24)``: ``+2**23`` stays ``+2**23``
    (one above the 24-bit range), ``-2**23`` becomes ``+2**23``, and a value
    beyond ``+/-(2**23 + 2**24)`` stays out of the 24-bit range.  Inside
    ``(-2**23 - 2**24, 2**23 + 2**24]`` the result lies in ``(-2**23, 2**23]``.
    """
    x = np.asarray(x, dtype=np.int64)
    out = np.where(x > U_MAX, x - 2 * U_MAX, x)
    return np.where(out <= -U_MAX, x + 2 * U_MAX, out)


def _decay(x: np.ndarray, factor) -> np.ndarray:
    """``sign(x) * ((|x| * factor) >> 12)``: the decay truncates toward 0."""
    return np.sign(x) * ((np.abs(x) * factor) >> DECAY_SHIFT)


# --------------------------------------------------------------------------
# LIF
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class LifParams:
    """Integer LIF parameters, validated against Loihi's bit widths.

    Each field is an int64 array broadcastable to the neuron shape (the shape
    without the batch dimension).  Lava's ``LIF`` process stores ``du``,
    ``dv`` and ``vth`` as ONE value per population (``Var(shape=(1,))``) and
    ``bias_mant`` / ``bias_exp`` per neuron; per-neuron ``du``/``dv``/``vth``
    are accepted here but cannot be expressed by one stock ``LIF`` process.

    Legal ranges (inclusive; out-of-range values raise ``ValueError`` naming
    the parameter, nothing is clipped):

    - ``du``, ``dv``: 0 .. 4095 (unsigned 12 bit)
    - ``vth``: 0 .. 131071 (unsigned 17 bit); spike iff ``v > vth << 6``
    - ``bias_mant``: -4096 .. 4095 (signed 13 bit)
    - ``bias_exp``: 0 .. 7 (unsigned 3 bit).  Lava's ``scale_bias`` would
      right-shift for a negative ``bias_exp``, but its documented (and the
      hardware's) range is unsigned, so negatives are rejected.
    """

    du: np.ndarray
    dv: np.ndarray
    vth: np.ndarray
    bias_mant: ty.Any = 0
    bias_exp: ty.Any = 0

    def __post_init__(self) -> None:
        for name, rng in (("du", DU_RANGE), ("dv", DV_RANGE),
                          ("vth", VTH_RANGE), ("bias_mant", BIAS_MANT_RANGE),
                          ("bias_exp", BIAS_EXP_RANGE)):
            a = _as_int64(getattr(self, name), name)
            _check_range(a, name, rng)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def effective_bias(self) -> np.ndarray:
        """``bias_mant << bias_exp`` (``AbstractPyLifModelFixed.scale_bias``)."""
        return self.bias_mant << self.bias_exp

    @property
    def effective_vth(self) -> np.ndarray:
        """``vth << 6`` (``PyLifModelBitAcc.scale_threshold``)."""
        return self.vth << VTH_SHIFT


def lif_voltage(v: np.ndarray, u_new: np.ndarray, params: LifParams) -> np.ndarray:
    """v' of a LIF step before threshold and reset (int64 arrays, state after any reset):
    ``clip_signed(wrap32(decay(v, 4096 - dv) + u' + (bias_mant << bias_exp)), 24)`` -- the
    largest value the 24-bit register holds in that step."""
    decayed_v = _decay(v, DECAY_UNITY - params.dv)
    return clip_signed(wrap_signed(decayed_v + u_new + params.effective_bias, 32), UV_BITS)


def lif_step(u, v, a_in, params: LifParams, reset_mask=None):
    """One time step of ``PyLifModelBitAcc`` (or ``PyLifResetModelBitAcc``).

    Parameters
    ----------
    u, v : int arrays ``[batch, *neuron_shape]``, state BEFORE the step.
    a_in : int array, same shape: the synaptic input received at THIS step
        (LIF has no delay: its output at step t depends on ``a_in`` of step t).
        It is the int32 value a stock Dense/Conv sends (already wrapped to 32
        bits by :func:`conv_accumulate`).
    params : :class:`LifParams`, broadcastable to ``neuron_shape``.
    reset_mask : None, a bool scalar, a bool array ``[batch]`` (per sample) or
        a bool array of ``u``'s shape.  Where True, ``u`` and ``v`` are zeroed
        BEFORE the step's dynamics, exactly as ``PyLifResetModelBitAcc.run_spk``
        does when ``time_step % reset_interval == reset_offset``: the input of
        the reset step is still integrated.

    Returns
    -------
    (u, v, spikes): new int64 ``u`` and ``v`` (``v`` already reset to 0 where
    spiking) and the bool spike array (Lava sends it as int32 0/1).

    Order of operations (``AbstractPyLifModelFixed.subthr_dynamics``)::

        u' = wrap_lif_current(wrap32(decay(u, 4096 - (du + 1))
                                     + wrap32(a_in << 6)))
        v' = clip_signed(wrap32(decay(v, 4096 - dv) + u' + (bias_mant << bias_exp)), 24)
        s  = v' > (vth << 6)
        v' = 0 where s

    with ``decay(x, f) = sign(x) * ((|x| * f) >> 12)`` (truncation toward 0).
    """
    u = _as_int64(u, "u")
    v = _as_int64(v, "v")
    a_in = _as_int64(a_in, "a_in")
    if not (u.shape == v.shape == a_in.shape):
        raise ValueError(f"u, v, a_in must have one shape; got {u.shape}, "
                         f"{v.shape}, {a_in.shape}")
    if u.ndim < 1:
        raise ValueError("u, v, a_in need a leading batch dimension")
    if not isinstance(params, LifParams):
        raise TypeError("params must be a LifParams")

    if reset_mask is not None:
        m = np.asarray(reset_mask, dtype=bool)
        if m.ndim == 1 and u.ndim > 1 and m.shape[0] == u.shape[0]:
            m = m.reshape((-1,) + (1,) * (u.ndim - 1))
        elif m.ndim != 0 and m.shape != u.shape:
            raise ValueError(f"reset_mask must be a scalar, shape "
                             f"({u.shape[0]},) or {u.shape}; got {m.shape}")
        u = np.where(m, 0, u)
        v = np.where(m, 0, v)

    # current: int64 product, sign-magnitude shift, then int32 additions
    decayed_u = _decay(u, DECAY_UNITY - (params.du + 1))
    act = wrap_signed(a_in << ACT_SHIFT, 32)
    u_new = wrap_lif_current(wrap_signed(decayed_u + act, 32))
    v_new = lif_voltage(v, u_new, params)
    spikes = v_new > params.effective_vth
    v_new = np.where(spikes, 0, v_new)
    return u_new, v_new, spikes


# --------------------------------------------------------------------------
# Conv
# --------------------------------------------------------------------------
def _pair(x, name: str) -> ty.Tuple[int, int]:
    if np.isscalar(x):
        x = (x, x)
    x = tuple(x)
    if len(x) == 1:
        x = (x[0], x[0])
    if len(x) != 2:
        raise ValueError(f"{name} must be an int or a pair; got {x}")
    for xi in x:
        if isinstance(xi, (bool, np.bool_)) or not isinstance(
                xi, (int, np.integer)):
            raise TypeError(f"{name} must hold ints; got {x}")
    return int(x[0]), int(x[1])


def conv_output_hw(hw: ty.Tuple[int, int], kernel_hw, stride=1, padding=0,
                   dilation=1) -> ty.Tuple[int, int]:
    """Output (H, W): ``floor((n + 2p - d(k-1) - 1) / s) + 1`` per axis
    (``lava.proc.conv.utils.output_shape``, same as PyTorch)."""
    k, s, p, d = (_pair(kernel_hw, "kernel"), _pair(stride, "stride"),
                  _pair(padding, "padding"), _pair(dilation, "dilation"))
    out = tuple((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
                for i in range(2))
    if min(out) < 1:
        raise ValueError(f"convolution output would be empty: {out}")
    return out


def conv_accumulate(x, weight, stride=1, padding=0, dilation=1, groups=1,
                    num_message_bits: int = 0) -> np.ndarray:
    """What ``PyConvModelFixed`` accumulates from ``x`` (int64 [B, Cout, H', W']).

    Lava sends this value one step LATER than it receives ``x``.

    Our layout is PyTorch's: ``x`` is ``[batch, C_in, H, W]``, ``weight`` is
    ``[C_out, C_in / groups, kH, kW]`` applied as a cross-correlation
    (``torch.nn.functional.conv2d``); ``stride``/``padding``/``dilation`` are
    ints or ``(h, w)`` pairs.  The equivalent stock ``Conv`` process gets
    ``input_shape = (W, H, C_in)``, ``weight = to_lava_conv_weight(weight)``
    (spatially flipped, because Lava's scipy ``convolve2d`` is a true
    convolution, and transposed to ``(C_out, kW, kH, C_in/groups)``) and the
    pairs reversed to ``(w, h)`` (:func:`to_lava_xy`); its input / output
    vectors are ``to_lava_layout(x[b])`` / ``to_lava_layout(out[b])``.

    Semantics (``AbstractPyConvModel.run_spk`` + ``utils.conv_scipy``):

    - binary input (``num_message_bits == 0``): ``s = (x != 0)``; graded:
      ``s = x``;
    - the weights are used as given: NO 8-bit clip, NO ``num_weight_bits``
      truncation, and ``weight_exp`` is IGNORED by the Python model;
    - ``acc`` = exact integer correlation sum (Lava: float64, exact below
      2**53), cast to int32 -- an out-of-int32 float becomes ``-2**31``
      (numpy's x86 float->int32 cast; platform-specific) --, then
      ``signed_clamp(acc, 24)``, which WRAPS (two's complement) to 24 bits.

    Implementation: im2col + one (per group, batched) matmul in float32 /
    float64 when ``max|w| * max|s| * C_in/groups * kH * kW`` is below 2**24 /
    2**53 (exact: all partial sums are representable integers), else int64;
    a bound ``>= 2**63`` raises ``ValueError`` (where Lava's own float64 sums
    stop being exact the result is out of contract anyway; with 24-bit
    payloads and 8-bit weights the bound stays below 2**43 for
    ``C_in/groups * kH * kW < 2**12``).
    """
    xs = np.asarray(x)
    w = _as_int64(weight, "weight")
    if xs.ndim != 4:
        raise ValueError(f"x must be [batch, C, H, W]; got shape {xs.shape}")
    if w.ndim != 4:
        raise ValueError(f"weight must be [C_out, C_in/groups, kH, kW]; got "
                         f"shape {w.shape}")
    nmb = _int_scalar(num_message_bits, "num_message_bits", 0, 31)
    g = _int_scalar(groups, "groups", 1, 1 << 30)
    st, pd, dl = (_pair(stride, "stride"), _pair(padding, "padding"),
                  _pair(dilation, "dilation"))
    if min(st) < 1 or min(dl) < 1 or min(pd) < 0:
        raise ValueError(f"need stride >= 1, dilation >= 1, padding >= 0; got "
                         f"{st}, {dl}, {pd}")
    B, C, H, W = xs.shape
    Co, Cg, kh, kw = w.shape
    if C % g or Co % g or C // g != Cg:
        raise ValueError(f"channels do not match groups={g}: x has C={C}, "
                         f"weight has shape {w.shape}")
    Ho, Wo = conv_output_hw((H, W), (kh, kw), st, pd, dl)

    s = (xs != 0).astype(np.int64) if nmb == 0 else _as_int64(xs, "x")
    K = Cg * kh * kw
    ms = int(np.max(np.abs(s))) if s.size else 0
    mw = int(np.max(np.abs(w))) if w.size else 0
    bound = ms * mw * max(K, 1)
    if bound >= 1 << 63:
        raise ValueError(
            f"conv sums may reach {bound:.3e} >= 2**63; Lava's float64 "
            f"accumulation is not exact there either -- out of contract")
    dtype = _exact_dtype(bound)

    sp = np.zeros((B, C, H + 2 * pd[0], W + 2 * pd[1]), dtype=dtype)
    sp[:, :, pd[0]:pd[0] + H, pd[1]:pd[1] + W] = s
    # cols[b, ho, wo, c, i, j] = sp[b, c, ho*sh + i*dh, wo*sw + j*dw]
    cols = np.empty((B, Ho, Wo, C, kh, kw), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dl[0], j * dl[1]
            patch = sp[:, :, r0:r0 + (Ho - 1) * st[0] + 1:st[0],
                       c0:c0 + (Wo - 1) * st[1] + 1:st[1]]
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    N = B * Ho * Wo
    cols = cols.reshape(N, g, K).transpose(1, 0, 2)          # [g, N, K]
    wm = w.reshape(g, Co // g, K).transpose(0, 2, 1).astype(dtype)  # [g,K,Co/g]
    acc = np.matmul(cols, wm)                                 # [g, N, Co/g]
    acc = acc.transpose(1, 0, 2).reshape(B, Ho, Wo, Co).astype(np.int64)
    acc = acc.transpose(0, 3, 1, 2)
    # float64 -> int32 cast of the simulator (out of range -> INT32_MIN)
    acc = np.where((acc < _INT32_MIN) | (acc > _INT32_MAX), _INT32_MIN, acc)
    return wrap_signed(acc, CONV_ACC_BITS)


def to_lava_conv_weight(weight) -> np.ndarray:
    """PyTorch ``[C_out, C_in/g, kH, kW]`` (correlation) -> Lava ``Conv``
    ``[C_out, kW, kH, C_in/g]`` (convolution): flip both spatial axes and
    transpose ``(0, 3, 2, 1)`` -- as ``lava.lib.dl.netx.hdf5`` does."""
    w = np.asarray(weight)
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def to_lava_layout(a) -> np.ndarray:
    """``[..., C, H, W]`` -> Lava's ``[..., W, H, C]`` (one sample: ``transpose(2, 1, 0)``;
    leading axes, e.g. time or batch, are kept)."""
    return np.ascontiguousarray(np.swapaxes(np.asarray(a), -1, -3))


def from_lava_layout(a) -> np.ndarray:
    """Lava's ``[..., W, H, C]`` -> ``[..., C, H, W]`` (the same swap)."""
    return np.ascontiguousarray(np.swapaxes(np.asarray(a), -1, -3))


def to_lava_xy(pair) -> ty.Tuple[int, int]:
    """``(h, w)`` stride/padding/dilation -> Lava's ``(x, y) = (w, h)``."""
    h, w = _pair(pair, "pair")
    return w, h


def lava_shape(shape) -> ty.Tuple[int, int, int]:
    """A ``(C, H, W)`` shape -> Lava's ``(W, H, C)``."""
    c, h, w = (int(s) for s in shape)
    return (w, h, c)
