"""Event-count input (CIFAR10-DVS frames as spikingjelly bins them): integers 0..max_count per
pixel and bin, end to end -- the float model, the float executor, quantization (graded input
to the first conv with its proven bound), the reference executor, Lava, and the refusals.

The attention of the DVS networks runs T = 16 steps; its exactness at that T is checked here
on a compiled network (the reference's attention LIF against the float model's own attention
and LIF fed the same q, k, v spikes), and exhaustively on the LIF in
tests/test_compiler/test_quantize.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.encoding import check_samples, encode_float, encode_integer
from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import IRError
from compiler.passes import float_passes
from compiler.passes.quantize import quantize, value_bounds
from compiler.reference import run_reference
from deploy.lava.verify import verify_against_reference
from spikformer_neuro.config import ConfigError
from spikformer_neuro.neuron import lif_multistep
from spikformer_neuro.testing import firing_model, random_input
from spikformer_neuro.zoo import get_config

MAX_COUNT = 12


def counts_model(time_steps: int = 3, seed: int = 0):
    return firing_model("test-micro-events", seed=seed,
                        event_max_count=MAX_COUNT, time_steps=time_steps)


@pytest.fixture(scope="module")
def compiled():
    model = counts_model()
    float_graph = model_to_ir(model)
    return model, float_graph, quantize(float_passes(float_graph))


def test_random_counts_are_graded_and_reach_the_maximum():
    x = random_input(counts_model().cfg, 8)
    assert x.shape == (8, 3, 2, 8, 8)
    assert x.max() == MAX_COUNT and ((x > 1).float().mean() > 0.05)
    assert torch.equal(x, x.round()) and x.min() == 0


def test_config_rules():
    base = get_config("test-micro-events")
    with pytest.raises(ConfigError, match="event_max_count is for event input"):
        get_config("test-micro").replace(event_max_count=3)
    for bad in (0, -1, 2 ** 23, 2.5, True):
        with pytest.raises(ConfigError, match="event_max_count must be an integer in 1..8388607"):
            base.replace(event_max_count=bad)
    with pytest.raises(ConfigError, match="event-count input is not normalised"):
        base.replace(event_max_count=3, input_mean=(0.1, 0.1), input_std=(1.0, 1.0))


def test_float_executor_equals_the_model_on_counts(compiled):
    model, float_graph, _ = compiled
    x = random_input(model.cfg, 6, seed=2)
    node = float_graph.input_node
    assert node.attrs == {"encoding": "counts", "max_count": MAX_COUNT}
    with torch.no_grad():
        want = model(x)
    assert torch.equal(run_float(float_graph, x).logits, want)
    seq = encode_float(float_graph, x)
    assert np.array_equal(seq, x.numpy().transpose(1, 0, 2, 3, 4))   # counts, not normalised


def test_quantized_input_is_the_counts_with_their_bound(compiled):
    model, _, q = compiled
    node = q.input_node
    assert node.attrs["encoding"] == "counts" and node.attrs["max_abs"] == MAX_COUNT
    assert node.attrs["bits"] == 4 and node.attrs["signed"] is False
    conv = q["sps.stages.0.conv"]
    assert conv.attrs["graded_input"] is True
    rows = np.abs(conv.params["weight"]).reshape(conv.shape[0], -1).sum(1).max()
    bounds = value_bounds(q)
    assert bounds[conv.name] == float(rows) * MAX_COUNT
    layer = q.meta["quantization"]["layers"]["sps.stages.0.lif"]
    vth = int(q["sps.stages.0.lif"].params["vth"])
    # the proven 24-bit bound of the first layer holds for the largest counts
    assert 64 * rows * MAX_COUNT < 2 ** 22 and layer["vth"] == vth
    x = random_input(model.cfg, 4, seed=3)
    seq = encode_integer(q, x)
    assert seq.dtype == np.int64 and np.array_equal(seq, x.numpy().transpose(1, 0, 2, 3, 4))


def test_counts_beyond_the_bound_and_non_counts_are_refused(compiled):
    _, float_graph, q = compiled
    x = random_input(counts_model().cfg, 2).numpy()
    for graph in (float_graph, q):
        over = x.copy()
        over[1, 0, 1, 2, 3] = MAX_COUNT + 1
        with pytest.raises(ValueError, match=r"1 count\(s\) above the network's max_count 12 "
                                              r"\(the largest: 13, first in sample 1\); counts "
                                              r"are never clipped"):
            check_samples(graph, over, "--input 'x.npy'")
        for bad, what in ((-1.0, "-1.0"), (2.5, "2.5")):
            y = x.copy()
            y[0, 2, 0, 0, 0] = bad
            with pytest.raises(ValueError, match=rf"holds 1 value\(s\) that are not event counts "
                                                 rf"\(the first: {what} in sample 0\)"):
                check_samples(graph, y, "x")
        with pytest.raises(ValueError, match="above the network's max_count"):
            (encode_integer if graph is q else encode_float)(graph, over)
    assert check_samples(q, x, "x") is x
    with pytest.raises(ValueError, match=r"expected event-count frames \[B, 3, 2, 8, 8\] of "
                                         r"integer counts 0..12"):
        check_samples(q, x[:, :2], "x")


def test_a_counts_input_without_its_bound_is_refused(compiled):
    _, float_graph, _ = compiled
    g = float_graph.copy()
    del g.input_node.attrs["max_count"]
    with pytest.raises(IRError, match="an event-count input needs 'max_count'"):
        encode_float(g, np.zeros((1, 3, 2, 8, 8)))


def test_reference_equals_lava_on_counts(compiled):
    model, _, q = compiled
    x = random_input(model.cfg, 5, seed=4)
    check = verify_against_reference(q, encode_integer(q, x), "lava-sim")
    assert check.spikes_compared > 0 and check.exact, check.layer_mismatches
    ref = run_reference(q, x, record=["sps.stages.0.lif"])
    rate = ref.outputs["sps.stages.0.lif"].mean()
    assert 0.02 < rate < 0.98      # the stem neither silent nor saturated: the test bites


def test_attention_at_t16_is_exact_in_a_compiled_network():
    """T = 16 (the DVS networks' T) with the CIFAR10-DVS scale 0.25: the reference's attention
    LIF spikes equal the float model's attention and LIF applied to the same q, k, v spikes."""
    model = firing_model("test-micro-events", seed=1,
                         event_max_count=MAX_COUNT, time_steps=16, attn_scale=0.25)
    q = quantize(float_passes(model_to_ir(model)))
    attn = q["blocks.0.attn.attention"]
    assert attn.attrs["gain"] == 2 ** 9 and attn.attrs["saturation"] == 4
    assert q["blocks.0.attn.attn_lif"].attrs["exact"] is True
    x = random_input(model.cfg, 16, seed=5)
    names = [f"blocks.0.attn.{r}.lif" for r in "qkv"] + ["blocks.0.attn.attn_lif"]
    ref = run_reference(q, x, record=names)
    ssa = model.blocks[0].attn

    def tokens(a):   # [T, B, D, H, W] -> [T, B, N, D]
        return torch.from_numpy(a).float().flatten(3).transpose(2, 3)

    with torch.no_grad():
        drive = ssa.attention(*(tokens(ref.outputs[n]) for n in names[:3]))
        want = lif_multistep(drive, tau=2.0, v_threshold=0.5)
    got = tokens(ref.outputs[names[3]])
    assert torch.equal(got, want)
    assert 0 < got.mean() < 1 and drive.max() > 1   # spikes, silences and saturated counts
    # and Lava runs the same integers (the attention process saturates as the reference)
    check = verify_against_reference(q, encode_integer(q, x[:3]), "lava-sim")
    assert check.spikes_compared > 0 and check.exact, check.layer_mismatches
