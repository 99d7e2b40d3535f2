"""The integer grid of one Spikformer LIF layer on Loihi, shared by QAT and the compiler.

The paper's LIF ``H = V + (X - V)/tau`` with ``X = W.x + b`` equals Loihi's CUBA LIF
(du = 4095, dv = 4096/tau) at a per-layer scale S (v = S * H) when

    w_int = W * S / (64 tau * k)     (k: integer levels per unit of the layer's input)
    bias  = b * S / tau              (= bias_mant << bias_exp)
    vth   = (S * V_th - 1) / 64      (paper: fire on H >= V_th; Loihi: on v > vth << 6)

so S is chosen as ``(64 vth + 1) / V_th`` for the largest integer vth that keeps
  - every |w_int| <= 127 (an 8-bit mantissa),
  - |bias| <= 4095 << 7 (13-bit mantissa, 3-bit exponent),
  - the 24-bit state safe: |v| <= 2 (64 A + B) with A = max |a_in| <= sum |w_int| * x_max and
    B = max |bias|, so 64 A + B < 2^22. Rounding adds at most 1/2 per weight, so the bound is
    taken on the float weights with that slack: provable for the rounded integers too.

Both the quantization-aware trainer (torch) and the compiler's quantize pass (numpy) call
``layer_grid`` so they agree on the grid exactly.

The generalised LIF of foreign NIR graphs (``H = V + (r X - V)/tau``, fire on ``>=`` or
``>``) uses the same grid with W, b multiplied by r, ``dv = round(4096/tau)`` (``lif_decay``)
and, for the strict rule, ``vth = S * V_th / 64`` (Loihi's own ``v > vth << 6``). A decay
slower than tau = 2 lets |v| grow to (64 A + B) * 4096/dv, so the state limit shrinks to
``2048 * dv`` there (``state_limit``); at tau <= 2 it is the 2^22 above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from loihi_numerics.constants import (BIAS_EXP_MAX, BIAS_MANT_MAX, BIAS_MAX,  # noqa: F401
                                     DECAY_UNITY, STATE_LIMIT, VTH_MAX, WEIGHT_MANT_MAX)


class GridError(ValueError):
    """A layer that has no valid Loihi grid (names the layer and the limiting quantity)."""


@dataclass(frozen=True)
class LayerGrid:
    scale: float        # S: v = S * H
    vth: int            # Loihi threshold mantissa (fires on v > vth << 6)
    limited_by: str     # "weights", "bias", "state" or "hint"

    def weight_step(self, tau: float, input_levels: float = 1.0) -> float:
        """Float value of one integer weight step (W = w_int * step)."""
        return 64.0 * tau * input_levels / self.scale

    def bias_step(self, tau: float) -> float:
        return tau / self.scale


SPIKE_RULES = (">=", ">")


def scale_for_vth(vth: int, v_threshold: float, spike_if: str = ">=") -> float:
    """S for a threshold mantissa: ``H >= V_th`` is ``v > 64 vth`` when S V_th = 64 vth + 1
    (integers v); ``H > V_th`` is ``v > 64 vth`` when S V_th = 64 vth."""
    if spike_if == ">":
        return 64 * vth / v_threshold
    return (64 * vth + 1) / v_threshold


def lif_decay(name: str, tau: float):
    """Loihi's voltage decay for a LIF time constant: (dv, exact, realised tau 4096/dv).

    dv = round(4096 / tau). A rounded dv of 0 (no leak: an IF neuron) or 4096 (no memory;
    not a 12-bit value) would change the neuron's kind, so both are refused.
    """
    if not (math.isfinite(tau) and tau > 1):
        raise GridError(f"layer '{name}': tau {tau} out of range (Loihi needs a finite tau > 1 "
                        "time step)")
    exact = DECAY_UNITY / tau
    dv = int(round(exact))
    if dv <= 0 or dv >= DECAY_UNITY:
        raise GridError(f"layer '{name}': tau {tau:.6g} rounds to Loihi decay dv = {dv} "
                        f"(4096/tau = {exact:.6g}), which would make it "
                        f"{'an IF neuron without leak' if dv <= 0 else 'a neuron without memory'}"
                        "; Loihi's LIF needs 1 <= dv <= 4095 (0.5 <= 4096/tau < 4095.5)")
    return dv, float(exact).is_integer(), DECAY_UNITY / dv


def state_limit(dv: int) -> int:
    """Bound on 64 A + B that keeps |v| < 2^23 for decay dv: |v| < (64 A + B) 4096 / dv."""
    return min(STATE_LIMIT, 2048 * int(dv))


def layer_grid(name: str, *, w_abs_max: float, w_row_abs_sum_max: float, b_abs_max: float,
               fan_in: int, x_max: float, tau: float, v_threshold: float,
               input_levels: float = 1.0, spike_if: str = ">=",
               limit: int = STATE_LIMIT, rounding_slack: float = 0.5) -> LayerGrid:
    """The largest valid grid for a layer with these float (folded) weight statistics.

    ``w_*`` are of the float weights W acting on the float input; the layer's integer input
    is ``k * x`` with k = ``input_levels`` and its largest magnitude is ``x_max`` (integers).
    ``spike_if``: the float neuron's rule; ``limit``: the bound on 64 A + B
    (``state_limit(dv)``; the default is right for tau <= 2); ``rounding_slack``: the most
    one integer weight can differ from its scaled float (1/2 for rounding to nearest, 1 for
    :func:`round_along_positions`).
    """
    if not (tau > 1 and v_threshold > 0):
        raise GridError(f"layer '{name}': tau {tau} / V_th {v_threshold} out of range")
    if spike_if not in SPIKE_RULES:
        raise GridError(f"layer '{name}': spike rule {spike_if!r} is not one of {SPIKE_RULES}")
    k = float(input_levels)
    limits = {"weights": math.inf, "bias": math.inf, "state": math.inf}
    if w_abs_max > 0:
        limits["weights"] = WEIGHT_MANT_MAX * 64 * tau * k / w_abs_max
    if b_abs_max > 0:
        limits["bias"] = BIAS_MAX * tau / b_abs_max
    # 64 A + B with A <= x_max * (S/(64 tau k) * sum|W| + fan_in * rounding_slack),
    # B <= S b/tau + 64
    slack = 64.0 * rounding_slack * fan_in * x_max + 64.0
    per_scale = (x_max * w_row_abs_sum_max / k + b_abs_max) / tau
    if per_scale > 0:
        limits["state"] = (limit - 1 - slack) / per_scale
    reason = min(limits, key=limits.get)
    s_max = limits[reason]
    if not math.isfinite(s_max):  # an all-zero layer: any grid is exact
        s_max, reason = WEIGHT_MANT_MAX * 64 * tau, "weights"
    strict = spike_if == ">"
    vth = min(math.floor((s_max * v_threshold - (0 if strict else 1)) / 64), VTH_MAX)
    if vth < 1:
        raise GridError(f"layer '{name}': at the largest safe scale {s_max:.4g} (limited by "
                        f"{reason}) the threshold V_th={v_threshold} maps below one step; the "
                        "layer's weights/bias are too large relative to its threshold for "
                        "Loihi's 24-bit state")
    return LayerGrid(scale_for_vth(vth, v_threshold, spike_if), vth, reason)


def round_along_positions(scaled):
    """Integers for a full-map kernel ``[..., positions]`` (in weight steps): each one the
    difference of consecutive rounded prefix sums, so every prefix sum -- and so the kernel's
    response to any run of consecutive active positions -- is within 1/2 step of the float
    one (per weight within 1 step; never more than ``floor(|w|) + 1``).

    Why: a token mean composed with a conv (compiler/passes/distribute_membrane.py) spreads a
    weight W over N positions as W/N. Rounding each copy alike errs the same way at every
    active token, so the error grows with the number of spiking tokens; here it stays below
    one step per run of consecutive ones. Shared by the compiler and QAT (same float64 in,
    same integers out).
    """
    import numpy as np

    x = np.asarray(scaled, dtype=np.float64)
    prefix = np.round(np.cumsum(x, axis=-1))
    return np.diff(prefix, axis=-1, prepend=0.0).astype(np.int64)


def bias_exponent(bias_int_abs: float) -> int:
    """Smallest 3-bit exponent e with |bias| / 2^e representable in a 13-bit mantissa."""
    for e in range(BIAS_EXP_MAX + 1):
        if round(bias_int_abs / 2 ** e) <= BIAS_MANT_MAX:
            return e
    raise GridError(f"bias {bias_int_abs} exceeds {BIAS_MAX}")


GRID_TOLERANCE = 1e-5  # float32 images store k/255 to about 1e-7


def input_span(mean, std) -> float:
    """Largest |(x - mean) / std| for images x in [0, 1]."""
    return max(max(abs((0.0 - m) / s), abs((1.0 - m) / s)) for m, s in zip(mean, std))


def detect_input_levels(normalised_values, max_levels: int = 255):
    """Smallest k <= max_levels with every value a multiple of 1/k, else None.

    8-bit images (k/255) and scikit-learn's digits (k/16) lie on such grids; encoding them
    with k integer levels per unit is then exact instead of rounded.
    """
    import numpy as np

    values = np.unique(np.asarray(normalised_values, dtype=np.float64).ravel())
    for k in range(1, max_levels + 1):
        scaled = values * k
        if np.abs(scaled - np.round(scaled)).max(initial=0.0) < GRID_TOLERANCE * k:
            return k
    return None
