"""Neuron and synapse counts of a quantized network, checked against a hand count; the
per-op handler tables of the graph analyses (resources, FLOP count) are complete."""
import pytest

from compiler.frontend import model_to_ir
from compiler.ir import IRError
from compiler.ops import FLOAT, QUANTIZED, handled_ops, missing_handlers, ops_at
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.reports.flops import SynapticCounter, synaptic_layers
from compiler.resources import Footprint, loihi_estimate, network_size
from spikformer_neuro.testing import firing_model


def test_analyses_have_one_handler_per_op_of_their_levels():
    # the Loihi estimate and the network size: quantized graphs only
    assert missing_handlers(Footprint, QUANTIZED) == ()
    assert set(handled_ops(Footprint)) == set(ops_at(QUANTIZED))
    # the FLOP count (and the energy built on it): float graphs before and after the passes
    # (the paper tables count the frontend's graph) and quantized graphs
    assert missing_handlers(SynapticCounter, FLOAT) == ()
    assert missing_handlers(SynapticCounter, QUANTIZED) == ()


def test_the_resource_estimate_refuses_float_graphs():
    g = float_passes(model_to_ir(firing_model("test-micro")))
    for analysis in (network_size, loihi_estimate):
        with pytest.raises(IRError, match="takes quantized graphs"):
            analysis(g)
    # the FLOP count takes every level, with the same layers
    q = quantize(g)
    assert synaptic_layers(g) == synaptic_layers(q)


def test_counts_for_test_micro():
    # test-micro: 8x8 input, D = 16 (stages 2, 4, 8, 16 channels), pool after stage 3 -> 4x4
    # tokens, 1 block, MLP hidden 64, 4 classes.
    q = quantize(float_passes(model_to_ir(firing_model("test-micro"))))
    stages = (2 + 4 + 8 + 16) * 64           # four 8x8 LIF maps
    pool = 16 * 16                          # threshold after the sum pool, 16 x 4x4
    grid = 16 * 16                          # one D x 4x4 token map
    block = 6 * grid + 64 * 16              # rpe, q, k, v, attn, proj maps + fc1 (64 x 16) ...
    block += grid                           # ... + fc2
    assert network_size(q)["neurons"] == stages + pool + block
    convs = [1 * 2 * 9, 2 * 4 * 9, 4 * 8 * 9, 8 * 16 * 9, 16 * 16 * 9,   # stem + rpe
             16 * 16, 16 * 16, 16 * 16, 16 * 16, 16 * 64, 64 * 16]         # q k v proj fc1 fc2
    head = 16 * 4
    assert network_size(q)["synapses_stored"] == sum(convs) + head
    dense = (2 * 64 * 9 + 4 * 64 * 18 + 8 * 64 * 36 + 16 * 64 * 72 + 16 * 16 * 144
             + 4 * 16 * 16 * 16 + 64 * 16 * 16 + 16 * 16 * 64 + head)
    assert network_size(q)["synapses_dense"] == dense


def test_loihi_estimate_for_test_micro():
    from compiler.resources import loihi_estimate

    q = quantize(float_passes(model_to_ir(firing_model("test-micro"))))
    est = loihi_estimate(q)
    pops = {p["name"]: p for p in est["populations"]}
    assert len(pops) == 16  # 4 stages, pool, rpe, 3 residual joins, q k v attn proj, fc1 fc2
    assert pops["sps.pool3"]["synapses_stored"] == 16 * 9           # depthwise all-ones 3x3
    assert pops["sps.pool3"]["synapses_dense"] == 16 * 16 * 9
    assert pops["blocks.0.attn.attn_lif"]["synapses_dense"] == 256  # identity from the attention
    assert pops["blocks.0.attn_residual"]["synapses_dense"] == 2 * 256
    assert pops["blocks.0.mlp.fc1.lif"]["synapses_stored"] == 64 * 16
    total = est["total"]
    assert total["neurons"] == network_size(q)["neurons"] + 3 * 256  # + the residual relays
    # every population is far below a core's limits: one core each, one chip
    assert total["cores_shared"] == total["cores_dense"] == 16
    assert total["chips_shared"] == total["chips_dense"] == 1
    # with lava-loihi our Python processes run on the host CPU, not on the embedded x86 cores
    parts = {p["node"]: p for p in est["off_chip"]}
    assert all(p["where"] == "host" for p in est["off_chip"])
    assert parts["input"]["process"] == "RingBuffer"
    assert parts["blocks.0.attn.attention"]["process"] == "SpikingAttention"
    assert parts["blocks.0.attn.attention"]["spikes_out_per_step_max"] == 3 * 256
    assert parts["readout"]["process"] == "Readout"
    assert parts["blocks.0.mlp_residual"]["process"] == "DelayedSum"
    assert [p["node"] for p in est["off_chip"]][:3] == ["input", "blocks.0.attn.attention",
                                                        "readout"]
    assert est["host_processes"] == {"RingBuffer": 1, "SpikingAttention": 1, "DelayedSum": 3,
                                     "Readout": 1}
    assert any("estimate" in a or "derived" in a for a in est["assumptions"])
    assert any("host CPU" in a for a in est["assumptions"])
    text = " ".join(est["assumptions"] + [p["why"] for p in est["off_chip"]])
    assert "embedded cores per chip" not in text and "from the embedded cores" not in text


def test_loihi_estimate_splits_large_layers():
    from compiler.resources import CORE_NEURONS, CORE_SYNAPSES, loihi_estimate

    q = quantize(float_passes(model_to_ir(firing_model("cifar10-4-384"))))
    pops = {p["name"]: p for p in loihi_estimate(q)["populations"]}
    assert (CORE_NEURONS, CORE_SYNAPSES) == (7812, 937_500)
    stem = pops["sps.stages.0.lif"]                  # 48 x 32 x 32 neurons
    assert stem["neurons"] == 49_152 and stem["cores_shared"] == 7   # 6 * 7812 < 49152
    rpe = pops["sps.rpe.lif"]                        # 384 -> 384 3x3 on 8 x 8 tokens
    assert rpe["synapses_dense"] == 384 * 64 * 384 * 9 and rpe["cores_dense"] == 91
    # shared: the weights (1.33 M) would fit 2 cores, the 24 576 neurons need 4
    assert rpe["synapses_stored"] == 384 * 384 * 9 and rpe["cores_shared"] == 4
