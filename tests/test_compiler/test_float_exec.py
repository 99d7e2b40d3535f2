"""The float executor against the PyTorch model (bit for bit) and against each op's contract."""
import numpy as np
import pytest
import torch
from torch import nn

from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import Graph, IRError, Node
from spikformer_neuro.model import SSA
from spikformer_neuro.neuron import MultiStepLIF, lif_multistep
from spikformer_neuro.zoo import get_config
from spikformer_neuro.testing import firing_model
from support.graphs import build_graph

MICRO = ["test-micro", "test-micro-events"]


def micro_model(name: str, seed: int = 0) -> nn.Module:
    c = get_config(name).in_channels
    # Non-trivial input normalisation too (float32-representable values are not required).
    return firing_model(name, seed, input_mean=tuple(0.1 + 0.2 * i for i in range(c)),
                        input_std=tuple(0.7 + 0.3 * i for i in range(c)))


def micro_input(cfg, batch: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if cfg.event_input:
        return (torch.rand(batch, *cfg.input_shape(), generator=gen) < 0.5).float()
    return torch.randn(batch, *cfg.input_shape(), generator=gen)


def model_spikes(model: nn.Module, x: torch.Tensor):
    """Logits and every MultiStepLIF's output in map layout [T, B, C, H, W]."""
    caught = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: caught.__setitem__(n, o))
             for n, m in model.named_modules() if isinstance(m, MultiStepLIF)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    side = model.cfg.token_grid
    out = {}
    for n, s in caught.items():
        if s.dim() == 4:  # tokens [T, B, N, D] -> [T, B, D, H, W]
            t, b, _, d = s.shape
            s = s.transpose(2, 3).reshape(t, b, d, side, side)
        out[n] = s
    return logits, out


@pytest.mark.parametrize("name", MICRO)
def test_bit_identical_to_model_float32(name):
    model = micro_model(name)
    x = micro_input(model.cfg)
    ref_logits, ref = model_spikes(model, x)
    graph = model_to_ir(model)
    res = run_float(graph, x, record=True)
    lif_nodes = {n.name for n in graph if n.op == "lif"}
    assert set(ref) == lif_nodes  # every model LIF has a node of the same name
    for n in sorted(lif_nodes):
        s = ref[n]
        rate = s.mean().item()
        assert 0.0 < rate < 1.0, (n, rate)  # the comparison is not vacuous
        assert res.outputs[n].shape == s.shape, n
        assert torch.equal(res.outputs[n], s), n
    assert res.logits.dtype == torch.float32
    assert torch.equal(res.logits, ref_logits)


@pytest.mark.parametrize("name", MICRO)
def test_bit_identical_to_double_model_float64(name):
    # The frontend stores float32 parameters; model.double() holds the same values.
    model = micro_model(name, seed=3)
    x = micro_input(model.cfg, seed=3)
    graph = model_to_ir(model)
    ref_logits, ref = model_spikes(model.double(), x.double())
    res = run_float(graph, x, record=True, dtype=torch.float64)
    for n, s in ref.items():
        assert torch.equal(res.outputs[n], s), n
    assert res.logits.dtype == torch.float64
    assert torch.equal(res.logits, ref_logits)


def test_recorded_shapes_and_selection():
    model = micro_model("test-micro")
    cfg = model.cfg
    graph = model_to_ir(model)
    x = micro_input(cfg, batch=3)
    res = run_float(graph, x, record=True)
    assert set(res.outputs) == set(graph.nodes)
    for node in graph:
        timeless = node.op in ("token_time_mean", "affine", "output")
        want = ((3,) if timeless else (cfg.time_steps, 3)) + tuple(node.shape)
        assert tuple(res.outputs[node.name].shape) == want, node.name
    assert torch.equal(res.outputs["output"], res.logits)
    assert tuple(res.logits.shape) == (3, cfg.num_classes)
    # input node: normalised image repeated over time
    mean = torch.tensor(cfg.input_mean).view(-1, 1, 1)
    std = torch.tensor(cfg.input_std).view(-1, 1, 1)
    for t in range(cfg.time_steps):
        assert torch.equal(res.outputs["input"][t], (x - mean) / std)
    some = run_float(graph, x, record=["sps.pool3", "readout"])
    assert set(some.outputs) == {"sps.pool3", "readout"}
    assert torch.equal(some.outputs["sps.pool3"], res.outputs["sps.pool3"])
    assert run_float(graph, x).outputs == {}
    with pytest.raises(IRError, match="nope"):
        run_float(graph, x, record=["nope"])


