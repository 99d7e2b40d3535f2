"""Lava's LIF (``PyLifModelBitAcc``) over T steps, from u = v = 0, on :class:`IntSeq` input.

The recurrence over time is sequential; every step works on the whole ``[B, H, W, C]`` slice.
``fixed_point.lif_step`` is the contract (docs/reference-semantics.md section 1)::

    u' = wrap_lif_current(wrap32(decay(u, 4095 - du) + wrap32(a << 6)))
    v' = clip24(wrap32(decay(v, 4096 - dv) + u' + bias));  s = v' > vth << 6;  v' = 0 where s
    decay(x, f) = sign(x) * ((|x| * f) >> 12)   (truncation toward zero)

Exactness (:func:`float_plan`). From the input's bound A, :func:`state_bounds` follows the
largest |u| and |v| step by step (|decay(x, f)| = floor(|x| f / 4096) grows with |x| and f, so
the largest factor and the largest |bias| bound every neuron). When |u| < 2**23 and
|v| < 2**31 no int32 wrap and no current wrap can happen: each of them is the identity, and the
step is ``u' = trunc(u c_u) + 64 a``, ``v' = clip(trunc(v c_v) + u' + bias)`` with
``c = f / 4096``. In a float format with p significand bits these are exact when every value
is below 2**p and so is each product x * f / 4096 = (x m) 2**-k (m the odd part of f): p = 24
(float32) for the usual tau = 2 layers (f = 2048, m = 1), else float64. Where a bound rules
that out, ``fixed_point.lif_step`` itself runs (int64 numpy, on the CPU).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from loihi_numerics import fixed_point as fx
from loihi_numerics.constants import (ACT_SHIFT, DECAY_SHIFT, DECAY_UNITY, INT32_MAX, U_MAX,
                                      V_MAX)

from .values import IntSeq, exact_dtype, from_numpy, to_numpy

Membranes = Tuple[Optional[np.ndarray], Optional[np.ndarray]]   # u, pre-reset v: [T, B, C, H, W]


@dataclass(frozen=True)
class FloatPlan:
    dtype: torch.dtype   # float32 or float64: holds every value and product of the run
    clip: bool           # v can pass the 24-bit saturation (else the clip is the identity)
    u_bound: int
    v_bound: int


def state_bounds(a_bound: int, p: fx.LifParams, steps: int) -> Tuple[int, int]:
    """The largest |u'| and |v| before the clip over ``steps`` steps with |a| <= a_bound,
    assuming no wrap (true while the returned |u| < 2**23 and |v| < 2**31)."""
    fu = DECAY_UNITY - (int(p.du.min()) + 1)   # the slowest current decay
    fv = DECAY_UNITY - int(p.dv.min())         # the slowest voltage decay
    bias = int(np.abs(p.effective_bias).max(initial=0))
    act = int(a_bound) << ACT_SHIFT
    u = v = u_hi = v_hi = 0
    for _ in range(steps):
        u_next = ((u * fu) >> DECAY_SHIFT) + act
        v_pre = ((v * fv) >> DECAY_SHIFT) + u_next + bias
        u_hi, v_hi = max(u_hi, u_next), max(v_hi, v_pre)
        v_next = min(v_pre, V_MAX)               # the clip; a reset only lowers |v|
        if (u_next, v_next) == (u, v):           # a fixed point: later steps add nothing
            break
        u, v = u_next, v_next
    return u_hi, v_hi


def float_plan(a_bound: int, p: fx.LifParams, steps: int) -> Optional[FloatPlan]:
    """The float arithmetic that computes this LIF exactly, or None (a wrap is possible)."""
    u_hi, v_hi = state_bounds(a_bound, p, steps)
    if u_hi >= U_MAX or v_hi > INT32_MAX:
        return None
    v_state = min(v_hi, V_MAX)
    largest = max(v_hi, u_hi * _odd_part(DECAY_UNITY - (p.du + 1)),
                  v_state * _odd_part(DECAY_UNITY - p.dv))
    dtype = exact_dtype(largest)
    if dtype == torch.int64:
        return None
    return FloatPlan(dtype, v_hi > V_MAX, u_hi, v_state)


def run_lif(a: IntSeq, p: fx.LifParams, keep: bool) -> Tuple[IntSeq, Membranes]:
    """Spikes ``[T, B, H, W, C]`` (float32 0/1) of a LIF population driven by ``a``, and, when
    ``keep``, its u after each step and v before threshold and reset (int64, IR layout)."""
    steps = a.data.shape[0]
    plan = float_plan(a.bound, p, steps)
    if plan is None:   # the propagated bound may be loose: try the actual one
        a = a.tightened()
        plan = float_plan(a.bound, p, steps)
    if plan is None:
        return _run_int64(a, p, keep)
    return _run_float(a, p, plan, keep)


def _run_float(a: IntSeq, p: fx.LifParams, plan: FloatPlan, keep: bool):
    dt, device = plan.dtype, a.data.device

    def param(values: np.ndarray):
        """A per-population scalar, or the per-neuron values channels last."""
        values = np.asarray(values)
        if values.size == 1 or np.all(values == values.flat[0]):
            return values.flat[0].item()
        full = np.broadcast_to(values, (a.data.shape[-1],) + a.data.shape[2:4])
        return torch.from_numpy(np.moveaxis(full, 0, -1).copy()).to(device=device, dtype=dt)

    bias, vth = param(p.effective_bias), param(p.effective_vth)
    decay_u = _decay_fn(param(DECAY_UNITY - (p.du + 1)))
    decay_v = _decay_fn(param(DECAY_UNITY - p.dv))
    current_memory = not np.all(p.du == DECAY_UNITY - 1)
    # |64 a| <= u_bound < 2**23: the shift cannot wrap; with du = 4095 the current has no
    # memory (u' = 64 a) and the voltage's whole input is known up front
    act = a.as_dtype(dt) * (1 << ACT_SHIFT)
    if current_memory or _is_zero(bias):
        drive = act
    else:   # in place unless the membrane record still needs u' = 64 a
        drive = act + bias if keep else act.add_(bias)
    spikes = torch.empty(a.data.shape, dtype=torch.float32, device=device)
    us = torch.empty(a.data.shape, dtype=dt, device=device) if keep else None
    vs = torch.empty_like(us) if keep else None
    u = torch.zeros_like(act[0]) if current_memory else None
    v = None
    for t in range(a.data.shape[0]):
        if current_memory:
            u = decay_u(u).add_(act[t])
            into_v = u + bias
        else:
            into_v = drive[t]
        v = into_v.clone() if v is None else decay_v(v).add_(into_v)   # decay(0) = 0 at t = 0
        if plan.clip:
            v.clamp_(-V_MAX, V_MAX)
        if keep:
            us[t] = u if current_memory else act[t]
            vs[t] = v
        fired = torch.gt(v, vth, out=spikes[t])      # 0/1 in float32
        v.addcmul_(v, fired.to(dt) if dt != torch.float32 else fired, value=-1)   # reset: v - v s
    membranes = (to_numpy(IntSeq(us, plan.u_bound)), to_numpy(IntSeq(vs, plan.v_bound))) \
        if keep else (None, None)
    return IntSeq(spikes, 1, True), membranes


def _is_zero(x) -> bool:
    return not isinstance(x, torch.Tensor) and x == 0


def _decay_fn(f):
    """``x -> trunc(x * f / 4096)`` (Lava's sign-magnitude shift) as a new tensor, or ``x``
    itself for f = 4096 (no decay). Exact under the plan's bound: f / 4096 is exact in either
    format (f < 2**13), the product is by the plan, and trunc of an exact value is. For a
    power of two f the product is one exact division by 4096 / f."""
    if isinstance(f, int):
        if f == DECAY_UNITY:
            return lambda x: x
        if f == 0:
            return torch.zeros_like
        if f & (f - 1) == 0:
            divisor = DECAY_UNITY // f
            return lambda x: torch.div(x, divisor, rounding_mode="trunc")
    c = f / DECAY_UNITY
    return lambda x: torch.mul(x, c).trunc_()


def _odd_part(factors: np.ndarray) -> int:
    """The largest odd part m of the factors f = m 2**k (0 for f = 0)."""
    out = 0
    for f in {int(v) for v in np.ravel(factors)}:
        while f and f % 2 == 0:
            f //= 2
        out = max(out, f)
    return out


def _run_int64(a: IntSeq, p: fx.LifParams, keep: bool):
    """``fixed_point.lif_step`` step by step: the semantics itself, int64 on the CPU."""
    seq = to_numpy(a)
    u = v = np.zeros(seq.shape[1:], np.int64)
    spikes = np.empty(seq.shape, np.int64)
    us = np.empty_like(spikes) if keep else None
    vs = np.empty_like(spikes) if keep else None
    for t in range(seq.shape[0]):
        v_old = v
        u, v, s = fx.lif_step(u, v, seq[t], p)
        spikes[t] = s
        if keep:
            us[t], vs[t] = u, fx.lif_voltage(v_old, u, p)
    return from_numpy(spikes, a.data.device, binary=True), (us, vs)
