"""The floating-point Lava target (``lava-sim-float``: ``deploy.lava.lower_float``, the one
lowering with the floating-point parameter strategy of deploy/lava/params.py).

snntorch networks (Linear->Leaky MLP, Conv2d->Leaky CNN, zero reset), converted to our float
IR -- by hand here (docs/nir.md's snntorch reading: tau = 1/(1-beta), r = tau, spike_if ">"),
and through snntorch.export_to_nir + compiler.nir.foreign once that importer exists -- run in
Lava with Lava's stock floating-point models and give exactly snntorch's own output spikes on
real digits images, layer by layer.

Why exact equality can hold between float32 snntorch and float64 Lava: both compute
``beta * V + (W x + b)`` from the same float32 parameters; Lava rounds to float64 where
snntorch rounds to float32 and sums in another order, so the membranes differ by about
1e-7 relative. A spike flips only if snntorch's membrane lies that close to the threshold.
``test_snntorch_margin_to_threshold`` measures both on the same runs: the float32-vs-float64
membrane difference stays below the closest approach to the threshold (>= 1.4e-5 on every
layer here), which is why no spike flips -- asserted, not assumed.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import utils as snn_utils
from torch import nn

from compiler.float_exec import run_float
from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.ir import Graph, Node
from compiler.passes import float_passes
from compiler.encoding import encode_float
from deploy.lava import FLOAT_TARGET, LoweringError, lower, lower_float, run
from deploy.lava.params import lif_lava_params
from deploy.lava.runner import LavaResult
from deploy.lava.verify import verify_float_against_float_exec
from spikformer_neuro.data import load_dataset
from spikformer_neuro.testing import densely_firing_model
from spikformer_neuro.zoo import get_config
from support.paths import CHECKPOINTS

T = 8                 # time steps (snntorch's image as a constant current every step)
SAMPLES = 100         # digits test images per network
BETA_GENERIC = 0.9
BETA_LOIHI_GRID = 1 - 410 / 4096    # dv = 410 on Loihi's 12-bit decay grid
LIF_NODES = ("lif1", "lif2")


# -- snntorch networks and their hand-converted float IR ------------------------------------
def digits_test(count: int):
    ds, _ = load_dataset("digits", "test")
    xs, ys = zip(*(ds[i] for i in range(count)))
    return torch.stack(xs), np.asarray(ys)


def _leaky(beta: float, shape) -> snn.Leaky:
    # export_to_nir needs per-neuron beta/threshold tensors and init_hidden=True
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape),
                     init_hidden=True, reset_mechanism="zero")


def snn_mlp(beta: float, hidden: int = 32, seed: int = 0) -> nn.Sequential:
    """Flatten -> Linear(64, hidden) -> Leaky -> Linear(hidden, 10) -> Leaky; weights scaled
    up from torch's default init so that both layers fire at moderate rates on digits."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), _leaky(beta, (hidden,)),
                        nn.Linear(hidden, 10), _leaky(beta, (10,)))
    with torch.no_grad():
        net[1].weight.mul_(2.0)
        net[3].weight.mul_(3.0)
    return net


def snn_cnn(beta: float, channels: int = 6, seed: int = 0) -> nn.Sequential:
    """Conv2d(1, C, 3, padding=1) -> Leaky -> Flatten -> Linear(C*64, 10) -> Leaky."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), _leaky(beta, (channels, 8, 8)),
                        nn.Flatten(), nn.Linear(channels * 64, 10), _leaky(beta, (10,)))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[3].weight.mul_(4.0)
    return net


def run_snntorch(net: nn.Sequential, x: torch.Tensor, dtype=torch.float32):
    """snntorch's own spikes and membranes of every Leaky layer, ``[T, B, *shape]`` each."""
    net = net.to(dtype)
    snn_utils.reset(net)
    spikes, mems = {}, {}
    with torch.no_grad():
        for _ in range(T):
            h = x.to(dtype)
            for i, m in enumerate(net):
                h = m(h)
                if isinstance(m, snn.Leaky):
                    h = h.to(dtype)   # snntorch's surrogate returns float32 spikes
                    spikes.setdefault(i, []).append(h.clone())
                    mems.setdefault(i, []).append(m.mem.clone())
    order = sorted(spikes)
    return ([torch.stack(spikes[i]).numpy() for i in order],
            [torch.stack(mems[i]).double().numpy() for i in order])


