"""Spike-driven Transformer on Lava (deploy/lava): stock processes only, spike for spike.

The family's quantized graphs join spike maps from different depths: a LIF fed by several
convs (the membrane shortcut) and a memoryless threshold over several sum pools (the AND of
two spike maps). The lowering aligns them with stock delay relays (identity ``Conv`` +
memoryless ``LIF``, ``deploy.lava.timing.spike_relays``) instead of the Python
``DelayedSum``, so inside the network only Conv, LIF and LIFReset run; the input RingBuffer
and the Readout are the only host processes (``LavaNetwork.host_processes``).

Checked here: the relay chain delays spikes by exactly its length (alone in Lava, and in a
hand-built AND graph), whole-map and "broadcast" (padding > kernel / 2) sum pools in the
stock and accelerated Conv models, the memoryless LIF on large counts, the plans (no
DELAYED_SUM / ATTENTION, every join aligned, the same plan at both numeric levels, the
graded fallback), and random test-micro-sdt / sdt-digits-tiny networks streamed back to back
on lava-sim, lava-sim-stock and lava-sim-float: every probed spike and logit equal to the
reference (or float) executor.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lava.proc.conv.models import PyConvModelFixed
from lava.proc.io.source import RingBuffer

from compiler.encoding import encode_integer
from compiler.frontend import model_to_ir
from compiler.ir import Node
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.reference import run_reference
from compiler.resources import loihi_estimate
from deploy.accelerated.models import PATH_REFERENCE, PyConvModelFixedAccelerated
from deploy.lava import StageKind, lower, lower_float, run, run_config
from deploy.lava.io.process import Tap
from deploy.lava.params import FixedPointParams, MAX_THRESHOLD_COUNT, sumpool_params
from deploy.lava.runtime import create_runtime, run_steps, stop_runtime
from deploy.lava.stages import LoweringError
from deploy.lava.timing import chain_lags, node_lags, spike_relays
from deploy.lava.verify import verify_against_reference, verify_float_against_float_exec
from loihi_numerics import fixed_point as fx
from spikformer_neuro.model import build_model
from spikformer_neuro.testing import densely_firing_model, randomize_batchnorm
from spikformer_neuro.zoo import get_config

from support.graphs import build_graph

pytestmark = pytest.mark.lava

SPIKING = ("loihi_lif", "threshold")
STOCK_KINDS = {StageKind.SOURCE, StageKind.CONV, StageKind.LIF, StageKind.LIF_RESET,
               StageKind.READOUT}
#: configuration -> (torch seed, BatchNorm seed): random weights whose every spiking layer
#: fires sometimes, never always, on `images(4)` (checked by the network tests)
SEEDS = {"test-micro-sdt": (3, 4), "sdt-digits-tiny": (0, 1)}
#: relay neurons the lowering needs per configuration (one block: pool2 by 8 steps, the RPE
#: LIF by 7, the mask by 2, q by 2; chains shared per source)
RELAYS = {"test-micro-sdt": 19, "sdt-digits-tiny": 19}


# -- helpers -----------------------------------------------------------------------------------
def sdt_graphs(name):
    """(float graph after the passes, quantized graph) of a random spike-driven model."""
    seed, bn_seed = SEEDS[name]
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_model(get_config(name)), bn_seed).eval()
    fg = float_passes(model_to_ir(model))
    return fg, quantize(fg)


@pytest.fixture(scope="module")
def sdt():
    return {name: sdt_graphs(name) for name in SEEDS}


def images(batch, seed=0):
    """8x8 images on the 1/16 grid (the digits' own levels: the integer encoding is exact)."""
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.integers(0, 17, (batch, 1, 8, 8)) / 16, dtype=torch.float32)


def spiking(graph):
    return [n.name for n in graph if n.op in SPIKING]


def relay_neurons(net):
    return [s for s in net.stages.values() if s.kind is StageKind.LIF and s.node != s.name]


def pool(name, src, shape, kernel=1, padding=0):
    return Node(name, "sumpool2d", [src], tuple(shape),
                attrs=dict(kernel=kernel, stride=1, padding=padding))


