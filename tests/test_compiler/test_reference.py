"""compiler.reference: the integer reference executor, against hand-computed cases and against
loihi_numerics.fixed_point's per-step functions.

Loihi LIF with du = 4095, dv = 2048 (tau = 2), per step:
    u = 64 * a_in                        (no current memory)
    v = trunc(v / 2) + u + bias          (the decay truncates toward zero)
    spike iff v > vth << 6, then v = 0
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from loihi_numerics import fixed_point as fx
from compiler.frontend import model_to_ir
from compiler.ir import Graph, IRError, Node
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.encoding import encode_integer
from compiler.reference import attention_counts, run_reference
from spikformer_neuro.zoo import get_config
from spikformer_neuro.testing import firing_model
from support.graphs import build_graph

HYP = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _lif(name, src, shape, vth, mant, exp=0):
    c = shape[0]
    return Node(name, "loihi_lif", [src], shape,
                {"du": np.array(4095), "dv": np.array(2048), "vth": np.array(vth),
                 "bias_mant": np.asarray(mant, dtype=np.int64).reshape(-1, 1, 1)
                 * np.ones((c, 1, 1), np.int64),
                 "bias_exp": np.asarray(exp, dtype=np.int64).reshape(-1, 1, 1)
                 * np.ones((c, 1, 1), np.int64)},
                {"tau": 2.0, "v_threshold": 1.0})


def _conv(name, src, weight, shape, graded, stride=1, padding=0):
    return Node(name, "conv2d", [src], shape, {"weight": np.asarray(weight, dtype=np.int64)},
                {"stride": [stride, stride], "padding": [padding, padding], "groups": 1,
                 "weight_exp": 0, "graded_input": graded})


def _graph(nodes, t):
    return build_graph(nodes, t, stage="quantized")


# -- graph A: graded static input, hand-computed --------------------------------------------------

def graph_a() -> Graph:
    """input (1, 1, 2) graded, scale 4 -> conv 1x1 [3, -2] -> LIF vth 5, bias [0, 100 << 1]
    -> token_time_sum -> affine [[1, -1], [2, 1]] + [0, 3] -> output; T = 3."""
    return _graph([
        Node("input", "input", [], (1, 1, 2), {},
             {"encoding": "graded", "input_scale": 4.0, "mean": [0.0], "std": [1.0],
              "max_abs": 4, "bits": 8, "signed": False}),
        _conv("conv", "input", [[[[3]]], [[[-2]]]], (2, 1, 2), graded=True),
        _lif("lif", "conv", (2, 1, 2), vth=5, mant=[0, 100], exp=[0, 1]),
        Node("sum", "token_time_sum", ["lif"], (2,)),
        Node("head", "affine", ["sum"], (2,),
             {"weight": np.array([[1, -1], [2, 1]]), "bias": np.array([0, 3])}),
        Node("output", "output", ["head"], (2,)),
    ], t=3)


def test_graph_a_by_hand():
    g = graph_a()
    x = np.array([[[[0.25, 1.0]]], [[[0.0, 0.5]]]])  # two samples
    # x_int = round(4 x): sample 0 -> [1, 4], sample 1 -> [0, 2]
    assert np.array_equal(encode_integer(g, x)[:, :, 0, 0, :],
                          np.array([[[1, 4], [0, 2]]] * 3))
    res = run_reference(g, x, record=True)
    # threshold: v > 5 << 6 = 320
    # sample 0, channel 0 (w = 3): a = [3, 12] -> u = [192, 768]
    #   pixel 0: v = 192; 96 + 192 = 288; 144 + 192 = 336 > 320: spike at t3
    #   pixel 1: 768 > 320 every step (reset to 0 each time): spikes t1, t2, t3
    # sample 0, channel 1 (w = -2, bias 100 << 1 = 200): a = [-2, -8] -> u = [-128, -512]
    #   pixel 0: -128 + 200 = 72; 36 + 72 = 108; 54 + 72 = 126: no spike
    #   pixel 1: -312; -156 - 312 = -468; -234 - 312 = -546: no spike
    # sample 1, channel 0: a = [0, 6] -> pixel 0 silent; pixel 1: 384 > 320 every step
    # sample 1, channel 1: a = [0, -4] -> u = [0, -256]
    #   pixel 0: 200; 100 + 200 = 300; 150 + 200 = 350 > 320: spike at t3
    #   pixel 1: -56; -28 - 56 = -84; -42 - 56 = -98: no spike
    spikes = res.outputs["lif"]  # [T, B, C, H, W]
    expect = np.zeros((3, 2, 2, 1, 2), np.int64)
    expect[2, 0, 0, 0, 0] = 1
    expect[:, 0, 0, 0, 1] = 1
    expect[:, 1, 0, 0, 1] = 1
    expect[2, 1, 1, 0, 0] = 1
    assert np.array_equal(spikes, expect)
    assert np.array_equal(res.outputs["conv"][0], [[[[3, 12]], [[-2, -8]]], [[[0, 6]], [[0, -4]]]])
    # token/time sums: sample 0 -> [1 + 3, 0] = [4, 0]; sample 1 -> [3, 1]
    assert np.array_equal(res.outputs["sum"], [[4, 0], [3, 1]])
    # logits: [4 - 0 + 0, 8 + 0 + 3] = [4, 11]; [3 - 1, 6 + 1 + 3] = [2, 10]
    assert np.array_equal(res.logits, [[4, 11], [2, 10]])
    assert res.logits.dtype == np.int64
    assert np.array_equal(res.predictions, [1, 1])
    assert np.array_equal(res.outputs["head"], res.logits)
    assert np.array_equal(res.outputs["output"], res.logits)


# -- graph B: binary events, the decay truncates toward zero --------------------------------------

def graph_b(t=4) -> Graph:
    """events (2, 1, 1) -> conv 1x1 [3, -3] (binary) -> LIF vth 4, bias 107 -> sum -> affine."""
    return _graph([
        Node("input", "input", [], (2, 1, 1), {}, {"encoding": "spikes", "max_abs": 1}),
        _conv("conv", "input", [[[[3]], [[-3]]]], (1, 1, 1), graded=False),
        _lif("lif", "conv", (1, 1, 1), vth=4, mant=[107]),
        Node("sum", "token_time_sum", ["lif"], (1,)),
        Node("head", "affine", ["sum"], (2,), {"weight": np.array([[1], [-1]])}),
        Node("output", "output", ["head"], (2,)),
    ], t=t)


def test_graph_b_truncation_toward_zero_decides_a_spike():
    g = graph_b()
    frames = np.zeros((1, 4, 2, 1, 1))
    frames[0, 0, 1] = 1               # t1: channel 1 -> a = -3
    frames[0, 1, 0] = 1               # t2: channel 0 -> a = 3
    frames[0, 3] = 1                  # t4: both -> a = 0
    res = run_reference(g, frames, record=True)
    # threshold v > 4 << 6 = 256
    # t1: v = -192 + 107 = -85
    # t2: v = trunc(-85 / 2) + 192 + 107 = -42 + 299 = 257 > 256: spike (floor would give 256)
    # t3: v = 0 + 0 + 107 = 107
    # t4: v = 53 + 0 + 107 = 160
    assert np.array_equal(res.outputs["lif"].reshape(-1), [0, 1, 0, 0])
    assert np.array_equal(res.outputs["conv"].reshape(-1), [-3, 3, 0, 0])
    assert np.array_equal(res.logits, [[1, -1]])
    # the same through fixed_point.lif_step directly
    p = fx.LifParams(du=4095, dv=2048, vth=4, bias_mant=107, bias_exp=0)
    u = v = np.zeros((1, 1), np.int64)
    seen = []
    for a in (-3, 3, 0, 0):
        u, v, s = fx.lif_step(u, v, np.array([[a]]), p)
        seen.append((int(v[0, 0]), bool(s[0, 0])))
    assert seen == [(-85, False), (0, True), (107, False), (160, False)]


def test_graph_b_bias_alone_and_saturation_free():
    g = graph_b(t=6)
    res = run_reference(g, np.zeros((1, 6, 2, 1, 1)), record=["lif"])
    # bias only: 107, 160, 187, 200, 207, 210: never above 256
    assert not res.outputs["lif"].any()
    g["lif"].params["bias_mant"] = np.array([[[130]]])
    res = run_reference(g, np.zeros((1, 6, 2, 1, 1)), record=["lif"])
    # 130, 195, 227, 243, 251, 255: still never above 256
    assert not res.outputs["lif"].any()
    g["lif"].params["bias_mant"] = np.array([[[131]]])
    res = run_reference(g, np.zeros((1, 6, 2, 1, 1)), record=["lif"])
    # 131, 196, 229, 245, 253, 257 > 256: spike at t6
    assert np.array_equal(res.outputs["lif"].reshape(-1), [0, 0, 0, 0, 0, 1])


# -- input encoding --------------------------------------------------------------------------------

def test_encode_input_rounds_half_to_even_and_normalises():
    g = graph_a()
    g["input"].attrs["input_scale"] = 2.0
    x = np.array([[[[0.25, 0.75]]], [[[0.3, 1.0]]]])
    # 2 x = [0.5, 1.5] -> [0, 2] (half to even); [0.6, 2.0] -> [1, 2]
    enc = encode_integer(g, x)
    assert enc.shape == (3, 2, 1, 1, 2) and enc.dtype == np.int64
    assert np.array_equal(enc[0, :, 0, 0], [[0, 2], [1, 2]])
    assert np.array_equal(enc[0], enc[2])
    # signed: mean 0.5, std 0.25, scale 63.5: (x - 0.5) / 0.25 * 63.5
    g["input"].attrs.update(mean=[0.5], std=[0.25], input_scale=63.5)
    x = np.array([[[[0.0, 1.0]]], [[[0.5, 0.501]]]])
    # -2 * 63.5 = -127; 127; 0; 0.004 * 63.5 = 0.254 -> 0
    assert np.array_equal(encode_integer(g, x)[1, :, 0, 0], [[-127, 127], [0, 0]])
    # torch tensors are accepted too
    assert np.array_equal(encode_integer(g, torch.from_numpy(x)), encode_integer(g, x))


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 1, 1, 2), 1.5), r"\[0, 1\].*1\.5"),
    (np.full((1, 1, 1, 2), -0.25), r"\[0, 1\].*-0\.25"),
    (np.array([[[[0.5, np.nan]]]]), r"1 NaN or infinite value \(the first: nan in sample 0"),
    (np.array([[[[0.5, np.inf]]], [[[0.5, -np.inf]]]]),
     r"2 NaN or infinite values \(the first: inf in sample 0 at \[0, 0, 1\]\)"),
    (np.zeros((1, 1, 2, 1)), r"expected images \[B, 1, 1, 2\], got \[1, 1, 2, 1\]"),
    (np.zeros((1, 1, 2)), r"expected images \[B, 1, 1, 2\], got \[1, 1, 2\]"),
    (np.zeros((0, 1, 1, 2)), r"the batch holds no samples \(shape \[0, 1, 1, 2\]\)"),
    (np.zeros((1, 1, 1, 2), dtype=complex), r"complex128.*imaginary part would be dropped"),
    (np.array([[[["0.5", "1"]]]]), r"dtype <U3 \(text\); give real numbers"),
    (np.array([[[[0.5, None]]]], dtype=object), r"dtype object \(Python objects\)"),
])
def test_encode_input_errors_name_the_problem_graded(bad, message):
    with pytest.raises(ValueError, match=message):
        encode_integer(graph_a(), bad)


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 4, 2, 1, 1), 0.5), r"binary.*0\.5"),
    (np.full((1, 4, 2, 1, 1), 2.0), r"binary.*2"),
    (np.full((1, 4, 2, 1, 1), np.nan), r"8 NaN or infinite values"),
    (np.zeros((0, 4, 2, 1, 1)), r"no samples"),
    (np.zeros((1, 3, 2, 1, 1)), r"expected event frames \[B, 4, 2, 1, 1\], got \[1, 3, 2, 1, 1\]"),
    (np.zeros((1, 2, 1, 1)), r"expected event frames"),
])
def test_encode_input_errors_name_the_problem_events(bad, message):
    with pytest.raises(ValueError, match=message):
        encode_integer(graph_b(), bad)


def test_refuses_float_graphs_and_unknown_recordings():
    g = Graph(meta={"time_steps": 2, "stage": "float"})
    for n in [Node("input", "input", [], (1, 1, 2), {}, {"encoding": "spikes"}),
              Node("l", "lif", ["input"], (1, 1, 2), {}, {"tau": 2.0, "v_threshold": 1.0}),
              Node("m", "token_time_mean", ["l"], (1,)),
              Node("output", "output", ["m"], (1,))]:
        g.add(n)
    with pytest.raises(IRError, match=r"node 'l' \(lif\).*quantize"):
        run_reference(g, np.zeros((1, 2, 1, 1, 2)))
    with pytest.raises(IRError, match=r"node 'l' \(lif\).*quantize"):  # a mislabelled graph
        _graph(list(g), t=2)
    with pytest.raises(IRError, match="nope"):
        run_reference(graph_a(), np.zeros((1, 1, 1, 2)), record=["nope"])


# -- attention counts -----------------------------------------------------------------------------

@HYP
@given(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.floats(0.05, 0.95), st.integers(0, 2**31 - 1))
def test_attention_counts_equal_naive_qkt_v(batch, heads, dh, h, w, density, seed):
    rng = np.random.default_rng(seed)
    d = heads * dh
    q, k, v = ((rng.random((batch, d, h, w)) < density).astype(np.int64) for _ in range(3))
    got = attention_counts(q, k, v, heads)
    assert got.dtype == np.int64 and got.shape == q.shape
    n = h * w
    want = np.zeros_like(got)
    for b in range(batch):
        for hd in range(heads):
            ch = slice(hd * dh, (hd + 1) * dh)
            Q = q[b, ch].reshape(dh, n).T       # [N, dh], token = row-major (y, x)
            K = k[b, ch].reshape(dh, n).T
            V = v[b, ch].reshape(dh, n).T
            A = np.zeros((n, n), np.int64)      # (Q K^T) first, as the paper writes it
            for i in range(n):
                for j in range(n):
                    A[i, j] = sum(Q[i, e] * K[j, e] for e in range(dh))
            out = A @ V                          # [N, dh]
            want[b, ch] = out.T.reshape(dh, h, w)
    assert np.array_equal(got, want)


def test_attention_node_sends_gain_times_counts():
    rng = np.random.default_rng(0)
    side, d = 2, 4
    nodes = [Node("input", "input", [], (d, side, side), {}, {"encoding": "spikes"})]
    for r in ("q", "k", "v"):  # identity 1x1 convs + LIFs that fire on any input
        nodes.append(_conv(f"{r}.c", "input", np.eye(d, dtype=np.int64)[:, :, None, None],
                           (d, side, side), graded=False))
        nodes.append(_lif(f"{r}.l", f"{r}.c", (d, side, side), vth=0, mant=[0] * d))
    nodes += [Node("att", "spiking_attention", ["q.l", "k.l", "v.l"], (d, side, side), {},
                   {"num_heads": 2, "scale": 0.125, "gain": 8}),
              Node("sum", "token_time_sum", ["att"], (d,)),
              Node("output", "output", ["sum"], (d,))]
    g = _graph(nodes, t=2)
    x = (rng.random((3, 2, d, side, side)) < 0.5).astype(np.float64)
    res = run_reference(g, x, record=True)
    assert np.array_equal(res.outputs["q.l"], x.transpose(1, 0, 2, 3, 4).astype(np.int64))
    for t in range(2):
        xt = x[:, t].astype(np.int64)
        assert np.array_equal(res.outputs["att"][t], 8 * attention_counts(xt, xt, xt, 2))
    assert np.array_equal(res.logits, res.outputs["att"].sum(axis=(0, 3, 4)))
    # with a saturation, larger counts are sent as it
    g.nodes["att"].attrs["saturation"] = 3
    sat = run_reference(g.validate(), x, record=True)
    for t in range(2):
        xt = x[:, t].astype(np.int64)
        counts = attention_counts(xt, xt, xt, 2)
        assert counts.max() > 3
        assert np.array_equal(sat.outputs["att"][t], 8 * np.minimum(counts, 3))


# -- the reference equals manual stepping with fixed_point ----------------------------------------

def two_layer_graph(seed: int, t: int = 3):
    """graded input -> 3x3 conv -> LIF -> sumpool 2/2 + threshold -> 1x1 conv -> LIF, plus a
    residual sum of the pooled spikes and the second LIF -> token_time_sum -> affine."""
    rng = np.random.default_rng(seed)
    c0, c1, side = 2, 3, 4
    w1 = rng.integers(-20, 21, (c1, c0, 3, 3))
    w2 = rng.integers(-127, 128, (c1, c1, 1, 1))
    g = _graph([
        Node("input", "input", [], (c0, side, side), {},
             {"encoding": "graded", "input_scale": 15.0, "mean": [0.2, 0.4], "std": [0.5, 1.0],
              "max_abs": 24}),
        _conv("c1", "input", w1, (c1, side, side), graded=True, padding=1),
        _lif("l1", "c1", (c1, side, side), vth=int(rng.integers(5, 40)),
             mant=rng.integers(-300, 300, c1), exp=rng.integers(0, 3, c1)),
        Node("pool", "sumpool2d", ["l1"], (c1, 2, 2), {}, {"kernel": 2, "stride": 2, "padding": 0}),
        Node("thr", "threshold", ["pool"], (c1, 2, 2), {}, {"threshold": 1.0}),
        _conv("c2", "thr", w2, (c1, 2, 2), graded=False),
        _lif("l2", "c2", (c1, 2, 2), vth=int(rng.integers(1, 4)), mant=rng.integers(-50, 50, c1)),
        Node("res", "sum", ["thr", "l2"], (c1, 2, 2)),
        Node("acc", "token_time_sum", ["res"], (c1,)),
        Node("head", "affine", ["acc"], (3,),
             {"weight": rng.integers(-127, 128, (3, c1)), "bias": rng.integers(-50, 50, 3)}),
        Node("output", "output", ["head"], (3,)),
    ], t=t)
    return g


@HYP
@given(st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_reference_equals_manual_fixed_point_stepping(seed, batch):
    g = two_layer_graph(seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.random((batch, 2, 4, 4))
    res = run_reference(g, x, record=True)
    xs = encode_integer(g, x)
    p = {n: fx.LifParams(**{k: g[n].params[k] for k in ("du", "dv", "vth", "bias_mant",
                                                         "bias_exp")}) for n in ("l1", "l2")}
    state = {n: (np.zeros((batch,) + g[n].shape, np.int64),) * 2 for n in p}
    acc = np.zeros((batch, 3), np.int64)
    ones = np.ones((3, 1, 2, 2), np.int64)
    for t in range(g.meta["time_steps"]):
        a1 = fx.conv_accumulate(xs[t], g["c1"].params["weight"], 1, 1, 1, 1, num_message_bits=8)
        u, v, s1 = fx.lif_step(*state["l1"], a1, p["l1"])
        state["l1"] = (u, v)
        pooled = fx.conv_accumulate(s1.astype(np.int64), ones, 2, 0, 1, 3)
        thr = (pooled >= 1).astype(np.int64)
        a2 = fx.conv_accumulate(thr, g["c2"].params["weight"])
        u, v, s2 = fx.lif_step(*state["l2"], a2, p["l2"])
        state["l2"] = (u, v)
        res_t = thr + s2
        for name, val in (("c1", a1), ("l1", s1), ("pool", pooled), ("thr", thr), ("c2", a2),
                          ("l2", s2), ("res", res_t)):
            assert np.array_equal(res.outputs[name][t], val.astype(np.int64)), (name, t)
        acc += res_t.sum(axis=(2, 3))
    assert np.array_equal(res.outputs["acc"], acc)
    logits = acc @ g["head"].params["weight"].T + g["head"].params["bias"]
    assert np.array_equal(res.logits, logits)


# -- batch independence ---------------------------------------------------------------------------

def _micro_quantized(name):
    cfg = get_config(name)
    model = firing_model(name, 0, bn_seed=1)
    gen = torch.Generator().manual_seed(2)
    q = quantize(float_passes(model_to_ir(model.eval())))
    if cfg.event_input:
        x = (torch.rand(6, *cfg.input_shape(), generator=gen) < 0.4).float()
    else:
        x = torch.rand(6, *cfg.input_shape(), generator=gen)
    return q, x


@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_batch_independence(name):
    q, x = _micro_quantized(name)
    full = run_reference(q, x, record=True)
    assert len(set(full.predictions.tolist())) >= 1 and full.logits.any()
    for i in range(len(x)):
        one = run_reference(q, x[i:i + 1], record=True)
        assert np.array_equal(one.logits, full.logits[i:i + 1])
        for n, val in full.outputs.items():
            if val.ndim >= 1 and q[n].op not in ("token_time_sum", "affine", "output"):
                assert np.array_equal(one.outputs[n], val[:, i:i + 1]), n
            else:
                assert np.array_equal(one.outputs[n], val[i:i + 1]), n
    # reordering the batch reorders the results, nothing else
    perm = np.array([3, 0, 5, 1, 4, 2])
    shuffled = run_reference(q, x[perm])
    assert np.array_equal(shuffled.logits, full.logits[perm])
    # encoded input gives the same run
    again = run_reference(q, encode_integer(q, x), encoded=True)
    assert np.array_equal(again.logits, full.logits)


# -- layer-major execution: the same integers as stepping every node once per time step ----------

def _step_major(g: Graph, x_seq: np.ndarray):
    """The pre-redesign executor's loop (time outer, nodes inner), written out with
    fixed_point's per-step functions: the semantics the layer-major executor must keep."""
    batch = x_seq.shape[1]
    lifs = {n.name: fx.LifParams(**{k: n.params[k] for k in ("du", "dv", "vth", "bias_mant",
                                                             "bias_exp")})
            for n in g.by_op("loihi_lif")}
    state = {n: (np.zeros((batch,) + tuple(g[n].shape), np.int64),) * 2 for n in lifs}
    acc = {n.name: np.zeros((batch, n.shape[0]), np.int64) for n in g.by_op("token_time_sum")}
    traces = {n.name: [] for n in g if n.op not in ("token_time_sum", "affine", "output")}
    u_tr, v_tr = {n: [] for n in lifs}, {n: [] for n in lifs}

    def summed(values, node):
        ins = [values[i] for i in node.inputs]
        return ins[0] if len(ins) == 1 else fx.wrap_signed(sum(ins), 32)

    for t in range(x_seq.shape[0]):
        values = {}
        for node in g:
            a = node.attrs
            if node.op == "input":
                val = x_seq[t]
            elif node.op == "conv2d":
                val = fx.conv_accumulate(summed(values, node), node.params["weight"],
                                         a["stride"], a["padding"], 1, a["groups"],
                                         num_message_bits=1 if a.get("graded_input") else 0)
            elif node.op == "loihi_lif":
                u, v = state[node.name]
                u, v_new, s = fx.lif_step(u, v, summed(values, node), lifs[node.name])
                u_tr[node.name].append(u)
                v_tr[node.name].append(fx.lif_voltage(v, u, lifs[node.name]))
                state[node.name] = (u, v_new)
                val = s.astype(np.int64)
            elif node.op == "sumpool2d":
                k = a["kernel"]
                val = fx.conv_accumulate(summed(values, node),
                                         np.ones((node.shape[0], 1, k, k), np.int64),
                                         a["stride"], a["padding"], 1, node.shape[0])
            elif node.op == "threshold":
                val = (summed(values, node) >= a["threshold"]).astype(np.int64)
            elif node.op == "spiking_attention":
                q, k, v = (values[i] for i in node.inputs)
                val = np.minimum(attention_counts(q, k, v, a["num_heads"]),
                                 a.get("saturation", np.iinfo(np.int64).max)) * a["gain"]
            elif node.op == "sum":
                val = summed(values, node)
            elif node.op == "token_time_sum":
                acc[node.name] += summed(values, node).sum(axis=(2, 3))
                continue
            else:
                continue
            values[node.name] = val
            traces[node.name].append(val)
    final = dict(acc)
    for node in g:
        if node.op == "affine":
            final[node.name] = (final[node.inputs[0]] @ node.params["weight"].T
                                + node.params.get("bias", 0))
        elif node.op == "output":
            final[node.name] = final[node.inputs[0]]
    outputs = {n: np.stack(v) for n, v in traces.items()}
    outputs.update({n: final[n] for n in final})
    return (final[g.output_node.name], outputs, {n: np.stack(v) for n, v in u_tr.items()},
            {n: np.stack(v) for n, v in v_tr.items()})


