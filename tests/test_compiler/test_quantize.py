"""compiler.passes.quantize: float graph -> Loihi fixed point, checked in exact integers."""
import math

from typing import Optional

import numpy as np
import pytest
import torch

from loihi_numerics import fixed_point as fx
from compiler.calibration import observed_synaptic_max
from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import Graph, IRError, Node
from compiler.passes import fold_batchnorm, float_passes
from compiler.passes.quantize import (QuantizeOptions, _quantize_attention_lif, quantize,
                                      value_bounds)
from compiler.reference import attention_counts, run_reference
from loihi_numerics.grid import (BIAS_MANT_MAX, STATE_LIMIT, VTH_MAX, WEIGHT_MANT_MAX,
                                         bias_exponent, layer_grid)
from spikformer_neuro.neuron import lif_multistep
from spikformer_neuro.testing import firing_model as micro_model
from support.graphs import build_graph

MICRO = ["test-micro", "test-micro-events"]


def micro_inputs(cfg, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if cfg.event_input:
        return (torch.rand(batch, *cfg.input_shape(), generator=gen) < 0.4).float()
    x = torch.rand(batch, *cfg.input_shape(), generator=gen)
    x[0] = 0.0  # extremes too
    x[1] = 1.0
    return x


@pytest.fixture(scope="module", params=MICRO)
def micro(request):
    model = micro_model(request.param)
    folded = float_passes(model_to_ir(model))
    return model, folded, quantize(folded)


def _layers(q: Graph):
    return q.meta["quantization"]["layers"]


# -- structure and ranges -----------------------------------------------------------------------

def test_quantized_graph_is_integer_and_in_loihi_ranges(micro):
    model, folded, q = micro
    q.validate()
    assert q.meta["stage"] == "quantized"
    assert not q.by_op("lif", "batchnorm", "maxpool2d", "token_time_mean")
    for node in q:
        for key, arr in node.params.items():
            assert np.issubdtype(arr.dtype, np.integer), (node.name, key, arr.dtype)
    lifs = q.by_op("loihi_lif")
    assert [n.name for n in lifs] == [n.name for n in folded.by_op("lif")]
    for node in lifs:
        p = node.params
        assert p["du"].shape == p["dv"].shape == p["vth"].shape == ()  # one per population
        assert int(p["du"]) == 4095 and int(p["dv"]) == 2048          # tau = 2
        assert 1 <= int(p["vth"]) <= VTH_MAX
        assert p["bias_mant"].shape in ((node.shape[0], 1, 1), (1, 1, 1))
        assert np.abs(p["bias_mant"]).max() <= BIAS_MANT_MAX
        assert p["bias_exp"].min() >= 0 and p["bias_exp"].max() <= 7
        fx.LifParams(**{k: p[k] for k in ("du", "dv", "vth", "bias_mant", "bias_exp")})
    for conv in q.by_op("conv2d"):
        assert np.abs(conv.params["weight"]).max() <= WEIGHT_MANT_MAX, conv.name
        assert conv.params["weight"].shape == folded[conv.name].params["weight"].shape
        assert "bias" not in conv.params  # the bias lives in the LIF
    head = q["head"]
    assert np.abs(head.params["weight"]).max() == WEIGHT_MANT_MAX
    assert q["readout"].op == "token_time_sum"


def test_integers_follow_the_grid_rule_exactly(micro):
    """w_int = round(W / step), bias = mant << exp = round(b / bias_step) within the exponent's
    half step, S = (64 vth + 1) / V_th, and the grid equals layer_grid on the float weights."""
    model, folded, q = micro
    info = _layers(q)
    bounds = value_bounds(q)
    for lif in folded.by_op("lif"):
        if folded[lif.inputs[0]].op != "conv2d":
            continue
        conv = folded[lif.inputs[0]]
        tau, v_th = lif.attrs["tau"], lif.attrs["v_threshold"]
        layer = info[lif.name]
        src = q[conv.inputs[0]]
        graded_src = src.op == "input" and "input_scale" in src.attrs
        k = float(src.attrs["input_scale"]) if graded_src else 1.0
        x_max = sum(bounds[i] for i in conv.inputs)
        w = conv.params["weight"].astype(np.float64)
        b = conv.params.get("bias", np.zeros(w.shape[0])).astype(np.float64)
        rows = np.abs(w).reshape(w.shape[0], -1)
        grid = layer_grid(lif.name, w_abs_max=float(rows.max()),
                          w_row_abs_sum_max=float(rows.sum(1).max()),
                          b_abs_max=float(np.abs(b).max()), fan_in=rows.shape[1], x_max=x_max,
                          tau=tau, v_threshold=v_th, input_levels=k)
        vth = int(q[lif.name].params["vth"])
        assert (vth, layer["scale"], layer["limited_by"]) == (grid.vth, grid.scale, grid.limited_by)
        assert layer["scale"] == (64 * vth + 1) / v_th
        step = 64.0 * tau * k / layer["scale"]
        assert np.array_equal(q[conv.name].params["weight"], np.round(w / step).astype(np.int64))
        mant = q[lif.name].params["bias_mant"].reshape(-1)
        exp = q[lif.name].params["bias_exp"].reshape(-1)
        bias_v = np.round(b / (tau / layer["scale"]))
        assert [int(e) for e in exp] == [bias_exponent(abs(v)) for v in bias_v]
        assert np.all(np.abs((mant << exp) - bias_v) <= (1 << exp) // 2)
        # provable state bound, exact integers
        a_max = int(np.abs(q[conv.name].params["weight"]).reshape(w.shape[0], -1).sum(1).max())
        assert 64 * a_max * int(x_max) + int(np.abs(mant << exp).max()) < STATE_LIMIT


def test_input_encoding(micro):
    model, folded, q = micro
    node = q.input_node
    if model.cfg.event_input:
        assert node.attrs["encoding"] == "spikes" and node.attrs["max_abs"] == 1
        assert q["sps.stages.0.conv"].attrs["graded_input"] is False
    else:
        assert node.attrs["encoding"] == "graded" and node.attrs["bits"] == 8
        assert node.attrs["input_scale"] == 255.0 and node.attrs["max_abs"] == 255
        assert node.attrs["signed"] is False
        assert q["sps.stages.0.conv"].attrs["graded_input"] is True
    # binary spike sources feed binary convs; the residual stream is graded
    assert q["sps.stages.1.conv"].attrs["graded_input"] is False
    assert q["blocks.0.attn.proj.linear"].attrs["graded_input"] is False
    assert q["blocks.0.attn.q.linear"].attrs["graded_input"] is True
    assert q["blocks.0.mlp.fc1.linear"].attrs["graded_input"] is True


def test_input_levels_option_and_signed_encoding():
    model = micro_model("test-micro")
    folded = float_passes(model_to_ir(model))
    q16 = quantize(folded, options=QuantizeOptions(input_levels=16))
    assert q16.input_node.attrs["input_scale"] == 16.0 and q16.input_node.attrs["max_abs"] == 16
    with pytest.raises(IRError, match="layer 'input'.*input_levels 300"):
        quantize(folded, options=QuantizeOptions(input_levels=300))
    # mean/std normalisation that makes the input signed: 7-bit magnitude plus sign
    g = float_passes(model_to_ir(model))
    g["input"].attrs.update(mean=[0.5], std=[0.25])  # [0, 1] -> [-2, 2]
    qs = quantize(g)
    a = qs.input_node.attrs
    assert a["signed"] is True and a["input_scale"] == 127 / 2 and a["max_abs"] == 127


# -- value ranges are true bounds --------------------------------------------------------------

def test_value_bounds_hold_on_real_runs(micro):
    model, folded, q = micro
    bounds = value_bounds(q)
    x = micro_inputs(model.cfg, 24, seed=3)
    res = run_reference(q, x, record=True)
    assert set(res.outputs) == set(q.nodes)
    for name, val in res.outputs.items():
        top = int(np.abs(val).max())
        assert top <= bounds[name], (name, top, bounds[name])
    # the bounds are not vacuous where they are exact: spikes and pooled spikes reach them
    assert bounds["sps.stages.0.lif"] == 1 and bounds["sps.pool3.sum"] == 9
    assert bounds["sps.residual"] == 2 and bounds["blocks.0.attn_residual"] == 3
    assert bounds["blocks.0.mlp_residual"] == 4
    spikes = [res.outputs[n.name] for n in q.by_op("loihi_lif")]
    assert all(s.min() == 0 and s.max() == 1 for s in spikes), "every LIF fires sometimes"


# -- max-pool / threshold and residual sums -------------------------------------------------------

def test_pool_threshold_and_residuals_survive(micro):
    model, folded, q = micro
    pool, thr = q["sps.pool3.sum"], q["sps.pool3"]
    assert pool.op == "sumpool2d" and pool.inputs == ["sps.stages.3.lif"]
    assert (pool.attrs["kernel"], pool.attrs["stride"], pool.attrs["padding"]) == (3, 2, 1)
    assert thr.op == "threshold" and thr.inputs == ["sps.pool3.sum"]
    assert thr.attrs["threshold"] == 1.0
    for name in ("sps.residual", "blocks.0.attn_residual", "blocks.0.mlp_residual"):
        assert q[name].op == "sum" and q[name].inputs == folded[name].inputs
    x = micro_inputs(model.cfg, 8, seed=5)
    res = run_reference(q, x, record=True)
    s3 = torch.from_numpy(res.outputs["sps.stages.3.lif"]).double().flatten(0, 1)
    pooled = torch.nn.functional.max_pool2d(s3, 3, 2, 1).reshape(res.outputs["sps.pool3"].shape)
    assert np.array_equal(res.outputs["sps.pool3"], pooled.numpy().astype(np.int64))
    for name in ("sps.residual", "blocks.0.attn_residual", "blocks.0.mlp_residual"):
        expect = sum(res.outputs[i] for i in q[name].inputs)
        assert np.array_equal(res.outputs[name], expect)


# -- attention: gain and threshold make the integer LIF exact -------------------------------------

def _float_attention_lif(counts: np.ndarray, dtype, scale: float = 0.125) -> np.ndarray:
    """The paper: X = count * scale, H = V + (X - V) / 2, fire on H >= 0.5, reset to 0."""
    x = torch.as_tensor(counts, dtype=dtype) * scale
    return lif_multistep(x, tau=2.0, v_threshold=0.5).numpy().astype(bool)


def _int_attention_lif(counts: np.ndarray, gain: int, node: Node,
                       saturation: Optional[int] = None) -> np.ndarray:
    """Loihi's LIF (fixed_point.lif_step) fed as the attention node feeds it."""
    p = fx.LifParams(**{k: node.params[k] for k in ("du", "dv", "vth", "bias_mant", "bias_exp")})
    if saturation is not None:
        counts = np.minimum(counts, saturation)
    u = v = np.zeros(counts.shape[1:], np.int64)
    out = []
    for t in range(counts.shape[0]):
        u, v, s = fx.lif_step(u, v, gain * counts[t], p)
        assert np.abs(v).max(initial=0) < 2 ** 23 and np.abs(u).max(initial=0) < 2 ** 23
        out.append(s)
    return np.stack(out)


@pytest.fixture(scope="module")
def attention_t4():
    model = micro_model("test-micro", time_steps=4)
    q = quantize(float_passes(model_to_ir(model)))
    return q["blocks.0.attn.attention"], q["blocks.0.attn.attn_lif"]


def test_attention_gain_and_threshold(attention_t4):
    attn, lif = attention_t4
    g = attn.attrs["gain"]
    assert g == 1                          # 2 ** max(0, T - 7): E stays even for T - 2 halvings
    assert lif.attrs["exact"] is True
    assert int(lif.params["vth"]) == 8 * g    # tau g V_th / s: 64 vth = K = S V_th
    assert attn.attrs["saturation"] == 8      # counts >= tau V_th / s fire on their own
    assert int(lif.params["du"]) == 4095 and int(lif.params["dv"]) == 2048
    # the +1 bias turns Loihi's strict v > 64 vth into H >= V_th
    assert lif.params["bias_mant"].tolist() == [[[1]]] and not lif.params["bias_exp"].any()


def test_attention_lif_hand_cases(attention_t4):
    attn, lif = attention_t4
    g = attn.attrs["gain"]
    cases = {  # counts over T = 4 -> spikes (float H in the comments)
        (8, 0, 0, 0): (1, 0, 0, 0),      # H = 0.5: the tie fires (>=)
        (7, 0, 0, 0): (0, 0, 0, 0),      # H = 0.4375
        (4, 4, 4, 4): (0, 0, 0, 0),      # H = 0.25, 0.375, 0.4375, 0.46875
        (4, 6, 0, 0): (0, 1, 0, 0),      # H = 0.25, 0.125 + 0.375 = 0.5
        (4, 5, 6, 0): (0, 0, 1, 0),      # 0.25, 0.4375, 0.21875 + 0.375 = 0.59375
        (1, 1, 1, 13): (0, 0, 0, 1),     # 0.0625, 0.09375, 0.109375, 0.0546875 + 0.8125
        (2, 3, 5, 4): (0, 0, 0, 0),      # 0.125, 0.25, 0.4375, 0.46875
        (2, 3, 5, 5): (0, 0, 0, 1),      # ... 0.21875 + 0.3125 = 0.53125
        (16, 8, 16, 0): (1, 1, 1, 0),
        (0, 0, 0, 8): (0, 0, 0, 1),
    }
    counts = np.array(list(cases), dtype=np.int64).T.reshape(4, 1, -1, 1, 1)  # [T, B, n, 1, 1]
    expect = np.array(list(cases.values()), dtype=bool).T.reshape(4, 1, -1, 1, 1)
    assert np.array_equal(_float_attention_lif(counts, torch.float32), expect)
    assert np.array_equal(_int_attention_lif(counts, g, lif, attn.attrs["saturation"]), expect)


def test_attention_lif_exact_on_all_tie_prone_and_random_counts(attention_t4):
    attn, lif = attention_t4
    g = attn.attrs["gain"]
    count_max = attn.shape[1] * attn.shape[2] * (attn.shape[0] // attn.attrs["num_heads"])
    vals = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16])
    grid = np.stack(np.meshgrid(*[vals] * 4, indexing="ij"), 0).reshape(4, 1, -1, 1, 1)  # 11^4
    rng = np.random.default_rng(0)
    rand = rng.integers(0, count_max + 1, size=(4, 1, 20000, 1, 1))
    small = rng.integers(0, 17, size=(4, 1, 20000, 1, 1))
    for counts in (grid, rand, small):
        counts = counts.astype(np.int64)
        want32 = _float_attention_lif(counts, torch.float32)
        want64 = _float_attention_lif(counts, torch.float64)
        got = _int_attention_lif(counts, g, lif, attn.attrs["saturation"])
        assert np.array_equal(want32, want64)
        assert np.array_equal(got, want32), int((got != want32).sum())
    assert got.any() and not got.all()


def test_attention_from_binary_qkv_matches_the_float_attention_lif(attention_t4):
    attn, lif = attention_t4
    g, heads = attn.attrs["gain"], attn.attrs["num_heads"]
    d, h, w = attn.shape
    rng = np.random.default_rng(1)
    for density in (0.05, 0.15, 0.3, 0.6):
        q, k, v = ((rng.random((4, 8, d, h, w)) < density).astype(np.int64) for _ in range(3))
        counts = np.stack([attention_counts(q[t], k[t], v[t], heads) for t in range(4)])
        # the float model's attention, in float32 as the model computes it
        def tok(a):  # [T, B, D, H, W] -> [T, B, N, D]
            return torch.from_numpy(a).float().flatten(3).transpose(2, 3)
        qt, kt, vt = tok(q), tok(k), tok(v)
        split = lambda x: x.reshape(*x.shape[:3], heads, d // heads).transpose(2, 3)  # noqa: E731
        x = (split(qt) @ split(kt).transpose(-2, -1)) @ split(vt) * 0.125
        x = x.transpose(2, 3).reshape(qt.shape).transpose(2, 3).reshape(4, 8, d, h, w)
        want = lif_multistep(x, tau=2.0, v_threshold=0.5).numpy().astype(bool)
        assert np.array_equal(x.numpy() / 0.125, counts.astype(np.float32))
        got = _int_attention_lif(counts, g, lif, attn.attrs["saturation"])
        assert np.array_equal(got, want)


def _dvs_attention(scale: float, time_steps: int):
    """The CIFAR10-DVS attention (D 256, 8x8 tokens, 16 heads: counts up to 1024)."""
    attn = Node("a", "spiking_attention", ["q", "k", "v"], (256, 8, 8), {},
                {"num_heads": 16, "scale": scale})
    lif = Node("l", "lif", ["a"], (256, 8, 8), {}, {"tau": 2.0, "v_threshold": 0.5})
    g, saturation, params, info = _quantize_attention_lif(attn, lif, time_steps=time_steps)
    return g, saturation, Node("l", "loihi_lif", ["a"], (256, 8, 8), params, {}), info


@pytest.mark.parametrize("scale", [0.25, 0.125])
def test_attention_exact_at_t16_within_24_bits(scale):
    """The DVS networks run T = 16: the old rule needed g = 2^15 and 64 g N d = 2^31 (inexact
    at g = 32). Saturation and the +1 bias make it exact with g = 2^(T-7) = 512 and a
    membrane below 2^19: checked on every count sequence that can sit near the threshold
    and on random ones over the whole count range."""
    g, saturation, lif, info = _dvs_attention(scale, 16)
    assert info["exact"] is True and g == 512 and saturation == int(1 / scale)
    vth = int(lif.params["vth"])
    assert vth == g * saturation and 32 * vth + 64 * g * saturation + 1 < 2 ** 19
    rng = np.random.default_rng(7)
    low = rng.integers(0, saturation + 1, size=(16, 1, 40000, 1, 1))     # near the threshold
    sparse = low * (rng.random(low.shape) < 0.3)                        # long silent stretches
    full = rng.integers(0, 1025, size=(16, 1, 20000, 1, 1))              # the whole count range
    # the closest calls: a count a for k silent-decaying steps (never firing), then b. With
    # a = 1 for 15 steps and b = 3, H_16 = 0.5 - 2^-18 at s = 1/4: one LSB short of the
    # threshold, which a gain of 2^(T-8) or no +1 bias gets wrong
    runs = [np.r_[np.full(k, a), [b], np.zeros(15 - k)] for k in range(1, 16)
            for a in range(1, saturation) for b in range(saturation + 1)]
    runs = np.array(runs, dtype=np.int64).T.reshape(16, 1, -1, 1, 1)
    for counts in (low, sparse, full, runs):
        counts = counts.astype(np.int64)
        want = _float_attention_lif(counts, torch.float64, scale)
        assert np.array_equal(_float_attention_lif(counts, torch.float32, scale), want)
        got = _int_attention_lif(counts, g, lif, saturation)
        assert np.array_equal(got, want), int((got != want).sum())
        assert got.any() and not got.all()


def test_attention_exact_rule_gives_every_t_its_gain():
    for t, g in ((1, 1), (4, 1), (7, 1), (8, 2), (12, 32), (16, 512), (20, 8192)):
        got, _, _, info = _dvs_attention(0.125, t)
        assert (got, info["exact"]) == (g, True), t


def test_attention_gain_when_exactness_is_impossible():
    # tau = 3 does not halve: the old approximation (g bounded by the 24-bit state), inexact
    attn = Node("a", "spiking_attention", ["q", "k", "v"], (256, 8, 8), {},
                {"num_heads": 16, "scale": 0.125})
    lif = Node("l", "lif", ["a"], (256, 8, 8), {}, {"tau": 3.0, "v_threshold": 0.5})
    g, saturation, params, info = _quantize_attention_lif(attn, lif, time_steps=16)
    count_max = 64 * 16
    assert g == 32 and 64 * g * count_max * 2 < 2 ** 23 and 64 * 2 * g * count_max * 2 >= 2 ** 23
    assert info["exact"] is False and saturation is None
    # T = 21 at s = 1/8 no longer fits the 24-bit membrane exactly
    assert _dvs_attention(0.125, 21)[3]["exact"] is False


# -- refusals name the layer --------------------------------------------------------------------

def _graph(nodes, t=2):
    return build_graph(nodes, t, stage="float")


def _lif(name, src, shape):
    return Node(name, "lif", [src], shape, {}, {"tau": 2.0, "v_threshold": 1.0})


def _tail(src, d=2, k=2):
    return [Node("mean", "token_time_mean", [src], (d,)),
            Node("head", "affine", ["mean"], (k,), {"weight": np.ones((k, d))}),
            Node("output", "output", ["head"], (k,))]


def _input(c=1, side=3):
    return Node("input", "input", [], (c, side, side), {}, {"encoding": "spikes"})


def _conv(name, src, cin=1, cout=2, side=3, k=1):
    return Node(name, "conv2d", [src], (cout, side, side),
                {"weight": np.full((cout, cin, k, k), 0.5)},
                {"stride": [1, 1], "padding": [k // 2] * 2, "groups": 1})


def test_conv_feeding_two_lifs_is_refused():
    g = _graph([_input(), _conv("c", "input"), _lif("l1", "c", (2, 3, 3)),
                _lif("l2", "c", (2, 3, 3)), Node("s", "sum", ["l1", "l2"], (2, 3, 3)),
                *_tail("s")])
    with pytest.raises(IRError, match=r"layer 'c' \(conv2d\).*exactly one LIF.*'l1', 'l2'"):
        quantize(g)


def test_leftover_batchnorm_and_maxpool_are_refused():
    model = micro_model("test-micro")
    raw = model_to_ir(model)
    with pytest.raises(IRError, match=r"layer 'sps.stages.0.bn' \(batchnorm\).*float_passes"):
        quantize(raw)
    with pytest.raises(IRError, match=r"layer 'sps.pool3' \(maxpool2d\).*float_passes"):
        quantize(fold_batchnorm(raw))


def test_other_unsupported_shapes_are_refused():
    # a LIF fed by a sum (no conv): no membrane mapping
    g = _graph([_input(), _conv("c", "input"), _lif("l1", "c", (2, 3, 3)),
                Node("s", "sum", ["l1", "l1"], (2, 3, 3)), _lif("l2", "s", (2, 3, 3)),
                *_tail("l2")])
    with pytest.raises(IRError, match=r"layer 'l2' \(lif\)"):
        quantize(g)
    # a conv whose output is not a LIF
    g = _graph([_input(), _conv("c", "input"), *_tail("c")])
    with pytest.raises(IRError, match=r"layer 'c' \(conv2d\)"):
        quantize(g)
    # a threshold that is not the max-pool rewrite's
    g = _graph([_input(), _conv("c", "input"), _lif("l1", "c", (2, 3, 3)),
                Node("th", "threshold", ["l1"], (2, 3, 3), {}, {"threshold": 1.0}),
                *_tail("th")])
    with pytest.raises(IRError, match=r"layer 'th' \(threshold\)"):
        quantize(g)
    # an affine that is not the head
    g = _graph([_input(side=1), _conv("c", "input", side=1), _lif("l1", "c", (2, 1, 1)),
                Node("fc", "affine", ["l1"], (2,), {"weight": np.ones((2, 2))}),
                *_tail("fc")])
    with pytest.raises(IRError, match=r"layer 'fc' \(affine\)"):
        quantize(g)
    with pytest.raises(ValueError, match="overflow"):
        quantize(g, options=QuantizeOptions(overflow="optimistic"))
    for margin in (0.0, -1.0, float("nan")):  # a non-positive margin would void the bound
        with pytest.raises(ValueError, match="margin"):
            quantize(g, options=QuantizeOptions(overflow="calibrated", margin=margin))


# -- hints: used as given, re-checked in integers, never clipped ----------------------------------

@pytest.fixture(scope="module")
def micro_static():
    model = micro_model("test-micro")
    folded = float_passes(model_to_ir(model))
    return folded, quantize(folded)


def _with_hint(folded, lif, vth):
    g = folded.copy()
    g.meta["loihi_hints"] = {"method": "qat", "vth": {lif: vth}}
    return g


def _limits(folded, lif_name, x_max, k):
    conv = folded[folded[lif_name].inputs[0]]
    w = conv.params["weight"].astype(np.float64)
    b = conv.params.get("bias", np.zeros(w.shape[0])).astype(np.float64)
    tau, v_th = 2.0, 1.0
    vth_w = math.floor((WEIGHT_MANT_MAX * 64 * tau * k / np.abs(w).max() * v_th - 1) / 64)
    vth_b = math.floor(((4095 << 7) * tau / np.abs(b).max() * v_th - 1) / 64)
    return conv.name, vth_w, vth_b


def test_valid_hint_is_used_as_given(micro_static):
    folded, q = micro_static
    lif = "blocks.0.mlp.fc1.lif"
    vth = int(q[lif].params["vth"]) - 17
    qh = quantize(_with_hint(folded, lif, vth))
    assert int(qh[lif].params["vth"]) == vth
    assert _layers(qh)[lif]["limited_by"] == "hint"
    assert _layers(qh)[lif]["scale"] == 64 * vth + 1
    for other in _layers(q):
        if other != lif:
            assert _layers(qh)[other]["limited_by"] != "hint"


def test_hint_breaking_the_8_bit_weights_names_the_layer(micro_static):
    folded, q = micro_static
    conv, vth_w, vth_b = _limits(folded, "sps.stages.2.lif", 1, 1.0)
    assert vth_w < vth_b  # the weights bind first
    quantize(_with_hint(folded, "sps.stages.2.lif", vth_w))  # at the limit: fine
    hint = math.ceil(vth_w * 1.02) + 2
    with pytest.raises(IRError, match=rf"layer '{conv}'.*maps to 1(2[89]|[3-9]\d).*8-bit mantissa"):
        quantize(_with_hint(folded, "sps.stages.2.lif", hint))


def test_hint_breaking_the_state_bound_names_the_layer(micro_static):
    folded, q = micro_static
    lif = "sps.stages.0.lif"  # graded 8-bit input: x_max = 255, state-limited
    assert _layers(q)[lif]["limited_by"] == "state"
    vth_state = int(q[lif].params["vth"])
    conv, vth_w, vth_b = _limits(folded, lif, 255, 255.0)
    hint = vth_state + (min(vth_w, vth_b) - vth_state) // 2
    assert vth_state + 100 < hint < min(vth_w, vth_b) - 100
    with pytest.raises(IRError, match=rf"layer '{conv}'.*overflow the 24-bit membrane.*\(hint\)"):
        quantize(_with_hint(folded, lif, hint))


def test_hint_breaking_the_bias_range_names_the_layer():
    conv = _conv("c", "input")
    conv.params["bias"] = np.array([50.0, -3.0])   # small weights (0.5), a large bias
    g = _graph([_input(), conv, _lif("l1", "c", (2, 3, 3)), *_tail("l1")])
    vth_b = math.floor(((4095 << 7) * 2.0 / 50.0 - 1) / 64)     # 327
    vth_w = math.floor((127 * 128 / 0.5 - 1) / 64)               # 507
    assert _layers(quantize(g))["l1"]["vth"] == vth_b
    quantize(_with_hint(g, "l1", vth_b))
    # vth 329: S = 64 * 329 + 1 = 21057, bias = 50 * S / tau = 526425 > 4095 << 7 = 524160
    with pytest.raises(IRError, match=r"layer 'c'.*bias 50 of 'l1' maps to 526425.*13-bit"):
        quantize(_with_hint(g, "l1", vth_b + 2))
    quantize(_with_hint(g, "l1", vth_b + 2).replace_nodes(
        [n if n.name != "c" else _conv("c", "input") for n in g]))  # without the bias: fine
    assert vth_b + 2 < vth_w


@pytest.mark.parametrize("hint", [-1, 0, VTH_MAX + 1, 10**6, 12.5, True, "300"])
def test_unrepresentable_hint_is_refused(micro_static, hint):
    folded, q = micro_static
    with pytest.raises(IRError, match=r"layer 'blocks.0.mlp.fc2.lif'.*hint vth"):
        quantize(_with_hint(folded, "blocks.0.mlp.fc2.lif", hint))


# -- calibrated overflow --------------------------------------------------------------------------

@pytest.mark.parametrize("name", MICRO)
def test_calibrated_scales_are_at_least_the_worst_case_scales(name):
    model = micro_model(name)
    folded = float_passes(model_to_ir(model))
    worst = quantize(folded)
    x = micro_inputs(model.cfg, 16, seed=7)
    observed = observed_synaptic_max(folded, x)
    cal = quantize(folded, observed, QuantizeOptions(overflow="calibrated", margin=2.0))
    assert cal.meta["quantization"]["overflow"] == "calibrated"
    wl, cl = _layers(worst), _layers(cal)
    assert wl.keys() == cl.keys()
    larger = 0
    for lif in wl:
        assert cl[lif]["scale"] >= wl[lif]["scale"], lif
        larger += cl[lif]["scale"] > wl[lif]["scale"]
        if wl[lif]["limited_by"] != "state":
            assert cl[lif]["scale"] == wl[lif]["scale"]
    state_limited = [n for n in wl if wl[n]["limited_by"] == "state"]
    if state_limited:  # the static input's first layer is state-limited: calibration helps
        assert larger >= 1
    # and the calibrated graph runs: its LIF parameters are legal Loihi values
    res = run_reference(cal, x)
    assert res.logits.shape == (16, model.cfg.num_classes)


# -- the generalised LIF (r, spike_if, any tau): foreign NIR graphs --------------------------------

def _general_graph(weights, t=1, **lif_attrs):
    """Binary input (n,1,1) -> 1x1 conv -> lif(**lif_attrs) -> readout."""
    w = np.asarray(weights, dtype=np.float64).reshape(1, -1, 1, 1)
    n = w.shape[1]
    return _graph([Node("input", "input", [], (n, 1, 1), {}, {"encoding": "spikes"}),
                   Node("c", "conv2d", ["input"], (1, 1, 1), {"weight": w},
                        {"stride": [1, 1], "padding": [0, 0], "groups": 1}),
                   Node("l", "lif", ["c"], (1, 1, 1), {}, {"v_threshold": 1.0, **lif_attrs}),
                   *_tail("l", 1, 1)], t=t)


def _all_binary_inputs(n):
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    return torch.from_numpy(bits.astype(np.float32)).reshape(-1, 1, n, 1, 1)


def test_strict_rule_is_exact_on_ties():
    """spike_if ">" maps to Loihi's own v > vth << 6 with S = 64 vth / V_th: with weights on
    the grid (hint vth 16: S = 1024, weight step 1/16), sums that hit V_th exactly do NOT fire,
    in float and in integers alike; every input pattern agrees."""
    weights = [4 / 16, 12 / 16, 8 / 16, 16 / 16, -4 / 16]
    g = _general_graph(weights, tau=4.0, r=4.0, spike_if=">")
    g.meta["loihi_hints"] = {"vth": {"l": 16}}
    q = quantize(g)
    assert q["l"].attrs["spike_if"] == ">" and q["l"].attrs["r"] == 4.0
    assert _layers(q)["l"]["scale"] == 1024.0
    assert q["c"].params["weight"].ravel().tolist() == [4, 12, 8, 16, -4]
    x = _all_binary_inputs(len(weights))
    f = run_float(g, x, record=["l"], dtype=torch.float64).outputs["l"].numpy()
    r = run_reference(q, x, record=["l"]).outputs["l"]
    sums = x.reshape(-1, len(weights)).double() @ torch.tensor(weights, dtype=torch.float64)
    ties = int((sums == 1.0).sum())
    assert ties >= 3 and not f.reshape(-1)[(sums == 1.0).numpy()].any()
    assert np.array_equal(f, r) and 0 < f.sum() < len(x)


def test_gain_r_folds_into_the_integer_weights():
    """r / tau = 2 on W is the same integer layer as r / tau = 1 on 2 W."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, 6)
    a = quantize(_general_graph(w, tau=4.0, r=8.0, spike_if=">"))
    b = quantize(_general_graph(2 * w, tau=4.0, r=4.0, spike_if=">"))
    for node in ("c", "l"):
        for key, arr in a[node].params.items():
            assert np.array_equal(arr, b[node].params[key]), (node, key)
    assert int(a["l"].params["dv"]) == 1024 and _layers(a)["l"]["decay_exact"] is True
    with pytest.raises(IRError, match=r"layer 'l' \(lif\).*r = -1"):
        quantize(_general_graph(w, tau=4.0, r=-1.0))


def test_slow_decay_lowers_the_state_limit():
    """tau 16 (dv 256): |v| can reach 16 (64 A + B), so the grid keeps 64 A + B < 2048 * 256."""
    w = np.full(2000, 0.01)   # small weights, large fan-in: the state bound binds
    fast = _layers(quantize(_general_graph(w, tau=2.0)))["l"]
    slow = _layers(quantize(_general_graph(w, tau=16.0, r=8.0)))["l"]
    assert fast["limited_by"] == slow["limited_by"] == "state"
    assert slow["scale"] < fast["scale"]
    assert "dv" not in slow and slow["decay_exact"] is True


def test_paper_lif_layers_carry_no_new_keys(micro):
    """Graphs without the optional attrs quantize exactly as before (artifacts unchanged)."""
    _, _, q = micro
    for name, info in _layers(q).items():
        assert not {"r", "spike_if", "dv", "tau_loihi", "decay_error"} & set(info), name
    for node in q.by_op("loihi_lif"):
        assert not {"r", "spike_if"} & set(node.attrs), node.name


def test_attention_lif_must_be_the_paper_lif(micro):
    _, folded, _ = micro
    g = folded.copy()
    g["blocks.0.attn.attn_lif"].attrs["spike_if"] = ">"
    with pytest.raises(IRError, match=r"layer 'blocks.0.attn.attn_lif' \(lif\).*paper"):
        quantize(g)


@pytest.mark.parametrize("bias", [(0.0, 0.0, 0.3, -0.2), (0.0, 0.0, 0.0, 0.0)])
def test_all_zero_head_weights_keep_the_bias_argmax(bias):
    """A head whose weights are all zero predicts argmax(bias): its integer bias must keep
    that order (and stay finite) instead of being scaled by 127 / 1e-30."""
    model = micro_model("test-micro")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[:len(bias)] = torch.tensor(bias)
    folded = float_passes(model_to_ir(model))
    head = quantize(folded).by_op("affine")[0]
    assert not head.params["weight"].any()
    b_int = head.params["bias"]
    assert np.abs(b_int).max() < 2 ** 31
    assert np.array_equal(np.sign(b_int), np.sign(folded.by_op("affine")[0].params["bias"]))
    x = micro_inputs(model.cfg, 3, seed=5)
    assert np.array_equal(run_reference(quantize(folded), x).predictions,
                          run_float(folded, x).logits.argmax(1).numpy())


def test_graded_values_beyond_int32_ports_are_refused():
    """Lava's ports carry int32 and sum their fan-in in int32, while the reference adds in
    int64: a graded stream that could reach 2^31 must be refused, not wrap in Lava only."""
    from compiler.passes.quantize import PORT_LIMIT, check_port_range

    node = Node("blocks.9.residual", "sum", ["a", "b"], (4, 2, 2))
    assert check_port_range(node, PORT_LIMIT - 1) == PORT_LIMIT - 1
    with pytest.raises(IRError, match=r"blocks\.9\.residual.*int32"):
        check_port_range(node, PORT_LIMIT)
    lif = Node("x.lif", "loihi_lif", ["a"], (4, 2, 2))  # spikes: bound 1, never checked here
    assert check_port_range(lif, 1.0) == 1.0


# -- the value-range analysis is an Interpreter over the quantized ops ---------------------------

def test_value_range_has_one_handler_per_quantized_op():
    from compiler.interpreter import Interpreter
    from compiler.ops import QUANTIZED, handled_ops, missing_handlers, ops_at
    from compiler.passes.quantize import ValueRange

    assert issubclass(ValueRange, Interpreter)
    assert missing_handlers(ValueRange, QUANTIZED) == ()
    assert set(handled_ops(ValueRange)) == set(ops_at(QUANTIZED))


def test_value_bounds_by_hand_and_float_graphs_refused(micro):
    model, folded, q = micro
    bounds = value_bounds(q)
    assert list(bounds) == list(q.nodes)
    cfg = model.cfg
    assert bounds["input"] == (1 if cfg.event_input else 255)
    conv = q["sps.stages.0.conv"]
    rows = np.abs(conv.params["weight"]).reshape(conv.shape[0], -1).sum(1).max()
    assert bounds[conv.name] == float(rows) * bounds["input"]
    attn = q["blocks.0.attn.attention"]
    d, h, w = attn.shape
    counts = min(h * w * (d // attn.attrs["num_heads"]), attn.attrs["saturation"])
    assert bounds[attn.name] == counts * attn.attrs["gain"]
    readout = q["readout"]
    assert bounds["readout"] == (bounds[readout.inputs[0]] * cfg.time_steps
                                 * int(np.prod(q[readout.inputs[0]].shape[1:])))
    assert bounds["output"] == bounds["head"]
    with pytest.raises(IRError, match=r"layer 'sps.stages.0.lif' \(lif\).*value-range"):
        value_bounds(folded)


def test_hints_of_another_model_quote_no_command_line():
    model = micro_model("test-micro")
    g = float_passes(model_to_ir(model))
    g.meta["loihi_hints"] = {"vth": {"blocks.7.mlp.fc1.lif": 12}}
    with pytest.raises(IRError, match=r"blocks.7.mlp.fc1.lif.*another model.*re-run "
                                      r"quantization-aware training on this model") as e:
        quantize(g)
    assert "--" not in str(e.value) and "spikeform-" not in str(e.value)


def _pooled_graph(weight: np.ndarray, padding: int = 0, t: int = 2, token_mean: bool = True):
    """Spikes (C, 7, 7) -> one conv onto (D, 1, 1) -> lif: with padding 0 and a 7x7 kernel
    what distribute_membrane makes of a token mean (``token_mean`` marks it)."""
    d, c, k, _ = weight.shape
    side = k - 2 * padding
    return _graph([Node("input", "input", [], (c, side, side), {}, {"encoding": "spikes"}),
                   Node("c", "conv2d", ["input"], (d, 1, 1), {"weight": weight},
                        {"stride": [1, 1], "padding": [padding, padding], "groups": 1,
                         "token_mean": token_mean}),
                   Node("l", "lif", ["c"], (d, 1, 1), {}, {"tau": 2.0, "v_threshold": 1.0}),
                   *_tail("l", d, 2)], t=t)


HINT = 64                                   # S = 64 * 64 + 1: weight step 128 / S
STEP = 128 / (64 * HINT + 1)


def _quantized_pool(weight, **kw):
    g = _pooled_graph(weight, **kw)
    g.meta["loihi_hints"] = {"vth": {"l": HINT}}
    return quantize(g)


def test_a_token_mean_kernel_is_rounded_along_its_positions():
    """A token-pooled weight spread over 49 positions: on a grid where each copy is 0.4 or
    0.6 steps, rounding each copy would be off by up to 49/2 steps over the map; along the
    positions every per-channel prefix sum is the rounded float prefix sum, and the report
    carries the per-channel sum error beside the per-weight one."""
    rng = np.random.default_rng(3)
    scaled = rng.choice([0.4, 0.6, -0.4, 1.3], size=(3, 2, 1, 1)) * np.ones((3, 2, 7, 7))
    q = _quantized_pool(scaled * STEP)
    w_int = q["c"].params["weight"].astype(np.int64).reshape(3, 2, 49)
    flat = scaled.reshape(3, 2, 49)
    assert np.abs(np.cumsum(w_int, -1) - np.cumsum(flat, -1)).max() <= 0.5 + 1e-9
    assert not np.array_equal(w_int, np.round(flat))
    info = _layers(q)["l"]
    assert info["position_sum_error"] < 0.5 / np.abs(flat.sum(-1)).min()
    assert info["position_sum_error"] < info["weight_error"]
    assert q["c"].attrs["token_mean"] is True


def test_other_kernels_are_rounded_to_nearest():
    """A learned full-map kernel (a foreign NIR Conv2d over its whole map) is not a token
    mean: each weight to nearest, as every other conv."""
    q = _quantized_pool(np.full((2, 1, 7, 7), 0.4 * STEP), token_mean=False)
    assert not q["c"].params["weight"].any()          # 0.4 steps round to 0 everywhere
    assert "position_sum_error" not in _layers(q)["l"]


def test_a_token_mean_mark_on_a_kernel_that_is_not_one_is_refused():
    w = np.full((2, 1, 5, 5), 0.4 * STEP)             # 5x5, padding 1 on a 3x3 map
    with pytest.raises(IRError, match=r"layer 'c' \(conv2d\): marked token_mean.*\[1, 3, 3\]"):
        _quantized_pool(w, padding=1)