def _lif_attrs(leaky: snn.Leaky) -> dict:
    beta = leaky.beta.detach().double().numpy()
    assert (beta == beta.flat[0]).all(), "the hand conversion needs one beta per layer"
    tau = 1.0 / (1.0 - float(beta.flat[0]))
    theta = float(leaky.threshold.detach().double().numpy().flat[0])
    return {"tau": tau, "v_threshold": theta, "r": tau, "spike_if": ">"}


def _conv(name, inputs, shape, weight, bias, **attrs) -> Node:
    return Node(name, "conv2d", inputs, shape,
                params={"weight": weight.detach().double().numpy(),
                        "bias": bias.detach().double().numpy()},
                attrs={"stride": 1, "padding": 0, "groups": 1, **attrs})


def _graph(model: str) -> Graph:
    g = Graph(meta={"time_steps": T, "num_classes": 10, "model": model, "dataset": "digits"})
    g.add(Node("input", "input", [], (1, 8, 8), attrs={"encoding": "analog"}))
    return g


def _readout(g: Graph, src: str) -> Graph:
    g.add(Node("mean", "token_time_mean", [src], (10,)))
    g.add(Node("head", "affine", ["mean"], (10,), params={"weight": np.eye(10)}))
    g.add(Node("out", "output", ["head"], (10,)))
    return g.validate()


def mlp_graph(net: nn.Sequential) -> Graph:
    """Flatten -> Linear over (1, 8, 8) is a conv with an 8x8 kernel; the second Linear a
    1x1 conv over the (hidden, 1, 1) vector."""
    hidden = net[1].weight.shape[0]
    g = _graph("snntorch-mlp")
    g.add(_conv("fc1", ["input"], (hidden, 1, 1), net[1].weight.reshape(hidden, 1, 8, 8),
                net[1].bias))
    g.add(Node("lif1", "lif", ["fc1"], (hidden, 1, 1), attrs=_lif_attrs(net[2])))
    g.add(_conv("fc2", ["lif1"], (10, 1, 1), net[3].weight.reshape(10, hidden, 1, 1),
                net[3].bias))
    g.add(Node("lif2", "lif", ["fc2"], (10, 1, 1), attrs=_lif_attrs(net[4])))
    return _readout(g, "lif2")


def cnn_graph(net: nn.Sequential) -> Graph:
    """Flatten -> Linear over (C, 8, 8) is a conv with the full 8x8 kernel."""
    c = net[0].weight.shape[0]
    g = _graph("snntorch-cnn")
    g.add(_conv("conv1", ["input"], (c, 8, 8), net[0].weight, net[0].bias, padding=1))
    g.add(Node("lif1", "lif", ["conv1"], (c, 8, 8), attrs=_lif_attrs(net[1])))
    g.add(_conv("fc", ["lif1"], (10, 1, 1), net[3].weight.reshape(10, c, 8, 8), net[3].bias))
    g.add(Node("lif2", "lif", ["fc"], (10, 1, 1), attrs=_lif_attrs(net[4])))
    return _readout(g, "lif2")


NETS = {"mlp": (snn_mlp, mlp_graph), "cnn": (snn_cnn, cnn_graph)}


def make_copy(net: nn.Sequential) -> nn.Sequential:
    """run_snntorch converts the net's dtype in place: give it a copy."""
    return copy.deepcopy(net)


def lava_float(graph: Graph, x: torch.Tensor, probes) -> LavaResult:
    return run(lower_float(graph), encode_float(graph, x), target=FLOAT_TARGET,
               probes=probes)


