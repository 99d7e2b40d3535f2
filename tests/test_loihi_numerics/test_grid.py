"""loihi_numerics.grid: the per-layer Loihi grid shared by QAT and the quantize pass.

Every claim is checked in exact integers (or exact rationals); the limits are re-derived here
from the documented formulas, not read back from the module.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from loihi_numerics import fixed_point as fx
from loihi_numerics.grid import (BIAS_MANT_MAX, BIAS_MAX, STATE_LIMIT, VTH_MAX,
                                         WEIGHT_MANT_MAX, GridError, bias_exponent,
                                         detect_input_levels, layer_grid, lif_decay,
                                         scale_for_vth, state_limit)

HYP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grid(**kw):
    base = dict(w_abs_max=0.0, w_row_abs_sum_max=0.0, b_abs_max=0.0, fan_in=1, x_max=1.0,
                tau=2.0, v_threshold=1.0, input_levels=1.0)
    base.update(kw)
    return layer_grid("layer.x", **base)


def _vth_for(s_max: float, v_th: float) -> int:
    """The largest vth whose scale (64 vth + 1) / V_th stays <= s_max."""
    return min(math.floor((s_max * v_th - 1) / 64), VTH_MAX)


# -- the scale / threshold rule ------------------------------------------------------------------

@pytest.mark.parametrize("v_th", [1.0, 0.5, 0.25, 2.0])  # powers of two: S exact
@pytest.mark.parametrize("w_abs_max", [0.013, 0.3, 1.0, 2.7])
def test_scale_makes_ge_equal_to_strict_gt_on_integers(v_th, w_abs_max):
    g = _grid(w_abs_max=w_abs_max, w_row_abs_sum_max=w_abs_max, v_threshold=v_th)
    assert g.scale == scale_for_vth(g.vth, v_th) == (64 * g.vth + 1) / v_th
    # exact: S * V_th == 64 vth + 1, so for integer v the paper's "H >= V_th"
    # (v >= S V_th) is Loihi's "v > vth << 6"
    threshold = Fraction(g.scale) * Fraction(v_th)
    assert threshold == 64 * g.vth + 1
    for v in range(64 * g.vth - 130, 64 * g.vth + 130):
        assert (v >= threshold) == (v > (g.vth << 6)), v


@pytest.mark.parametrize("v_th", [0.3, 0.75, 1.1])
def test_scale_rule_with_a_non_power_of_two_threshold(v_th):
    g = _grid(w_abs_max=0.5, w_row_abs_sum_max=0.5, v_threshold=v_th)
    assert g.scale == (64 * g.vth + 1) / v_th
    thr = g.scale * v_th  # float; within far less than one unit of 64 vth + 1
    assert abs(thr - (64 * g.vth + 1)) < 1e-6
    for v in range(64 * g.vth - 70, 64 * g.vth + 70):
        assert (v >= round(thr)) == (v > (g.vth << 6))


# -- each limit binds when it should ------------------------------------------------------------

def test_weight_limit_binds_and_is_tight():
    tau, k, v_th = 2.0, 1.0, 1.0
    n = 300
    w = WEIGHT_MANT_MAX * 64 * tau * k / (64 * n + 1)  # s_max = 64 n + 1 exactly (up to fp)
    g = _grid(w_abs_max=w, w_row_abs_sum_max=w, tau=tau, v_threshold=v_th, input_levels=k)
    assert g.limited_by == "weights"
    s_max = WEIGHT_MANT_MAX * 64 * tau * k / w
    assert g.vth == _vth_for(s_max, v_th) in (n - 1, n)
    # the largest weight lands on (at most) 127 and vth + 1 would exceed the weight limit
    assert round(w / g.weight_step(tau, k)) <= WEIGHT_MANT_MAX
    assert scale_for_vth(g.vth + 1, v_th) > s_max


@pytest.mark.parametrize("k", [1.0, 16.0, 255.0])
@pytest.mark.parametrize("tau", [2.0, 1.5, 4.0])
def test_weight_limit_scales_with_tau_and_input_levels(tau, k):
    w = 0.37
    g = _grid(w_abs_max=w, w_row_abs_sum_max=w, tau=tau, input_levels=k)
    assert g.limited_by == "weights"
    assert g.vth == _vth_for(WEIGHT_MANT_MAX * 64 * tau * k / w, 1.0)
    assert g.weight_step(tau, k) == 64.0 * tau * k / g.scale
    assert abs(round(w / g.weight_step(tau, k))) <= WEIGHT_MANT_MAX
    assert g.bias_step(tau) == tau / g.scale


def test_bias_limit_binds():
    tau, v_th, b = 2.0, 1.0, 40.0
    g = _grid(w_abs_max=1e-3, w_row_abs_sum_max=1e-3, b_abs_max=b, tau=tau, v_threshold=v_th)
    assert g.limited_by == "bias"
    s_max = BIAS_MAX * tau / b
    assert g.vth == _vth_for(s_max, v_th)
    assert scale_for_vth(g.vth + 1, v_th) > s_max
    bias_int = round(b / g.bias_step(tau))
    assert bias_int <= BIAS_MAX
    e = bias_exponent(bias_int)
    assert abs(round(bias_int / 2 ** e)) <= BIAS_MANT_MAX and 0 <= e <= 7


def test_state_limit_binds_and_includes_the_rounding_slack():
    tau, v_th, k = 2.0, 1.0, 1.0
    fan_in, x_max, w, b = 600, 3.0, 0.05, 0.2
    row = fan_in * w
    g = _grid(w_abs_max=w, w_row_abs_sum_max=row, b_abs_max=b, fan_in=fan_in, x_max=x_max,
              tau=tau, v_threshold=v_th, input_levels=k)
    assert g.limited_by == "state"
    slack = 32.0 * fan_in * x_max + 64.0           # rounding: 1/2 per weight, 64 on the bias
    s_max = (STATE_LIMIT - 1 - slack) / ((x_max * row / k + b) / tau)
    assert g.vth == _vth_for(s_max, v_th)
    assert scale_for_vth(g.vth + 1, v_th) > s_max
    # the same statistics with a larger fan-in (more rounding slack) give a smaller grid
    g2 = _grid(w_abs_max=w, w_row_abs_sum_max=row, b_abs_max=b, fan_in=2 * fan_in,
               x_max=x_max, tau=tau, v_threshold=v_th, input_levels=k)
    s2 = (STATE_LIMIT - 1 - 2 * slack + 64.0) / ((x_max * row / k + b) / tau)
    assert g2.limited_by == "state" and g2.vth == _vth_for(s2, v_th) < g.vth


def test_equal_weights_rounding_up_stay_below_the_state_limit():
    # Equal weights make every weight sit just below n + 1/2 at the state-limited scale, so
    # rounding pushes each up by almost 1/2: exactly the slack the limit reserves.
    tau, v_th = 2.0, 1.0
    for fan_in, x_max in [(517, 1.0), (900, 1.0), (300, 3.0), (4000, 2.0), (77, 255.0)]:
        w = np.full((1, fan_in), 0.01)
        b = 0.0
        g = _grid(w_abs_max=0.01, w_row_abs_sum_max=0.01 * fan_in, fan_in=fan_in,
                  x_max=x_max, tau=tau, v_threshold=v_th)
        assert g.limited_by == "state", (fan_in, x_max)
        w_int = np.round(w / g.weight_step(tau))
        assert 64 * np.abs(w_int).sum() * x_max + b < STATE_LIMIT


def test_vth_is_capped_at_17_bits_and_an_all_zero_layer_has_a_grid():
    g = _grid(w_abs_max=1e-9, w_row_abs_sum_max=1e-9)
    assert g.vth == VTH_MAX and g.limited_by == "weights"
    z = _grid(tau=2.0, v_threshold=0.5)
    assert z.vth == _vth_for(WEIGHT_MANT_MAX * 64 * 2.0, 0.5) and z.limited_by == "weights"


@pytest.mark.parametrize("kw, reason", [
    (dict(w_abs_max=1e6, w_row_abs_sum_max=1e6), "weights"),
    (dict(w_abs_max=1e-3, w_row_abs_sum_max=1e-3, b_abs_max=1e8), "bias"),
    (dict(w_abs_max=0.01, w_row_abs_sum_max=2000.0, fan_in=50_000, x_max=255.0), "state"),
])
def test_threshold_below_one_step_is_a_grid_error_naming_layer_and_limit(kw, reason):
    with pytest.raises(GridError) as e:
        _grid(**kw)
    msg = str(e.value)
    assert "layer 'layer.x'" in msg and f"limited by {reason}" in msg and "below one step" in msg


@pytest.mark.parametrize("tau, v_th", [(1.0, 1.0), (0.5, 1.0), (2.0, 0.0), (2.0, -1.0)])
def test_invalid_neuron_constants_are_refused(tau, v_th):
    with pytest.raises(GridError, match="layer 'layer.x'"):
        _grid(w_abs_max=1.0, w_row_abs_sum_max=1.0, tau=tau, v_threshold=v_th)


# -- bias exponent ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, exp", [
    (0, 0), (1, 0), (4095, 0), (4096, 1), (8190, 1),
    (8191, 2),        # 8191 / 2 = 4095.5 rounds (half to even) to 4096: one more bit
    (8192, 2), (16380, 2), (4095 << 3, 3), (BIAS_MAX - 1, 7), (BIAS_MAX, 7),
    (BIAS_MAX + 63, 7),  # 524223 / 128 = 4095.49... -> 4095
])
def test_bias_exponent_is_the_smallest_exponent(value, exp):
    assert bias_exponent(value) == exp
    assert round(value / 2 ** exp) <= BIAS_MANT_MAX
    if exp > 0:
        assert round(value / 2 ** (exp - 1)) > BIAS_MANT_MAX


@given(st.integers(0, BIAS_MAX + 63))
@settings(max_examples=500, deadline=None)
def test_bias_exponent_property(value):
    e = bias_exponent(value)
    mant = round(value / 2 ** e)
    assert 0 <= e <= 7 and mant <= BIAS_MANT_MAX
    assert abs((mant << e) - value) <= (1 << e) // 2   # the representation error
    assert e == 0 or round(value / 2 ** (e - 1)) > BIAS_MANT_MAX


@pytest.mark.parametrize("value", [BIAS_MAX + 64, BIAS_MAX + 1000, 1e9])
def test_bias_beyond_13_plus_3_bits_is_an_error(value):
    with pytest.raises(GridError, match="exceeds 524160"):
        bias_exponent(value)


# -- input grid detection -----------------------------------------------------------------------

def test_detects_16_levels_for_sixteenths():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(50, 1, 8, 8)) / 16.0
    x[0, 0, 0, :3] = [1 / 16, 3 / 16, 5 / 16]  # make sure odd numerators occur
    assert detect_input_levels(x) == 16
    assert detect_input_levels(x.astype(np.float32)) == 16


def test_detects_255_levels_for_float32_bytes():
    x = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(16, 16)
    assert detect_input_levels(x) == 255
    rng = np.random.default_rng(1)
    imgs = (rng.integers(0, 256, size=(8, 3, 4, 4)).astype(np.float32) / 255.0)
    imgs.flat[:2] = [1 / 255, 2 / 255]
    assert detect_input_levels(imgs.astype(np.float32)) == 255


def test_smallest_grid_wins_and_random_floats_have_none():
    assert detect_input_levels(np.array([0.0, 0.5, 1.0])) == 2
    assert detect_input_levels(np.array([0.0, 0.25, 0.5, 0.75])) == 4
    assert detect_input_levels(np.array([0.0, 2 / 3, -1 / 3])) == 3
    assert detect_input_levels(np.array([0.0, 1.0])) == 1
    rng = np.random.default_rng(2)
    assert detect_input_levels(rng.random(200)) is None
    assert detect_input_levels(rng.random(200).astype(np.float32)) is None
    # a grid finer than max_levels is not found
    assert detect_input_levels(np.arange(0, 301) / 300.0) is None
    assert detect_input_levels(np.arange(0, 301) / 300.0, max_levels=300) == 300


# -- property: the compiler's rounding rule on the grid never breaks the hardware limits ----------

@st.composite
def layers(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cout = draw(st.integers(1, 4))
    fan_in = draw(st.sampled_from([1, 2, 9, 16, 72, 144, 600, 3456]))
    mag = 10.0 ** draw(st.floats(-4, 2))
    kind = draw(st.sampled_from(["normal", "equal", "sparse", "uniform"]))
    if kind == "normal":
        w = rng.normal(0, mag, (cout, fan_in))
    elif kind == "equal":  # every weight rounds the same way: the rounding slack matters
        w = mag * rng.choice([-1.0, 1.0], (cout, fan_in))
    elif kind == "sparse":
        w = rng.normal(0, mag, (cout, fan_in)) * (rng.random((cout, fan_in)) < 0.1)
    else:
        w = rng.uniform(-mag, mag, (cout, fan_in))
    b_mag = draw(st.sampled_from([0.0, 1e-3, 0.1, 1.0, 10.0, 300.0]))
    b = rng.normal(0, b_mag, cout) if b_mag else np.zeros(cout)
    x_max = float(draw(st.sampled_from([1, 2, 3, 4, 16, 127, 255])))
    k = float(draw(st.sampled_from([1, 1, 16, 255])))
    tau = draw(st.sampled_from([2.0, 1.5, 3.0, 4.0]))
    v_th = draw(st.sampled_from([1.0, 0.5, 0.25, 0.3]))
    return w, b, x_max, k, tau, v_th


@HYP
@given(layers())
def test_rounded_integers_respect_weight_bias_and_state_bounds(layer):
    w, b, x_max, k, tau, v_th = layer
    rows = np.abs(w)
    try:
        g = layer_grid("prop", w_abs_max=float(rows.max()),
                       w_row_abs_sum_max=float(rows.sum(1).max()),
                       b_abs_max=float(np.abs(b).max()), fan_in=w.shape[1], x_max=x_max,
                       tau=tau, v_threshold=v_th, input_levels=k)
    except GridError:
        assume(False)
    assert 1 <= g.vth <= VTH_MAX
    event(f"limited by {g.limited_by}")
    # compiler/passes/quantize.py's rule
    w_int = np.round(w / g.weight_step(tau, k)).astype(np.int64)
    bias_v = np.round(b / g.bias_step(tau))
    exp = np.array([bias_exponent(abs(v)) for v in bias_v], dtype=np.int64)
    mant = np.round(bias_v / 2.0 ** exp).astype(np.int64)
    assert np.abs(w_int).max() <= WEIGHT_MANT_MAX
    assert np.abs(mant).max() <= BIAS_MANT_MAX and exp.min() >= 0 and exp.max() <= 7
    # provable state bound, in exact integers (x_max is an integer)
    a_max = int(np.abs(w_int).sum(axis=1).max()) * int(x_max)
    b_max = int(np.abs(mant << exp).max())
    assert 64 * a_max + b_max < STATE_LIMIT
    # and then |v| <= 2 (64 A + B) fits the 24-bit membrane without saturating
    assert 2 * (64 * a_max + b_max) < 2 ** 23


# -- the generalised LIF of foreign NIR graphs (strict rule, any tau) ------------------------------

@pytest.mark.parametrize("v_th", [1.0, 0.5, 0.25, 2.0])   # powers of two: S exact
def test_strict_rule_scale_makes_gt_equal_to_loihi_gt(v_th):
    """spike_if ">": S V_th = 64 vth exactly, so H > V_th <=> v = S H > 64 vth for every v."""
    g = _grid(w_abs_max=0.9, tau=4.0, v_threshold=v_th, spike_if=">")
    assert Fraction(g.scale) * Fraction(v_th) == 64 * g.vth
    for v in range(64 * g.vth - 70, 64 * g.vth + 70):
        assert (Fraction(v) / Fraction(g.scale) > Fraction(v_th)) == (v > (g.vth << 6))
    s_max = WEIGHT_MANT_MAX * 64 * 4.0 / 0.9
    assert g.vth == min(math.floor(s_max * v_th / 64), VTH_MAX) and g.scale <= s_max
    assert scale_for_vth(g.vth, v_th, ">") == g.scale
    assert scale_for_vth(g.vth, v_th) == (64 * g.vth + 1) / v_th   # the paper's rule unchanged


@pytest.mark.parametrize("v_th", [0.3, 0.7, 3.0])
def test_strict_rule_with_a_non_power_of_two_threshold(v_th):
    g = _grid(w_abs_max=0.9, tau=4.0, v_threshold=v_th, spike_if=">")
    assert g.scale == 64 * g.vth / v_th
    assert abs(g.scale * v_th - 64 * g.vth) < 1e-6   # within far less than one unit of v


def test_unknown_spike_rule_is_refused():
    with pytest.raises(GridError, match="layer 'layer.x'.*spike rule '=>'"):
        _grid(w_abs_max=0.5, spike_if="=>")


@pytest.mark.parametrize("tau, dv, exact", [(2.0, 2048, True), (4.0, 1024, True),
                                            (4096 / 256, 256, True), (3.0, 1365, False),
                                            (1.5, 2731, False), (8000.0, 1, False)])
def test_lif_decay_rounds_and_says_when(tau, dv, exact):
    got = lif_decay("layer.x", tau)
    assert got == (dv, exact, 4096 / dv)


@pytest.mark.parametrize("tau, kind", [(10000.0, "IF neuron"), (1.0001, "without memory"),
                                       (1.0, "out of range"), (math.inf, "out of range")])
def test_lif_decay_refuses_a_change_of_neuron_kind(tau, kind):
    with pytest.raises(GridError, match=f"layer 'layer.x'.*{kind}"):
        lif_decay("layer.x", tau)


def test_state_limit_keeps_slow_decays_inside_24_bits():
    """|v| < (64 A + B) 4096/dv: the limit is 2^22 at dv >= 2048 and 2048 dv below; driven
    with the largest allowed input for many steps, v never saturates."""
    assert state_limit(2048) == state_limit(4095) == STATE_LIMIT
    assert state_limit(256) == 2048 * 256
    for dv in (1, 7, 256, 1365, 2048, 3000):
        limit = state_limit(dv)
        a_in = -((limit - 1) // 64)                      # 64 A < limit, no bias
        params = fx.LifParams(du=4095, dv=dv, vth=VTH_MAX, bias_mant=0, bias_exp=0)
        u = v = np.zeros(1, dtype=np.int64)
        lowest = 0
        for _ in range(40000 if dv < 8 else 4000):
            u, v, _ = fx.lif_step(u, v, np.array([a_in]), params)
            lowest = min(lowest, int(v[0]))
        assert -lowest < (1 << 23) - 1, dv               # never reached the clip
    g_fast = _grid(w_abs_max=0.01, w_row_abs_sum_max=50.0, x_max=1.0, tau=16.0)
    g_slow = _grid(w_abs_max=0.01, w_row_abs_sum_max=50.0, x_max=1.0, tau=16.0,
                   limit=state_limit(256))
    assert g_fast.limited_by == g_slow.limited_by == "state" and g_slow.scale < g_fast.scale


# -- rounding a full-map (token-pooled) kernel along its positions ----------------------------
@HYP
@given(st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=1, max_size=60))
def test_rounding_along_positions_keeps_every_run_within_one_step(values):
    """Each prefix sum is the rounded float prefix sum, so any run of consecutive positions
    (a contiguous block of active tokens) errs by at most one step; each weight by at most
    one step, and never beyond floor(|x|) + 1 (an 8-bit mantissa stays 8-bit)."""
    from loihi_numerics.grid import round_along_positions

    x = np.array(values, dtype=np.float64)
    w = round_along_positions(x[None, None, :])[0, 0]
    assert w.dtype == np.int64
    prefix_err = np.cumsum(w) - np.cumsum(x)
    assert np.abs(prefix_err).max() <= 0.5 + 1e-12
    for a in range(len(x)):
        for b in range(a + 1, len(x) + 1):
            assert abs(int(w[a:b].sum()) - float(x[a:b].sum())) <= 1.0 + 1e-12
    assert np.all(np.abs(w) <= np.floor(np.abs(x)) + 1)


def test_rounding_along_positions_beats_rounding_each_copy_of_a_pooled_weight():
    """A weight 0.4 spread over 49 tokens: rounding each copy gives 0 (the kernel is dead);
    along the positions it keeps the pooled sum round(49 * 0.4) = 20 and spaces the ones."""
    from loihi_numerics.grid import round_along_positions

    w = round_along_positions(np.full((1, 1, 49), 0.4))[0, 0]
    assert np.round(np.full(49, 0.4)).sum() == 0
    assert int(w.sum()) == 20 and set(w.tolist()) == {0, 1}
    assert all(abs(int(w[:n].sum()) - 0.4 * n) <= 0.5 for n in range(1, 50))


def test_a_larger_rounding_slack_never_raises_the_scale():
    """The state bound counts the rounding slack per weight: rounding along positions (slack
    1) gets a scale no larger than rounding to nearest (1/2), smaller where the state binds."""
    kw = dict(w_abs_max=0.01, w_row_abs_sum_max=20.0, b_abs_max=0.0, fan_in=20000, x_max=1.0,
              tau=2.0, v_threshold=1.0)
    near, along = layer_grid("l", **kw), layer_grid("l", **kw, rounding_slack=1.0)
    assert near.limited_by == along.limited_by == "state"
    assert along.scale < near.scale
    # re-derived: 64 A + B < 2^22 with A = S sum|W| / (64 tau) + fan_in * slack
    for g, slack in ((near, 0.5), (along, 1.0)):
        assert 64 * (g.scale * 20.0 / 128 + 20000 * slack) + 64 < STATE_LIMIT
