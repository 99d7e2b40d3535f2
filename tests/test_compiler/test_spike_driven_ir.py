"""The spike-driven family in the compiler: the frontend's graph equals the PyTorch model
bit for bit, distribute_membrane gives every neuron its own synapses without changing a
value, and the quantize pass puts a LIF fed by several convs on one integer grid that the
reference executor runs exactly as the numpy oracle does."""
import numpy as np
import pytest
import torch

from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import IRError, Node
from compiler.passes import distribute_membrane, float_passes
from compiler.passes.distribute_membrane import token_mean_weight
from compiler.passes.quantize import quantize
from compiler.reference import run_reference
from spikformer_neuro.model import build_model
from spikformer_neuro.neuron import MultiStepLIF
from spikformer_neuro.testing import randomize_batchnorm
from spikformer_neuro.zoo import get_config

from support.numpy_reference import run_numpy_reference


def _model(name="sdt-digits-tiny", seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model(get_config(name)), seed + 1).eval()


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 17, size=(n, 1, 8, 8)) / 16.0).float()


def _model_spikes(model, x):
    """Every LIF module's output, by module name (time-major)."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, o))
             for name, m in model.named_modules() if isinstance(m, MultiStepLIF)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return logits, seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_float_graph_is_the_model_bit_for_bit(dtype):
    model = _model().to(dtype)
    x = _images(24).to(dtype)
    logits, spikes = _model_spikes(model, x)
    result = run_float(model_to_ir(model), x, record=True, dtype=dtype)
    assert torch.equal(result.logits, logits)
    # every LIF module is the node of its name (kv_lif: the threshold it provably equals)
    assert set(spikes) <= set(result.outputs)
    for name, s in spikes.items():
        assert torch.equal(result.outputs[name], s), name
        assert 0 < float(s.mean()) < 1, name


def test_the_frontend_refuses_what_no_neuro_core_computes():
    with pytest.raises(IRError, match="max-pools the real-valued output of SPS stage 3"):
        model_to_ir(build_model(get_config("sdt-cifar10-2-512")))
    with pytest.raises(IRError, match="kv_lif is a threshold only for tau = 2"):
        model_to_ir(build_model(get_config("test-micro-sdt").replace(attn_v_threshold=0.75)))


def test_distribute_membrane_gives_each_neuron_its_own_synapses_and_changes_no_spike():
    model = _model()
    folded = float_passes(model_to_ir(model))
    assert not folded.by_op("token_mean", "sum")
    for conv in folded.by_op("conv2d"):
        readers = folded.consumers(conv.name)
        assert len(readers) == 1 and readers[0].op == "lif", conv.name
    fan_in = {n.name: len(n.inputs) for n in folded.by_op("lif")}
    assert fan_in["blocks.0.attn.shortcut_lif"] == 2          # embedding + RPE
    assert fan_in["blocks.0.mlp.fc1_lif"] == 3                # + attention branch
    assert fan_in["head_lif"] == 4                            # + MLP branch, token-pooled
    x = _images(24, seed=1).double()
    before = run_float(model_to_ir(model), x, record=True, dtype=torch.float64)
    after = run_float(folded, x, record=True, dtype=torch.float64)
    for node in folded.by_op("lif", "threshold"):
        if node.name in before.outputs:
            assert torch.equal(before.outputs[node.name], after.outputs[node.name]), node.name
    assert torch.allclose(before.logits, after.logits, rtol=0, atol=1e-12)


def test_distribute_membrane_leaves_a_spikformer_alone():
    torch.manual_seed(0)
    g = float_passes(model_to_ir(build_model(get_config("test-micro")).eval()))
    again = distribute_membrane(g)
    assert [(n.name, n.op, n.inputs) for n in again] == [(n.name, n.op, n.inputs) for n in g]


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 2)])
def test_a_token_mean_after_a_conv_is_one_full_map_kernel(stride, padding, kernel):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3, kernel, kernel))
    x = torch.from_numpy(rng.normal(size=(4, 3, 7, 7)))
    out = torch.nn.functional.conv2d(x, torch.from_numpy(w), None, stride, padding)
    conv = Node("c", "conv2d", ["x"], tuple(out.shape[1:]), {"weight": w},
                {"stride": [stride, stride], "padding": [padding, padding], "groups": 1})
    full = token_mean_weight(conv, (3, 7, 7))
    want = out.mean(dim=(2, 3))
    got = torch.einsum("bchw,dchw->bd", x, torch.from_numpy(full))
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def quantized():
    model = _model()
    return quantize(float_passes(model_to_ir(model)))


def test_a_lif_fed_by_several_convs_gets_one_integer_grid(quantized):
    layers = quantized.meta["quantization"]["layers"]
    fc1 = layers["blocks.0.mlp.fc1_lif"]
    assert fc1["inputs"] == quantized["blocks.0.mlp.fc1_lif"].inputs
    for name in fc1["inputs"]:
        w = quantized[name].params["weight"]
        assert w.dtype == np.int8 and np.abs(w).max() <= 127
    # the scale is the one of the largest weight of all three convs: some conv reaches 127
    assert max(int(np.abs(quantized[n].params["weight"]).max()) for n in fc1["inputs"]) >= 120


def test_thresholds_keep_reading_integer_counts(quantized):
    assert quantized["blocks.0.attn.kv"].attrs["threshold"] == 2.0
    assert quantized["blocks.0.attn.kv_lif"].attrs["threshold"] == 1.0
    assert [quantized[i].op for i in quantized["blocks.0.attn.mask"].inputs] == \
        ["sumpool2d", "sumpool2d"]


def test_the_reference_runs_the_spike_driven_graph_as_the_numpy_oracle(quantized):
    x = _images(16, seed=2)
    torch_ref = run_reference(quantized, x, record=True)
    oracle = run_numpy_reference(quantized, x, record=True)
    assert np.array_equal(np.asarray(torch_ref.logits), np.asarray(oracle.logits))
    for name, value in oracle.outputs.items():
        assert np.array_equal(np.asarray(torch_ref.outputs[name]), np.asarray(value)), name
    mask = np.asarray(torch_ref.outputs["blocks.0.attn.mask"])
    assert 0 < mask.mean() < 1


def test_energy_counts_each_membrane_term_once_as_the_paper_does(quantized):
    from compiler.reports.flops import synaptic_layers
    paper = {layer.name: layer.macs for layer in synaptic_layers(model_to_ir(_model()))}
    counted = synaptic_layers(quantized)
    assert sum(layer.macs for layer in counted) == sum(paper.values())
    assert len(counted) == len(paper)