def test_wrong_input_shape_is_rejected():
    graph = model_to_ir(micro_model("test-micro"))
    with pytest.raises(ValueError, match=r"node 'input' \(input\): expected images \[B, 1, 8, 8\]"):
        run_float(graph, torch.zeros(2, 1, 9, 8))
    ev = model_to_ir(micro_model("test-micro-events"))
    with pytest.raises(ValueError, match=r"expected event frames \[B, 3, 2, 8, 8\]"):
        run_float(ev, torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="time steps"):
        run_float(ev, torch.zeros(2, 5, 2, 8, 8))
    with pytest.raises(ValueError, match=r"the batch holds no samples \(shape \[0, 1, 8, 8\]\)"):
        run_float(graph, torch.zeros(0, 1, 8, 8))


# -- op contracts on hand-built graphs ---------------------------------------------------------

def _graph(nodes, t=2):
    return build_graph(nodes, t)


def _tail(src, d, k=2, shape=None):
    """token_time_mean -> affine -> output after node ``src`` with ``d`` channels."""
    w = np.eye(k, d, dtype=np.float32)
    return [Node("mean", "token_time_mean", [src], (d,)),
            Node("head", "affine", ["mean"], (k,), {"weight": w}),
            Node("output", "output", ["head"], (k,))]


def test_unsupported_op_names_the_node():
    p = {k: np.zeros(2, dtype=np.int32) for k in ("du", "dv", "vth", "bias_mant", "bias_exp")}
    with pytest.raises(IRError, match="neuron7.*loihi_lif"):  # refused by Graph.validate
        g = _graph([Node("input", "input", [], (2, 2, 2), attrs={"encoding": "analog"}),
                    Node("neuron7", "loihi_lif", ["input"], (2, 2, 2), p),
                    *_tail("neuron7", 2)])
        run_float(g, torch.zeros(1, 2, 2, 2))


def test_sumpool_threshold_batchnorm_and_input_summing():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3) - 4
    bn = {"gamma": np.array([1.5], np.float32), "beta": np.array([0.25], np.float32),
          "mean": np.array([0.5], np.float32), "var": np.array([3.0], np.float32)}
    g = _graph([
        Node("input", "input", [], (1, 3, 3), attrs={"encoding": "analog"}),
        Node("pool", "sumpool2d", ["input"], (1, 2, 2), attrs={"kernel": 2, "stride": 2,
                                                               "padding": 1}),
        Node("th", "threshold", ["pool"], (1, 2, 2), attrs={"threshold": 1.0}),
        Node("bn", "batchnorm", ["input"], (1, 3, 3), bn, {"eps": 1e-5}),
        Node("both", "lif", ["input", "bn"], (1, 3, 3), attrs={"tau": 2.0, "v_threshold": 1.0}),
        *_tail("th", 1, k=1)])
    res = run_float(g, x, record=True, dtype=torch.float64)
    xd = x.double()
    want = torch.stack([xd[:, :, 0:1, 0:1].sum((2, 3)), xd[:, :, 0:1, 1:3].sum((2, 3)),
                        xd[:, :, 1:3, 0:1].sum((2, 3)), xd[:, :, 1:3, 1:3].sum((2, 3))],
                       -1).reshape(2, 1, 2, 2)
    assert torch.equal(res.outputs["pool"][0], want)
    assert torch.equal(res.outputs["th"][1], (want >= 1.0).double())
    ref_bn = (xd - 0.5) / torch.sqrt(torch.tensor(3.0, dtype=torch.float64) + 1e-5) * 1.5 + 0.25
    assert torch.allclose(res.outputs["bn"][0], ref_bn, rtol=1e-14, atol=1e-14)
    both = res.outputs["input"] + res.outputs["bn"]
    assert torch.equal(res.outputs["both"], lif_multistep(both))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_spiking_attention_equals_model_attention(heads):
    cfg = get_config("test-micro").replace(num_heads=heads)
    ssa = SSA(cfg)
    d, side, t, b = cfg.embed_dim, 3, 2, 3
    gen = torch.Generator().manual_seed(heads)
    q, k, v = ((torch.rand(t, b, side * side, d, generator=gen) < 0.4).float() for _ in range(3))
    want = ssa.attention(q, k, v)  # [T, B, N, D]
    shp = (d, side, side)
    # feed q, k, v as events (threshold 0.5 keeps them binary), in map layout
    to_map = lambda s: s.transpose(2, 3).reshape(t, b, d, side, side)  # noqa: E731
    events = torch.cat([to_map(s) for s in (q, k, v)], dim=2).transpose(0, 1)  # [B, T, 3D, H, W]
    w = np.zeros((d, 3 * d, 1, 1), np.float32)
    nodes = [Node("input", "input", [], (3 * d, side, side), attrs={"encoding": "spikes"})]
    for i, role in enumerate("qkv"):
        wi = w.copy()
        wi[np.arange(d), i * d + np.arange(d)] = 1.0
        nodes += [Node(role, "conv2d", ["input"], shp, {"weight": wi},
                       {"stride": [1, 1], "padding": [0, 0], "groups": 1}),
                  Node(f"{role}.s", "threshold", [role], shp, attrs={"threshold": 0.5})]
    nodes += [Node("attn", "spiking_attention", ["q.s", "k.s", "v.s"], shp,
                   attrs={"num_heads": heads, "scale": cfg.attn_scale}), *_tail("attn", d)]
    res = run_float(_graph(nodes, t), events, record=["attn"])
    assert torch.equal(res.outputs["attn"], to_map(want))