def assert_same_spikes(lava: LavaResult, lif_nodes, snn_spikes) -> None:
    """Every probed LIF equals snntorch's layer exactly, and each fires at a rate strictly
    between 0 and 1 (a silent or saturated layer would make equality meaningless)."""
    for name, ref in zip(lif_nodes, snn_spikes):
        got = lava.outputs[name].reshape(ref.shape)      # (K, 1, 1) vectors -> (K,)
        assert 0.02 < ref.mean() < 0.98, (name, ref.mean())
        assert int((got != ref).sum()) == 0, f"{name}: {(got != ref).sum()} spikes differ"
    counts = snn_spikes[-1].sum(axis=0)                  # [B, 10] output spike counts
    assert np.array_equal(lava.predictions, counts.argmax(axis=1))
    # the float readout is the mean spike count through the identity head
    assert np.array_equal(lava.logits, counts.astype(np.float64) / T)


# -- the snntorch comparisons -----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return digits_test(SAMPLES)


_RUNS: dict = {}


def _hand_run(kind: str, beta: float, x) -> tuple:
    """(snntorch net, Lava result) for a hand-converted network, run once per module."""
    key = (kind, beta)
    if key not in _RUNS:
        make, to_graph = NETS[kind]
        net = make(beta)
        _RUNS[key] = (net, lava_float(to_graph(net), x, LIF_NODES))
    return _RUNS[key]