def threshold(name, inputs, shape, thr):
    return Node(name, "threshold", list(inputs), tuple(shape), attrs={"threshold": float(thr)})


def and_graph(depth, c=3, hw=3, time_steps=4):
    """``and = early AND late`` over a spike input, with ``late`` behind ``depth`` identity
    threshold layers: the early 1x1 pool needs ``depth`` relays, and ``and`` == the input."""
    shape = (c, hw, hw)
    nodes = [Node("input", "input", [], shape, attrs={"encoding": "spikes"})]
    prev = "input"
    for k in range(1, depth + 1):
        nodes += [pool(f"p{k}", prev, shape), threshold(f"t{k}", [f"p{k}"], shape, 1)]
        prev = f"t{k}"
    weight = np.arange(2 * c, dtype=np.float64).reshape(2, c) - c
    nodes += [pool("early", "input", shape), pool("late", prev, shape),
              threshold("and", ["early", "late"], shape, 2),
              Node("readout", "token_time_mean", ["and"], (c,)),
              Node("head", "affine", ["readout"], (2,), params={"weight": weight}),
              Node("output", "output", ["head"], (2,))]
    g = build_graph(nodes, time_steps=time_steps, stage="float")
    g.meta["num_classes"] = 2
    return float_passes(g)


def chain_to(net, node):
    """(the relay stages feeding ``node``'s Conv -- Conv, LIF, Conv, ... -- source first,
    the source's stage)."""
    chain, cur = [], net.stages[net.stages[net.providers[node]].inputs[0][0]]
    while cur.node != cur.name:                   # a relay stage carries its source's name
        chain.append(cur)
        cur = net.stages[cur.inputs[0][0]]
    return chain[::-1], cur


def run_chain(stages, data, target):
    """RingBuffer(data) -> the relay stages as Lava processes -> Tap; one message per step."""
    steps = data.shape[-1]
    source = RingBuffer(data=data)
    out = source.s_out
    for st in stages:
        proc = st.kind.process(**st.constructor_args(), name=st.name)
        out.connect(getattr(proc, st.inputs[0][1]))
        out = getattr(proc, st.kind.out_port)
    tap = Tap(shape=data.shape[:-1], buffer_size=steps)
    out.connect(tap.a_in)
    try:
        create_runtime(source, run_config(target))
        run_steps(source, steps)
        recv = tap.out.external_pipe_csp_recv_port
        return np.stack([np.array(recv.recv()) for _ in range(steps)], axis=-1)
    finally:
        stop_runtime(source._runtime)


def assert_joins_aligned(net):
    """Every stage's inputs leave their processes at one Lava step; its lag is that + hop."""
    for st in net.stages.values():
        arrivals = {net.stages[src].lag + (st.params["delay"] if port == "a_delayed" else 0)
                    for src, port in st.inputs}
        assert len(arrivals) <= 1, f"{st.name}: inputs arrive misaligned {arrivals}"
        if arrivals:
            hop = 1 if st.kind is StageKind.CONV else 0
            assert st.lag == arrivals.pop() + hop, st.name


# -- the relay chain ---------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["lava-sim", "lava-sim-float"])
def test_relay_chain_delays_spikes_by_its_length(target):
    """The chain of ``d`` relays (identity Conv + memoryless LIF) built by the lowering sends
    at Lava step t exactly the spikes it received at step t - d, run alone in Lava."""
    depth = 3
    fg = and_graph(depth)
    net = lower_float(fg) if target == "lava-sim-float" else lower(quantize(fg))
    chain, source = chain_to(net, "early")
    assert source.name == "input"
    assert [s.kind for s in chain] == [StageKind.CONV, StageKind.LIF] * depth
    assert [s.lag for s in chain] == [k for k in range(1, depth + 1) for _ in range(2)]
    data = (np.random.default_rng(7).random((3, 3, 3, 16)) < 0.5)
    data = data.astype(np.float64 if target == "lava-sim-float" else np.int32)
    got = run_chain(chain, data, target)
    assert np.array_equal(got[..., depth:], data[..., :-depth])
    assert not got[..., :depth].any()