def test_shape_mismatch_names_the_node():
    g = _graph([Node("input", "input", [], (1, 4, 4), attrs={"encoding": "analog"}),
                Node("c", "conv2d", ["input"], (2, 4, 4),
                     {"weight": np.ones((2, 1, 3, 3), np.float32)},
                     {"stride": [1, 1], "padding": [0, 0], "groups": 1}),
                *_tail("c", 2)])
    with pytest.raises(IRError, match="'c'.*shape"):
        run_float(g, torch.zeros(1, 1, 4, 4))


# -- the generalised LIF (optional r, spike_if: foreign NIR graphs) --------------------------------

def _lif_graph(t, **attrs):
    return _graph([Node("input", "input", [], (3, 1, 1), attrs={"encoding": "analog"}),
                   Node("n", "lif", ["input"], (3, 1, 1), attrs={"v_threshold": 1.0, **attrs}),
                   *_tail("n", 3, k=3)], t=t)


def test_lif_with_default_attrs_spelled_out_is_the_paper_lif_bit_for_bit():
    x = torch.randn(64, 3, 1, 1, generator=torch.Generator().manual_seed(3)) * 2
    plain = run_float(_lif_graph(6, tau=2.0), x, record=["n"]).outputs["n"]
    spelled = run_float(_lif_graph(6, tau=2.0, r=1.0, spike_if=">="), x, record=["n"]).outputs["n"]
    assert torch.equal(plain, spelled)
    assert torch.equal(plain, lif_multistep(x.unsqueeze(0).expand(6, *x.shape)))
    assert 0.05 < float(plain.mean()) < 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lif_with_gain_is_decay_times_v_plus_gain_times_x(dtype):
    """r != 1: H = (1 - 1/tau) V + (r/tau) X with both factors rounded once to the dtype."""
    tau, r, steps = 1 / (1 - 0.9), 1 / (1 - 0.9), 7
    x = torch.rand(50, 3, 1, 1, generator=torch.Generator().manual_seed(4), dtype=dtype) * 0.4
    got = run_float(_lif_graph(steps, tau=tau, r=r, spike_if=">"), x, record=["n"],
                    dtype=dtype).outputs["n"]
    decay, gain = torch.tensor(1 - 1 / tau, dtype=dtype), torch.tensor(r / tau, dtype=dtype)
    assert float(gain) == 1.0
    v, want = torch.zeros_like(x), []
    for _ in range(steps):
        h = decay * v + gain * x
        s = (h > 1.0).to(dtype)
        want.append(s)
        v = h * (1 - s)
    assert torch.equal(got, torch.stack(want)) and 0.05 < float(got.mean()) < 0.9


def test_spike_rule_decides_a_tie():
    """tau 2, r 1: X = 2 gives H = 1 = V_th exactly at the first step."""
    x = torch.full((1, 3, 1, 1), 2.0)
    ge = run_float(_lif_graph(1, tau=2.0, spike_if=">="), x, record=["n"]).outputs["n"]
    gt = run_float(_lif_graph(1, tau=2.0, spike_if=">"), x, record=["n"]).outputs["n"]
    assert ge.sum() == 3 and gt.sum() == 0


