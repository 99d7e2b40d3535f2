"""Neuron and synapse counts of a quantized network, checked against a hand count."""
from compiler.frontend import model_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.resources import network_size
from spikformer_neuro.testing import firing_model


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