def test_relayed_and_equals_its_input_in_lava():
    """``input AND (input through 3 layers)``: exact only if the relays realign the early
    branch; several samples back to back, equal to the reference and to the input."""
    q = quantize(and_graph(3))
    x = (torch.rand(3, 4, 3, 3, 3, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    ref = run_reference(q, x, record=True)
    x_seq = encode_integer(q, x)
    res = run(lower(q), x_seq, target="lava-sim", probes=["and", "early", "late"])
    for name in ("and", "early", "late"):
        assert np.array_equal(res.outputs[name], ref.outputs[name]), name
    assert np.array_equal(res.outputs["and"], x_seq)
    assert np.array_equal(res.logits, ref.logits)


# -- sum pools and thresholds of the family ----------------------------------------------------
#: (C, H, W) input, kernel, padding: whole-map count, broadcast back (padding = kernel - 1,
#: larger than kernel / 2), non-square, and > 127 channels (Lava's int8 groups: ungrouped)
POOL_GEOMETRIES = [((5, 4, 4), (4, 4), (0, 0)), ((5, 1, 1), (4, 4), (3, 3)),
                   ((3, 7, 7), (7, 7), (0, 0)), ((3, 1, 1), (7, 7), (6, 6)),
                   ((4, 1, 1), (3, 5), (2, 4)), ((130, 1, 1), (2, 2), (1, 1))]


class _Port:
    """A fake in/out port: ``recv`` pops what the test queued, ``send`` records."""

    def __init__(self, queue=()):
        self.queue, self.sent = list(queue), []

    def recv(self):
        return self.queue.pop(0)

    def send(self, data):
        self.sent.append(np.array(data, copy=True))


def _conv_outputs(cls, params, frames):
    """What a Conv ProcessModel with the plan's Vars sends, one step per frame (+1 to drain
    its one-step delay), run outside a runtime."""
    m = cls({})
    m.weight = params["weight"]
    m.kernel_size = np.array(m.weight.shape[1:3], np.int8)
    for key in ("stride", "padding", "dilation"):
        setattr(m, key, np.array(params[key], np.int8))
    m.groups = np.array([params["groups"]], np.int8)
    m.num_message_bits = np.array([params["num_message_bits"]], np.int8)
    m.a_buf = np.zeros(params["output_shape"], np.int32)
    m.s_in, m.a_out = _Port(list(frames) + [np.zeros_like(frames[0])]), _Port()
    for _ in range(len(frames) + 1):
        m.run_spk()
    return m, np.stack(m.a_out.sent[1:])


@pytest.mark.parametrize("in_shape,kernel,padding", POOL_GEOMETRIES)
def test_whole_map_and_broadcast_sum_pools_in_stock_and_accelerated_conv(in_shape, kernel,
                                                                          padding):
    """The plan's Conv for these sum pools gives the reference's window counts in Lava's
    stock fixed-point Conv model and in the accelerated one (on its fast path)."""
    c, h, w = in_shape
    out_hw = (h + 2 * padding[0] - kernel[0] + 1, w + 2 * padding[1] - kernel[1] + 1)
    src = Node("src", "threshold", [], in_shape, attrs={"threshold": 1.0})
    node = Node("pool", "sumpool2d", ["src"], (c,) + out_hw,
                attrs=dict(kernel=list(kernel), stride=1, padding=list(padding)))
    params = sumpool_params(node, src, FixedPointParams.pool_message_bits, np.int32)
    x = (np.random.default_rng(c + h).random((4,) + in_shape) < 0.5).astype(np.int64)
    want = fx.conv_accumulate(x, np.ones((c, 1) + kernel, np.int64), 1, padding, 1, c)
    frames = [fx.to_lava_layout(f).astype(np.int32) for f in x]
    _, stock = _conv_outputs(PyConvModelFixed, params, frames)
    fast_model, fast = _conv_outputs(PyConvModelFixedAccelerated, params, frames)
    assert np.array_equal(stock, fx.to_lava_layout(want))
    assert np.array_equal(fast, stock)
    assert fast_model.path_counts[PATH_REFERENCE] == 0


def test_threshold_lif_counts_sums_of_pools_up_to_the_token_count():
    """The memoryless LIF (du = dv = 4095, vth = ceil(thr) - 1) spikes iff the sum of its
    pools' counts >= thr at every step, whatever came before: counts up to 49 + 49 (two
    whole-map pools of 7x7 tokens) and thresholds 1 and 2, every pair of steps."""
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (2, 4000, 6)).sum(axis=0)     # two pools, 6 steps
    counts[:, ::2] *= rng.random((4000, 3)) < 0.5                # many zeros and small ones
    for thr in (1.0, 2.0):
        node = threshold("t", ["a", "b"], (1, 1, 1), thr)
        pools = [pool(n, "x", (1, 1, 1), kernel=7, padding=3) for n in ("a", "b")]
        p = FixedPointParams().threshold(node, pools)
        params = fx.LifParams(du=p["du"], dv=p["dv"], vth=p["vth"])
        u = v = np.zeros(len(counts), np.int64)
        for t in range(counts.shape[1]):
            u, v, spikes = fx.lif_step(u, v, counts[:, t], params)
            assert np.array_equal(spikes, counts[:, t] >= thr), (thr, t)


def test_threshold_refuses_what_the_lif_cannot_count():
    shape = (1, 1, 1)
    with pytest.raises(LoweringError, match="'t' \\(threshold\\).*sumpool2d"):
        FixedPointParams().threshold(threshold("t", ["x"], shape, 1),
                                     [threshold("x", [], shape, 1)])
    big = pool("a", "x", shape, kernel=(1 << 9), padding=0)    # 2**18 taps
    with pytest.raises(LoweringError, match=f"<= {MAX_THRESHOLD_COUNT}"):
        FixedPointParams().threshold(threshold("t", ["a"], shape, 1), [big])
    with pytest.raises(LoweringError, match="vth 64"):
        FixedPointParams().threshold(threshold("t", ["a"], shape, 65), [pool("a", "x", shape)])


# -- the plans (no Lava run) -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_spike_driven_plan_uses_stock_processes_only(sdt, name):
    fg, q = sdt[name]
    net = lower(q)
    assert {s.kind for s in net.stages.values()} <= STOCK_KINDS   # no DELAYED_SUM, ATTENTION
    assert net.host_processes() == {"source": 1, "readout": 1}
    assert net.host_edges() == {"source": "input injection", "readout": "output reading"}
    assert_joins_aligned(net)
    # every multi-input neuron gets its inputs from relays, none from a delay line
    relays = spike_relays(q)
    assert relays and len(relay_neurons(net)) == RELAYS[name]
    assert {q[n].op for n in relays} == {"conv2d", "sumpool2d"}
    chains = [chain_to(net, n) for n in relays]
    assert all(len(chain) == 2 * relays[n] for n, (chain, _) in zip(relays, chains))
    assert len({s.name for chain, _ in chains for s in chain}) == 2 * RELAYS[name]  # shared
    # probes re-align with the relayed lags; nothing else moved
    lags, plain = node_lags(q), chain_lags(q)
    assert net.lags == lags
    assert {n for n in lags if lags[n] != plain[n]} == set(relays)
    assert all(lags[n] == plain[n] + d for n, d in relays.items())
    for st in net.stages.values():
        if st.kind is StageKind.LIF_RESET:
            assert st.params["reset_offset"] == (st.lag + 1) % net.time_steps
    # the floating-point lowering builds the same plan
    flt = lower_float(fg)
    assert list(flt.stages) == list(net.stages)
    for a, b in zip(net.stages.values(), flt.stages.values()):
        assert (a.kind, a.node, a.lag, a.inputs, a.shape) == (b.kind, b.node, b.lag, b.inputs,
                                                               b.shape), a.name


def _process_names(host):
    by_label = {k.label: k.process.__name__ for k in StageKind}
    return {by_label[label]: n for label, n in host.items()}


def test_host_processes_name_what_runs_off_the_chip(sdt):
    """Spikformer keeps its attention and residual joins on the host; the spike-driven
    network only its edges. Both agree with compiler.resources' estimate."""
    q = quantize(float_passes(model_to_ir(densely_firing_model(get_config("test-micro"), 0))))
    net = lower(q)
    assert net.host_processes() == {"source": 1, "delayed_sum": 3, "spiking_attention": 1,
                                    "readout": 1}
    assert net.host_edges() == {"source": "input injection", "readout": "output reading"}
    assert spike_relays(q) == {} and node_lags(q) == chain_lags(q)   # no relay in Spikformer
    for graph in (q, sdt["test-micro-sdt"][1]):
        est = {k: n for k, n in loihi_estimate(graph)["host_processes"].items() if n}
        assert _process_names(lower(graph).host_processes()) == est


def test_graded_early_input_keeps_the_delay_line():
    """A LIF reading a conv of the (graded) image and a deeper conv: the early conv cannot
    be rebuilt from relayed spikes, so its output rides a DelayedSum delay line."""
    rng = np.random.default_rng(0)
    shape = (2, 3, 3)

    def conv(name, src, c_in):
        return Node(name, "conv2d", [src], shape, params={"weight": rng.normal(0.5, 0.3,
                                                                                (2, c_in, 1, 1))},
                    attrs={"stride": 1, "padding": 0, "groups": 1})

    lif = {"tau": 2.0, "v_threshold": 1.0}
    g = build_graph([Node("input", "input", [], (1, 3, 3), attrs={"encoding": "analog"}),
                     conv("c0", "input", 1), conv("c1", "input", 1),
                     Node("l1", "lif", ["c1"], shape, attrs=lif), conv("c2", "l1", 2),
                     Node("l2", "lif", ["c0", "c2"], shape, attrs=lif),
                     Node("mean", "token_time_mean", ["l2"], (2,)),
                     Node("head", "affine", ["mean"], (2,), params={"weight": np.eye(2)}),
                     Node("out", "output", ["head"], (2,))], stage="float")
    net = lower_float(g)
    assert spike_relays(g) == {}
    assert net.stages["c0+1"].kind is StageKind.DELAYED_SUM
    assert ("c0+1", "a_in") in net.stages["l2"].inputs
    assert_joins_aligned(net)


# -- networks in Lava --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SEEDS))
def test_spike_driven_network_matches_reference(sdt, name):
    """lava-sim (accelerated stock models): 4 samples back to back, every spiking layer and
    every relayed Conv equal to the reference, every logit too."""
    _, q = sdt[name]
    relayed = sorted(spike_relays(q))
    check = verify_against_reference(q, encode_integer(q, images(4)), "lava-sim",
                                     probes=spiking(q) + relayed)
    assert check.spike_mismatches == 0, {k: v for k, v in check.layer_mismatches.items() if v}
    assert check.logit_mismatches == 0 and check.prediction_mismatches == 0
    for layer in spiking(q):
        rate = check.lava.outputs[layer].mean()
        assert 0 < rate < 1, f"{layer} fires at rate {rate}: the test would be weak"


def test_spike_driven_network_on_stock_models():
    """lava-sim-stock: Lava's own Conv/LIF/LIFReset models (slow: small net, 2 samples)."""
    _, q = sdt_graphs("test-micro-sdt")
    probes = ["sps.pool2", "blocks.0.attn.kv_lif", "blocks.0.attn.mask", "blocks.0.attn.q_syn",
              "blocks.0.mlp.fc1_lif", "head_lif"]
    check = verify_against_reference(q, encode_integer(q, images(2, seed=1)), "lava-sim-stock",
                                     probes=probes)
    assert check.exact, {k: v for k, v in check.layer_mismatches.items() if v}


def test_spike_driven_float_graph_on_float_models(sdt):
    """lava-sim-float: the float graph with the same relays against float_exec in float64."""
    fg, _ = sdt["test-micro-sdt"]
    check = verify_float_against_float_exec(fg, images(2, seed=2))
    assert check.spikes_compared > 0
    assert check.exact and check.prediction_mismatches == 0, check.layer_mismatches