@pytest.mark.parametrize("attrs, match", [(dict(tau=2.0, spike_if="=>"), "spike_if"),
                                          (dict(tau=0.5), "tau 0.5"),
                                          (dict(tau=2.0, r=float("nan")), "finite")])
def test_bad_lif_attrs_name_the_node(attrs, match):
    with pytest.raises(IRError, match=f"node 'n' \\(lif\\).*{match}"):
        run_float(_lif_graph(2, **attrs), torch.zeros(1, 3, 1, 1))


def test_full_map_kernel_runs_as_flatten_plus_linear():
    """A conv whose kernel covers the whole map (NIR Flatten + Affine) equals nn.Linear on
    the row-major flattening bit for bit."""
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(4, 2, 3, 3, generator=gen)
    b = torch.randn(4, generator=gen)
    g = _graph([Node("input", "input", [], (2, 3, 3), attrs={"encoding": "analog"}),
                Node("fc", "conv2d", ["input"], (4, 1, 1), {"weight": w.numpy(), "bias": b.numpy()},
                     {"stride": [1, 1], "padding": [0, 0], "groups": 1}),
                Node("n", "lif", ["fc"], (4, 1, 1), attrs={"tau": 2.0, "v_threshold": 0.5}),
                *_tail("n", 4)], t=2)
    x = torch.randn(16, 2, 3, 3, generator=gen)
    got = run_float(g, x, record=["fc"]).outputs["fc"]
    want = torch.nn.functional.linear(x.flatten(1), w.flatten(1), b)
    assert torch.equal(got[0].reshape(16, 4), want) and torch.equal(got[1], got[0])


# -- the executor is an Interpreter over the registry's float ops ----------------------------------

def test_one_handler_per_float_op_and_nothing_else():
    from compiler.float_exec import FloatExecutor
    from compiler.interpreter import Interpreter
    from compiler.ops import FLOAT, QUANTIZED, handled_ops, missing_handlers, ops_at

    assert issubclass(FloatExecutor, Interpreter)
    assert missing_handlers(FloatExecutor, FLOAT) == ()
    assert set(handled_ops(FloatExecutor)) == set(ops_at(FLOAT))
    assert not {"loihi_lif", "token_time_sum"} & set(handled_ops(FloatExecutor))
    assert set(ops_at(QUANTIZED)) - set(ops_at(FLOAT)) == {"loihi_lif", "token_time_sum"}


def test_quantized_ops_are_refused_naming_the_node_and_the_reference_executor():
    from compiler.float_exec import FloatExecutor
    p = {k: np.zeros(2, dtype=np.int32) for k in ("du", "dv", "vth", "bias_mant", "bias_exp")}
    g = Graph(meta={"time_steps": 2})   # built without validate: the executor's own refusal
    for n in [Node("input", "input", [], (2, 2, 2), attrs={"encoding": "analog"}),
              Node("neuron7", "loihi_lif", ["input"], (2, 2, 2), p), *_tail("neuron7", 2)]:
        g.add(n)
    with pytest.raises(IRError, match=r"node 'neuron7' \(loihi_lif\).*float executor runs float "
                                      r"graphs.*reference executor"):
        FloatExecutor(g).run(torch.zeros(1, 2, 2, 2))


def test_graded_input_belongs_to_quantized_graphs():
    g = _graph([Node("input", "input", [], (1, 1, 2), attrs={"encoding": "graded"}),
                Node("n", "lif", ["input"], (1, 1, 2), attrs={"tau": 2.0, "v_threshold": 1.0}),
                *_tail("n", 1, k=1)])
    with pytest.raises(IRError, match=r"node 'input' \(input\).*quantized graphs"):
        run_float(g, torch.zeros(1, 1, 1, 2))


def test_dead_values_are_freed_and_only_the_logits_kept():
    from compiler.float_exec import FloatExecutor
    model = micro_model("test-micro")
    graph = model_to_ir(model)
    x = micro_input(model.cfg, batch=2)
    ex = FloatExecutor(graph)
    with torch.no_grad():
        out = ex.run(x, record=["sps.pool3"])
    assert set(out) == {"sps.pool3"}
    assert set(ex.values) == {graph.output_node.name}
    assert torch.equal(ex.values["output"].data, run_float(graph, x).logits)
