"""Quantization-aware training of the spike-driven family (spikformer_neuro/qat_spike_driven.py):
it trains on the grids the compiler derives, and a snapped checkpoint compiles onto exactly
those grids (the hints are used, every single-conv layer's spikes equal the reference's)."""
import numpy as np
import pytest
import torch

from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.reference import run_reference
from spikformer_neuro.model import build_model
from spikformer_neuro.qat import disable_qat, enable_qat, snap_to_grid
from spikformer_neuro.testing import randomize_batchnorm
from spikformer_neuro.zoo import get_config


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 17, size=(n, 1, 8, 8)) / 16.0).float()


@pytest.fixture(scope="module")
def snapped():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(get_config("sdt-digits-tiny")), 1).eval()
    x = _images(40)
    enable_qat(model, 16)
    with torch.no_grad():
        qat_logits = model(x)
    hints = snap_to_grid(model)
    disable_qat(model)
    graph = model_to_ir(model)
    graph.meta["loihi_hints"] = hints
    return model, hints, quantize(float_passes(graph)), x, qat_logits


def test_every_lif_gets_a_hint_and_the_stream_readers_share_one_grid(snapped):
    model, hints, quantized, _, _ = snapped
    assert set(hints["vth"]) == {n.name for n in quantized.by_op("loihi_lif")}
    stream = {hints["vth"][n] for n in ("sps.rpe_lif", "blocks.0.attn.shortcut_lif",
                                        "blocks.0.mlp.fc1_lif")}
    assert len(stream) == 1
    layers = quantized.meta["quantization"]["layers"]
    assert all(info["limited_by"] == "hint" for info in layers.values())


def test_the_compiled_network_is_the_network_qat_trained(snapped):
    _, _, quantized, x, qat_logits = snapped
    ref = run_reference(quantized, x)
    assert np.array_equal(qat_logits.argmax(1).numpy(), np.asarray(ref.predictions))


def test_snapped_layers_with_one_conv_equal_the_reference_spike_for_spike(snapped):
    model, _, quantized, x, _ = snapped
    ref = run_reference(quantized, x, record=True)
    flt = run_float(float_passes(model_to_ir(model)), x, record=True)
    for i in range(3):   # the SPS stages read the image and exact spikes: nothing to differ
        name = f"sps.stages.{i}.lif"
        assert np.array_equal(np.asarray(ref.outputs[name]), flt.outputs[name].numpy()), name
    for node in quantized.by_op("loihi_lif"):   # deeper: only float rounding at the threshold
        agree = (np.asarray(ref.outputs[node.name]) == flt.outputs[node.name].numpy()).mean()
        assert agree > 0.99, node.name


def test_qat_trains_through_every_grid():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(get_config("sdt-digits-tiny")), 1).train()
    enable_qat(model, 16)
    x, y = _images(8), torch.randint(0, 10, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("sps.proj.conv.weight", "sps.rpe.conv.weight", "blocks.0.attn.proj.conv.weight",
                 "blocks.0.mlp.fc2.conv.weight", "blocks.0.attn.q.conv.weight",
                 "sps.stages.0.conv.weight", "head.weight"):
        assert grads[name] is not None and float(grads[name].abs().sum()) > 0, name


@pytest.mark.parametrize("k, stride, padding, side", [(3, 1, 1, 7), (1, 1, 0, 7), (3, 2, 1, 8),
                                                      (2, 2, 0, 8), (3, 2, 0, 7)])
def test_qat_composes_the_token_mean_kernel_as_the_compiler_does(k, stride, padding, side):
    """QAT's one transposed convolution and the compiler's window loop give the same float64
    kernel (to the last bits: the integers come from it)."""
    from compiler.ir import Node
    from compiler.passes.distribute_membrane import token_mean_weight
    from spikformer_neuro.qat_spike_driven import token_mean_kernel

    w = np.random.default_rng(k + side).normal(size=(5, 3, k, k))
    out = (side + 2 * padding - k) // stride + 1
    conv = torch.nn.Conv2d(3, 5, k, stride=stride, padding=padding)
    node = Node("c", "conv2d", ["x"], (5, out, out), {"weight": w},
                {"stride": [stride, stride], "padding": [padding, padding], "groups": 1})
    ours = token_mean_kernel(torch.from_numpy(w), conv, (side, side), (out, out)).numpy()
    assert np.abs(ours - token_mean_weight(node, (3, side, side))).max() < 1e-15


def test_qat_rounds_the_head_to_the_integers_the_compiler_emits(snapped):
    """The head's token-mean kernels: QAT's rounding (along the positions, from its float64
    composition, on the hinted grid) gives exactly the compiled conv weights."""
    from loihi_numerics.grid import round_along_positions, scale_for_vth
    from spikformer_neuro.qat_spike_driven import token_mean_kernel

    model, hints, quantized, _, _ = snapped
    enable_qat(model, 16)
    stream = model.fake_quant_stream
    lif = model.head_lif
    step = 64 * lif.tau / scale_for_vth(hints["vth"]["head_lif"], lif.v_threshold)
    side = (model.cfg.token_grid,) * 2
    heads = [n for n in quantized.by_op("conv2d") if n.name.startswith("head_lif.from.")]
    assert len(heads) == len(stream.terms) and all(n.attrs["token_mean"] for n in heads)
    with torch.no_grad():
        for node, (module, (w_q, _)) in zip(heads, zip(stream.terms, stream.quantized_terms()[0])):
            k = (token_mean_kernel(w_q.double(), module.conv, side, side) / step).numpy()
            ints = round_along_positions(k.reshape(*k.shape[:2], -1)).reshape(k.shape)
            assert np.array_equal(ints, node.params["weight"].astype(np.int64)), node.name
    disable_qat(model)