@pytest.mark.parametrize("beta", [BETA_GENERIC, BETA_LOIHI_GRID], ids=["beta0.9", "beta-grid"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hand_converted_snntorch_in_lava_float(kind, beta, digits):
    x, _ = digits
    net, lava = _hand_run(kind, beta, x)
    spikes32, _ = run_snntorch(make_copy(net), x, torch.float32)
    assert_same_spikes(lava, LIF_NODES, spikes32)
    spikes64, _ = run_snntorch(make_copy(net), x, torch.float64)
    assert_same_spikes(lava, LIF_NODES, spikes64)


@pytest.mark.parametrize("beta", [BETA_GENERIC, BETA_LOIHI_GRID], ids=["beta0.9", "beta-grid"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_snntorch_margin_to_threshold(kind, beta, digits):
    """The measured reason why float32 (snntorch) and float64 (Lava) agree: on these inputs
    the largest difference between snntorch's float32 and float64 membranes (rounding, up
    to 4.7e-6) is smaller than the smallest distance of any float32 membrane to the
    threshold (>= 1.4e-5 here), so no rounding can move a membrane across it."""
    x, _ = digits
    net, _ = _hand_run(kind, beta, x)
    _, mems32 = run_snntorch(make_copy(net), x, torch.float32)
    _, mems64 = run_snntorch(make_copy(net), x, torch.float64)
    for name, m32, m64 in zip(LIF_NODES, mems32, mems64):
        # mem after the step, before snntorch's (delayed) reset: |mem - 1| is the margin
        margin = float(np.abs(m32 - 1.0).min())
        rounding = float(np.abs(m32 - m64).max())
        assert 0 < rounding < margin, (kind, name, rounding, margin)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_snntorch_export_to_nir_then_lava_float(kind, digits):
    """The same networks through snntorch.export_to_nir and our foreign-NIR importer."""
    foreign = pytest.importorskip("compiler.nir.foreign",
                                  reason="compiler/nir/foreign.py (NIR import) not present yet")
    from snntorch.export_nir import export_to_nir

    x, _ = digits
    make, _ = NETS[kind]
    net = make(BETA_GENERIC)
    nir_graph = export_to_nir(make_copy(net), x[:1], ignore_dims=[0])
    graph = foreign.foreign_nir_to_ir(nir_graph, convention="snntorch", time_steps=T,
                                      dataset="digits", dt=None, source=f"snntorch-{kind}")
    lifs = [n.name for n in graph.by_op("lif")]
    assert len(lifs) == 2
    lava = lava_float(graph, x, lifs)
    spikes32, _ = run_snntorch(make_copy(net), x, torch.float32)
    assert_same_spikes(lava, lifs, spikes32)


# -- the LIF mapping --------------------------------------------------------------------------
def _one_neuron_graph(tau: float, theta: float, r: float, rule: str, steps: int) -> Graph:
    g = Graph(meta={"time_steps": steps, "num_classes": 1})
    g.add(Node("input", "input", [], (1, 1, 1), attrs={"encoding": "analog"}))
    g.add(Node("fc", "conv2d", ["input"], (1, 1, 1), params={"weight": np.ones((1, 1, 1, 1))},
               attrs={"stride": 1, "padding": 0, "groups": 1}))
    g.add(Node("lif", "lif", ["fc"], (1, 1, 1),
               attrs={"tau": tau, "v_threshold": theta, "r": r, "spike_if": rule}))
    return _readout_1(g)


def _readout_1(g: Graph) -> Graph:
    g.add(Node("mean", "token_time_mean", ["lif"], (1,)))
    g.add(Node("head", "affine", ["mean"], (1,), params={"weight": np.eye(1)}))
    g.add(Node("out", "output", ["head"], (1,)))
    return g.validate()


def test_spike_rule_at_exact_threshold():
    """H landing exactly on theta fires for ">=" and not for ">": tau = 1 makes H = r X
    each step (no memory); X = 0.25, 0.5, 0.75 against theta = 0.5 (all exact in binary)."""
    x = np.array([0.25, 0.5, 0.75]).reshape(3, 1, 1, 1)
    for rule, want in ((">=", [0, 1, 1]), (">", [0, 0, 1])):
        g = _one_neuron_graph(tau=1.0, theta=0.5, r=1.0, rule=rule, steps=2)
        res = lava_float(g, x, ["lif"])
        assert res.outputs["lif"][:, :, 0, 0, 0].tolist() == [want, want], rule


def test_paper_lif_tau2_reaches_threshold_exactly():
    """The paper's LIF (tau 2, r 1, ">=") with X = 2 theta: H = X / 2 = theta at step 1
    (fires, reset), and again every step; with ">" it never fires at step 1, charges to
    0.75 X at step 2 and fires then."""
    x = np.array([2.0]).reshape(1, 1, 1, 1)
    res = lava_float(_one_neuron_graph(2.0, 1.0, 1.0, ">=", 4), x, ["lif"])
    assert res.outputs["lif"][:, 0, 0, 0, 0].tolist() == [1, 1, 1, 1]
    res = lava_float(_one_neuron_graph(2.0, 1.0, 1.0, ">", 4), x, ["lif"])
    assert res.outputs["lif"][:, 0, 0, 0, 0].tolist() == [0, 1, 0, 1]


def test_lif_parameter_mapping():
    # ">=" becomes ">" on the next float below theta; ">" keeps theta
    node = Node("l", "lif", ["c"], (1, 1, 1), attrs={"tau": 2.0, "v_threshold": 1.0})
    dv, gain, vth = lif_lava_params(node)
    assert (dv, gain, vth) == (0.5, 0.5, np.nextafter(1.0, -np.inf))
    # snntorch: gain r / tau = 1 exactly and Lava's decay 1 - dv gives beta back exactly
    for beta in (np.float32(0.9), np.float32(BETA_LOIHI_GRID), np.float32(0.95)):
        tau = 1.0 / (1.0 - float(beta))
        node.attrs = {"tau": tau, "v_threshold": 1.0, "r": tau, "spike_if": ">"}
        dv, gain, vth = lif_lava_params(node)
        assert (gain, vth, 1.0 - dv) == (1.0, 1.0, float(beta))
    node.attrs = {"tau": 0.5, "v_threshold": 1.0}
    with pytest.raises(LoweringError, match="layer 'l'.*tau 0.5"):
        lif_lava_params(node)
    node.attrs = {"tau": 2.0, "v_threshold": 1.0, "spike_if": "=="}
    with pytest.raises(LoweringError, match="spike_if"):
        lif_lava_params(node)


# -- a general float graph against compiler.float_exec ---------------------------------------
def general_graph(seed: int = 0) -> Graph:
    """Normalised 2-channel input -> conv3x3+bias -> paper LIF -> sumpool 2x2 -> threshold
    -> 1x1 conv -> LIF (r = 1.5, ">") -> residual sum with the pooled spikes -> 1x1 conv ->
    LIF -> token/time mean -> affine head: every op of the float lowering, joins included."""
    rng = np.random.default_rng(seed)
    g = Graph(meta={"time_steps": 4, "num_classes": 5, "model": "float-general"})
    g.add(Node("input", "input", [], (2, 8, 8),
               attrs={"encoding": "analog", "mean": [0.5, 0.25], "std": [0.5, 2.0]}))

    def conv(name, src, cin, cout, hw, k=1, pad=0):
        g.add(Node(name, "conv2d", [src], (cout, hw, hw),
                   params={"weight": rng.normal(0, 2.0 / np.sqrt(cin * k * k), (cout, cin, k, k)),
                           "bias": rng.normal(0.7, 0.3, cout)},
                   attrs={"stride": 1, "padding": pad, "groups": 1}))

    conv("c1", "input", 2, 4, 8, k=3, pad=1)
    g.add(Node("l1", "lif", ["c1"], (4, 8, 8), attrs={"tau": 2.0, "v_threshold": 1.0}))
    g.add(Node("pool", "sumpool2d", ["l1"], (4, 4, 4),
               attrs={"kernel": 2, "stride": 2, "padding": 0}))
    g.add(Node("thr", "threshold", ["pool"], (4, 4, 4), attrs={"threshold": 1.0}))
    conv("c2", "thr", 4, 4, 4)
    g.add(Node("l2", "lif", ["c2"], (4, 4, 4),
               attrs={"tau": 3.0, "v_threshold": 0.8, "r": 1.5, "spike_if": ">"}))
    g.add(Node("res", "sum", ["thr", "l2"], (4, 4, 4)))
    conv("c3", "res", 4, 6, 4)
    g.add(Node("l3", "lif", ["c3"], (6, 4, 4), attrs={"tau": 2.0, "v_threshold": 1.0}))
    g.add(Node("mean", "token_time_mean", ["l3"], (6,)))
    g.add(Node("head", "affine", ["mean"], (5,),
               params={"weight": rng.normal(0, 1, (5, 6)), "bias": rng.normal(0, 0.1, 5)}))
    g.add(Node("out", "output", ["head"], (5,)))
    return g.validate()


def test_general_float_graph_matches_float_exec():
    """Every spiking layer equals compiler.float_exec in float64 (the IR's own semantics),
    on real digits images in both channels; the readout is exactly W (counts / (T N)) + b."""
    g = general_graph()
    x, _ = digits_test(12)
    x = torch.cat([x, x.flip(-1)], dim=1)                # two channels
    probes = ["l1", "thr", "l2", "res", "l3"]
    lava = lava_float(g, x, probes)
    ref = run_float(g, x, record=probes + ["out"], dtype=torch.float64)
    for name in probes:
        want = ref.outputs[name].numpy()
        assert lava.outputs[name].shape == want.shape
        assert int((lava.outputs[name] != want).sum()) == 0, name
        if name != "res":
            assert 0.02 < want.mean() < 0.98, (name, want.mean())
    assert lava.outputs["res"].max() == 2.0              # the join really sums graded values
    # the readout: W @ (spike count / (T * H * W)) + b, the Readout model's own expression
    counts = lava.outputs["l3"].sum(axis=(0, 3, 4))      # [B, 6]
    w, b = g["head"].params["weight"], g["head"].params["bias"]
    assert np.array_equal(lava.logits, np.stack([w @ (c / (4 * 16)) + b for c in counts]))
    assert np.array_equal(lava.predictions, ref.logits.numpy().argmax(1))


# -- Spikformer float graphs (attention, residuals, sum pools) against compiler.float_exec -----
def _spikformer_float_check(graph: Graph, x) -> None:
    """deploy.lava.verify.verify_float_against_float_exec: every LIF and threshold of the
    float graph in Lava equals compiler.float_exec in float64, and so do the predictions;
    the residual sums too, and the attention output is float_exec's times the attention
    LIF's input gain r / tau = 1/2 (an exact power of two)."""
    joins = [n.name for n in graph.by_op("sum")]
    attn = [n.name for n in graph.by_op("spiking_attention")]
    check = verify_float_against_float_exec(graph, x, extra_probes=joins + attn)
    assert check.spikes_compared > 0 and check.spike_mismatches == 0, check.layer_mismatches
    assert check.prediction_mismatches == 0
    for name in check.layer_mismatches:
        assert 0.0 < check.lava.outputs[name].mean() < 1.0, name
    lava = check.lava
    ref = run_float(graph, x, record=joins + attn, dtype=torch.float64)
    for name in joins:
        assert np.array_equal(lava.outputs[name], ref.outputs[name].numpy()), name
    for name in attn:
        assert np.array_equal(lava.outputs[name], 0.5 * ref.outputs[name].numpy()), name


@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_spikformer_float_graph_in_lava_float(name):
    cfg = get_config(name)
    graph = float_passes(model_to_ir(densely_firing_model(cfg, seed=0)))
    rng = np.random.default_rng(1)
    c, s = cfg.in_channels, cfg.img_size
    if cfg.event_input:
        x = (rng.random((3, cfg.time_steps, c, s, s)) < 0.3).astype(np.float32)
    else:
        x = digits_test(3)[0].numpy()
    _spikformer_float_check(graph, torch.from_numpy(x))


@pytest.mark.slow
def test_digits_checkpoint_float_in_lava_float():
    """The shipped digits-tiny checkpoint's float graph (1 block, 31 Lava processes) on 2
    digits test images: identical to float_exec in every layer. Slow (~30 s on 2 cores):
    Lava's stock float Conv loops over channel pairs through scipy, ~1.4 s per step here."""
    ckpt = CHECKPOINTS / "digits-tiny.pth"
    graph = float_passes(checkpoint_to_ir(ckpt))
    _spikformer_float_check(graph, digits_test(2)[0])


# -- errors -----------------------------------------------------------------------------------
def test_unsupported_ops_name_the_node():
    # batchnorm left in the graph
    bn = Graph(meta={"time_steps": 2, "num_classes": 2})
    bn.add(Node("input", "input", [], (2, 1, 1), attrs={"encoding": "analog"}))
    bn.add(Node("bn", "batchnorm", ["input"], (2, 1, 1),
                params={k: np.ones(2) for k in ("gamma", "beta", "mean", "var")},
                attrs={"eps": 1e-5}))
    bn.add(Node("mean", "token_time_mean", ["bn"], (2,)))
    bn.add(Node("head", "affine", ["mean"], (2,), params={"weight": np.eye(2)}))
    bn.add(Node("out", "output", ["head"], (2,)))
    with pytest.raises(LoweringError, match="'bn' \\(batchnorm\\).*float_passes"):
        lower_float(bn)
    # a LIF fed by a sum (not a conv): the gain has nowhere to go
    s = general_graph()
    s.nodes["l3"].inputs = ["res"]
    s.nodes["l3"].shape = (4, 4, 4)
    s.nodes.pop("c3")
    s.nodes["mean"].shape = (4,)
    s.nodes["head"].params["weight"] = np.ones((5, 4))
    with pytest.raises(LoweringError, match="'l3' \\(lif\\).*input 'res' is a sum"):
        lower_float(s.validate())
    # a conv with a bias that feeds no LIF
    c = general_graph()
    c.nodes["mean"].inputs = ["c3"]
    c.nodes.pop("l3")
    with pytest.raises(LoweringError, match="'c3' \\(conv2d\\).*bias but feeds no LIF"):
        lower_float(c.validate())


def test_targets_and_networks_must_match():
    g = _one_neuron_graph(2.0, 1.0, 1.0, ">=", 2)
    x = encode_float(g, np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError,
                       match="target 'lava-sim' does not fit.*lower_float.*'lava-sim-float'"):
        run(lower_float(g), x, target="lava-sim")
    with pytest.raises(LoweringError, match="'lif' \\(lif\\)"):
        lower(g)   # the fixed-point lowering refuses float graphs, naming the node


def test_fixed_point_models_refuse_float_only_parameters():
    """A float attention gain or a mean divisor would be silently truncated by the integer
    models: they refuse them, naming the process."""
    from deploy.lava.attention.models import PySpikingAttentionFixed
    from deploy.lava.io.models import PyReadoutFixed

    with pytest.raises(ValueError, match="SpikingAttention 'a'.*integer gain, got 0.0625"):
        PySpikingAttentionFixed({"gain": 0.0625, "name": "a"})
    with pytest.raises(ValueError, match="Readout 'r'.*cannot divide by 4"):
        PyReadoutFixed({"divisor": 4, "name": "r"})
    PySpikingAttentionFixed({"gain": 8, "name": "a"})   # the quantizer's integer gains pass