@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_layer_major_equals_step_major(name):
    q, x = _micro_quantized(name)
    res = run_reference(q, x, record=True, record_membrane=True)
    logits, outputs, currents, voltages = _step_major(q, encode_integer(q, x))
    assert np.array_equal(res.logits, logits) and res.logits.dtype == np.int64
    assert res.outputs.keys() == outputs.keys() == set(q.nodes)
    for n, want in outputs.items():
        got = res.outputs[n]
        assert got.dtype == np.int64 and got.shape == want.shape, n
        assert np.array_equal(got, want), n
    assert currents.keys() == res.currents.keys() == voltages.keys() == res.voltages.keys()
    for n in currents:
        assert np.array_equal(res.currents[n], currents[n]), n
        assert np.array_equal(res.voltages[n], voltages[n]), n
    lif_rates = [outputs[n].mean() for n in currents]
    assert all(0 < r < 1 for r in lif_rates)  # not vacuous
    # the membrane record is opt-in and changes nothing else
    plain = run_reference(q, x, record=True, record_membrane=["blocks.0.attn.attn_lif"])
    assert set(plain.currents) == set(plain.voltages) == {"blocks.0.attn.attn_lif"}
    assert all(np.array_equal(plain.outputs[n], v) for n, v in outputs.items())
    with pytest.raises(IRError, match=r"membrane of \['sps.residual'\]"):
        run_reference(q, x, record_membrane=["sps.residual"])


@HYP
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 4))
def test_layer_major_equals_step_major_on_random_graphs(seed, batch, t):
    g = two_layer_graph(seed, t=t)
    x = np.random.default_rng(seed + 2).random((batch, 2, 4, 4))
    res = run_reference(g, x, record=True, record_membrane=True)
    logits, outputs, currents, voltages = _step_major(g, encode_integer(g, x))
    assert np.array_equal(res.logits, logits)
    for n, want in outputs.items():
        assert np.array_equal(res.outputs[n], want), n
    for n in currents:
        assert np.array_equal(res.currents[n], currents[n])
        assert np.array_equal(res.voltages[n], voltages[n])


def test_fan_in_adds_in_int32_like_lava_ports():
    """Several inputs into one node are added in int32 (Lava's ports), for every op."""
    g = _graph([Node("input", "input", [], (1, 1, 1), {}, {"encoding": "graded",
                                                           "input_scale": 1.0, "max_abs": 1}),
                Node("twice", "sum", ["input", "input"], (1, 1, 1)),
                Node("acc", "token_time_sum", ["twice"], (1,)),
                Node("output", "output", ["acc"], (1,))], t=2)
    x = np.full((2, 1, 1, 1, 1), 2 ** 30, np.int64)
    x[1] = 5
    res = run_reference(g, x, encoded=True, record=True)
    assert res.outputs["twice"].reshape(-1).tolist() == [-2 ** 31, 10]
    assert res.logits.tolist() == [[10 - 2 ** 31]]
    assert np.array_equal(res.outputs["input"], x) and res.outputs["input"] is not x


def test_one_handler_per_quantized_op_and_nothing_else():
    from compiler.interpreter import Interpreter
    from compiler.ops import QUANTIZED, handled_ops, missing_handlers, ops_at
    from compiler.reference import ReferenceExecutor

    assert issubclass(ReferenceExecutor, Interpreter)
    assert missing_handlers(ReferenceExecutor, QUANTIZED) == ()
    assert set(handled_ops(ReferenceExecutor)) == set(ops_at(QUANTIZED))


def test_attention_counts_take_any_leading_dims():
    rng = np.random.default_rng(3)
    q, k, v = ((rng.random((3, 2, 4, 2, 3)) < 0.5).astype(np.int64) for _ in range(3))
    seq = attention_counts(q, k, v, 2)
    assert seq.shape == q.shape and seq.dtype == np.int64
    for t in range(3):
        assert np.array_equal(seq[t], attention_counts(q[t], k[t], v[t], 2))


def test_missing_gain_names_the_node():
    nodes = [Node("input", "input", [], (2, 1, 1), {}, {"encoding": "spikes"}),
             Node("att", "spiking_attention", ["input", "input", "input"], (2, 1, 1), {},
                  {"num_heads": 1, "scale": 0.125}),
             Node("acc", "token_time_sum", ["att"], (2,)),
             Node("output", "output", ["acc"], (2,))]
    g = Graph(meta={"time_steps": 1, "stage": "quantized"})  # not validated: gain is missing
    for n in nodes:
        g.add(n)
    with pytest.raises(IRError, match=r"node 'att' \(spiking_attention\).*'gain'"):
        run_reference(g, np.ones((1, 1, 2, 1, 1)))
