"""snntorch -> NIR (snntorch's own export_to_nir) -> our import: the same spikes, exactly.

a. Random Linear->Leaky MLPs and a Conv2d->Leaky CNN (reset "zero", per-neuron beta and
   threshold tensors, as snntorch's exporter needs): compiler.float_exec's spikes of every
   LIF equal snntorch's own output spikes bit for bit, on real digits images.
b. A small snntorch MLP trained on digits (tests/fixtures/nir/snntorch_digits_mlp.nir, made by
   tests/fixtures/nir/make_snntorch_digits_mlp.py) -> import -> quantize -> reference
   executor: predictions against snntorch's on the whole digits test split (post-training
   quantization: 8-bit rounding changes a few).
c. The same MLP fine-tuned onto the Loihi grid the compiler chooses for it
   (tests/fixtures/nir/snntorch_digits_mlp_grid.nir, make_snntorch_digits_mlp_grid.py): the
   compiler reproduces its weights exactly, and reference and snntorch agree on every spike
   and prediction.
"""
from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir
from torch import nn

from compiler.calibration import detect_input_grid
from compiler.float_exec import run_float
from compiler.nir.conventions import SNNTORCH_DT, snntorch_beta
from compiler.nir.foreign import foreign_nir_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import QuantizeOptions, quantize
from compiler.reference import run_reference
from spikformer_neuro.data import load_dataset
from support.nir_interop import dequantised
from support.paths import NIR_FIXTURES

FIXTURE = NIR_FIXTURES / "snntorch_digits_mlp.nir"
GRID_FIXTURE = FIXTURE.with_name("snntorch_digits_mlp_grid.nir")
T = 8


def leaky(beta: float, shape) -> "snn.Leaky":
    # per-neuron tensors: snntorch's exporter rejects scalar beta/threshold
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape),
                     init_hidden=True, reset_mechanism="zero")


def snntorch_spikes(net: nn.Module, x: torch.Tensor, steps: int):
    """Every Leaky's output spikes, [T, B, ...], the image x presented at every step."""
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, snn.Leaky)]
    rec = {n: [] for n, _ in layers}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rec[n].append(o.detach().clone()))
             for n, m in layers]
    try:
        snn_utils.reset(net)
        with torch.no_grad():
            for _ in range(steps):
                net(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.stack(v) for n, v in rec.items()}


def digits(split: str, n: int = 0):
    ds, _ = load_dataset("digits", split)
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    ys = torch.tensor([ds[i][1] for i in range(len(ds))])
    return (xs[:n], ys[:n]) if n else (xs, ys)


def mlp(seed: int, hidden: int, betas, gain: float) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), leaky(betas[0], (hidden,)),
                        nn.Linear(hidden, 10), leaky(betas[1], (10,)))
    with torch.no_grad():   # larger weights than torch's default init: lively spiking
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
    return net


def cnn(seed: int, channels: int, betas) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), leaky(betas[0], (channels, 8, 8)),
                        nn.Flatten(), nn.Linear(channels * 64, 10), leaky(betas[1], (10,)))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[3].weight.mul_(6.0)
    return net


def compare_float(net: nn.Module, x: torch.Tensor, steps: int = T):
    """Import snntorch's NIR export, run both, return (graph, {lif: (ours, theirs)})."""
    graph = export_to_nir(net, x[:1], ignore_dims=[0])
    ir = foreign_nir_to_ir(graph, convention="snntorch", time_steps=steps, dataset="digits",
                           source="test-net")
    theirs = snntorch_spikes(net, x, steps)
    lifs = [n.name for n in ir.by_op("lif")]
    res = run_float(ir, x, record=lifs)
    pairs = {}
    for name in lifs:   # NIR node names are the Sequential's indices
        ours = res.outputs[name]
        other = theirs[name].reshape(ours.shape)
        pairs[name] = (ours, other)
    return ir, pairs, res


@pytest.mark.parametrize("betas", [(0.9, 0.8), (1 - 256 / 4096, 1 - 512 / 4096), (0.5, 0.95)])
def test_mlp_float_spikes_equal_snntorch(betas):
    x, _ = digits("test", 120)
    ir, pairs, res = compare_float(mlp(0, 32, betas, gain=3.0), x)
    assert [n.op for n in ir] == ["input", "conv2d", "lif", "conv2d", "lif", "token_time_mean",
                                  "affine", "output"]
    assert ir["1"].params["weight"].shape == (32, 1, 8, 8)   # Flatten + Linear = full conv
    for name, (ours, theirs) in pairs.items():
        assert torch.equal(ours, theirs), name
        rate = float(ours.mean())
        assert 0.02 < rate < 0.9, (name, rate)   # the comparison is not vacuous
    # the prediction is the argmax of output spike counts
    counts = pairs["4"][1].sum(0).reshape(len(x), 10)
    assert torch.equal(res.logits.argmax(1), counts.argmax(1))


def test_cnn_float_spikes_equal_snntorch():
    x, _ = digits("test", 60)
    ir, pairs, _ = compare_float(cnn(1, 4, (0.9, 0.75)), x)
    assert ir["0"].shape == (4, 8, 8) and ir["3"].params["weight"].shape == (10, 4, 8, 8)
    for name, (ours, theirs) in pairs.items():
        assert torch.equal(ours, theirs), name
        assert 0.02 < float(ours.mean()) < 0.9, name


def test_export_file_round_trip_keeps_the_exact_beta(tmp_path):
    """Through nir.write/nir.read the float32 parameters survive, and the importer recovers
    the float32 beta snntorch ran (tau = dt/(1-beta) is stored, beta is not)."""
    net = mlp(2, 16, (0.9, 0.8), gain=3.0)
    x, _ = digits("test", 40)
    path = tmp_path / "mlp.nir"
    nir.write(path, export_to_nir(net, x[:1], ignore_dims=[0]))
    graph = nir.read(path)
    assert graph.nodes["2"].tau.dtype == np.float32
    assert snntorch_beta(graph.nodes["2"].tau[0], SNNTORCH_DT) == np.float32(0.9)
    ir = foreign_nir_to_ir(graph, convention="snntorch", time_steps=T, dataset="digits",
                           source=path.name)
    lif = ir["2"].attrs
    assert np.float32(1 - 1 / lif["tau"]) == np.float32(0.9) and lif["r"] == lif["tau"]
    assert lif["spike_if"] == ">" and lif["v_threshold"] == 1.0
    assert ir.time_steps == T and ir.meta["num_classes"] == 10
    assert ir.meta["dataset"] == "digits" and ir.meta["model"] == "nir:mlp.nir"
    theirs = snntorch_spikes(net, x, T)
    res = run_float(ir, x, record=["2", "4"])
    for name in ("2", "4"):
        assert torch.equal(res.outputs[name], theirs[name].reshape(res.outputs[name].shape))


# -- b. trained on digits, quantized, integer reference ------------------------------------------

def fixture_net(graph) -> nn.Module:
    """The snntorch network the fixture was exported from, rebuilt from the file's weights."""
    beta1 = float(snntorch_beta(graph.nodes["2"].tau[0], SNNTORCH_DT))
    beta2 = float(snntorch_beta(graph.nodes["4"].tau[0], SNNTORCH_DT))
    hidden = graph.nodes["1"].weight.shape[0]
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), leaky(beta1, (hidden,)),
                        nn.Linear(hidden, 10), leaky(beta2, (10,)))
    with torch.no_grad():
        for i in (1, 3):
            net[i].weight.copy_(torch.from_numpy(graph.nodes[str(i)].weight))
            net[i].bias.copy_(torch.from_numpy(graph.nodes[str(i)].bias))
    return net


def test_trained_mlp_quantized_reference_matches_snntorch():
    graph = nir.read(FIXTURE)
    steps = int(graph.metadata["time_steps"])
    net = fixture_net(graph)
    # the fixture's betas lie on Loihi's decay grid: dv = 4096 (1 - beta) is an integer
    for name in ("2", "4"):
        dv = 4096 * (1 - float(snntorch_beta(graph.nodes[name].tau[0], SNNTORCH_DT)))
        assert dv == round(dv), (name, dv)
    x, y = digits("test")
    ir = foreign_nir_to_ir(graph, convention="snntorch", time_steps=steps, dataset="digits",
                           source=FIXTURE.name)
    theirs = snntorch_spikes(net, x, steps)
    snn_pred = theirs["4"].sum(0).argmax(1)
    ours = run_float(ir, x, record=["2", "4"])
    for name in ("2", "4"):
        assert torch.equal(ours.outputs[name], theirs[name].reshape(ours.outputs[name].shape))
    folded, q = quantized_on_digits(ir, calibration_samples=200)
    for name in ("2", "4"):
        assert q.meta["quantization"]["layers"][name]["decay_exact"] is True
        assert q[name].attrs["spike_if"] == ">"
    ref, ref_pred, differ, spikes_differ = reference_vs_snntorch(q, x, y, theirs, snn_pred)
    assert int((snn_pred == y).sum()) == int((ref_pred == y).sum()) == 342   # 95.0 % both
    # Measured on the committed fixture: 6 of 360 predictions and 1605 / 239 of
    # 138240 / 28800 spikes differ. Why:
    # the same float network with the ROUNDED integer weights and biases (dequantised, float64)
    # matches the reference on every hidden spike and all but 2 output spikes (Loihi's
    # truncating decay, v * (4096 - dv) >> 12) and on every prediction; so every prediction
    # difference comes from the 8-bit weight rounding (layer '2' is limited by the 24-bit
    # state bound: 1.8 % weight error), none from the decay (exact: dv = 512, 1024) or ties.
    assert (differ, spikes_differ) == (6, {"2": 1605, "4": 239})
    deq = dequantised(folded, q)
    f_deq = run_float(deq, x, record=["2", "4"], dtype=torch.float64)
    assert {n: int((ref.outputs[n] != f_deq.outputs[n].numpy()).sum()) for n in ("2", "4")} \
        == {"2": 0, "4": 2}
    assert np.array_equal(ref.predictions, f_deq.logits.argmax(1).numpy())



def test_grid_trained_mlp_reference_predictions_equal_snntorch():
    """The same MLP fine-tuned onto the Loihi grid the compiler chooses for it
    (tests/fixtures/nir/snntorch_digits_mlp_grid.nir, made by make_snntorch_digits_mlp_grid.py):
    the compiler finds the file's weights on its grid exactly, and the reference executor
    predicts what snntorch predicts on every digits test image."""
    graph = nir.read(GRID_FIXTURE)
    steps = int(graph.metadata["time_steps"])
    net = fixture_net(graph)
    x, y = digits("test")
    ir = foreign_nir_to_ir(graph, convention="snntorch", time_steps=steps, dataset="digits",
                           source=GRID_FIXTURE.name)
    folded, q = quantized_on_digits(ir, calibration_samples=256)  # spikeform-compile's default
    # A fixed point: the scale S the quantizer chooses from the file's weights is the one
    # they were snapped to, so its integers, back in float units, ARE the file's float32
    # weights and biases (no rounding left for the quantizer to do).
    deq = dequantised(folded, q)
    for conv in ("1", "3"):
        for key in ("weight", "bias"):
            exact = deq[conv].params[key]
            stored = getattr(graph.nodes[conv], key).reshape(exact.shape)
            assert np.array_equal(exact.astype(np.float32), stored), (conv, key)
    layers = q.meta["quantization"]["layers"]
    assert {n: (layers[n]["vth"], layers[n]["limited_by"]) for n in ("2", "4")} == \
        {"2": (1561, "state"), "4": (149, "weights")}
    for name in ("2", "4"):
        assert layers[name]["decay_exact"] is True and q[name].attrs["spike_if"] == ">"
    theirs = snntorch_spikes(net, x, steps)
    snn_pred = theirs["4"].sum(0).argmax(1)
    ref, ref_pred, differ, spikes_differ = reference_vs_snntorch(q, x, y, theirs, snn_pred)
    assert differ == 0
    assert int((snn_pred == y).sum()) == int((ref_pred == y).sum()) == 343   # 95.28 % both
    # Not one spike differs either (138240 hidden, 28800 output spike values, rates 27 % and
    # 9.5 %): with the weights on the grid, what remains is Loihi's truncating decay
    # (v * (4096 - dv) >> 12 against snntorch's float beta * v), less than one unit per step,
    # so under 1 / (1 - beta) = 8 and 4 units in all, against thresholds 64 vth = 99904 and
    # 9536; it flipped no spike on these images.
    assert spikes_differ == {"2": 0, "4": 0}
    assert 0.2 < float(ref.outputs["2"].mean()) < 0.4 and 0.05 < float(ref.outputs["4"].mean())


def quantized_on_digits(ir, calibration_samples: int):
    """(folded float graph, quantized graph) with the input grid detected on training images
    (the digits' 16 levels), as spikeform-compile does."""
    folded = float_passes(ir)
    xtrain, _ = digits("train", calibration_samples)
    levels = detect_input_grid(folded, xtrain)
    assert levels == 16
    return folded, quantize(folded, None, QuantizeOptions(input_levels=levels))


def reference_vs_snntorch(q, x, y, theirs, snn_pred):
    """The reference executor on ``x`` against snntorch's spikes ``theirs`` and predictions:
    (result, its predictions, predictions that differ, spike values that differ per layer)."""
    ref = run_reference(q, x, record=["2", "4"])
    ref_pred = torch.from_numpy(ref.predictions)
    spikes_differ = {n: int((ref.outputs[n] != theirs[n].reshape(ref.outputs[n].shape).numpy())
                            .sum()) for n in ("2", "4")}
    differ = int((ref_pred != snn_pred).sum())
    print(f"snntorch accuracy {float((snn_pred == y).float().mean()):.4f}, reference accuracy "
          f"{float((ref_pred == y).float().mean()):.4f}, predictions differing {differ}/{len(y)}"
          f", spikes differing {spikes_differ}")
    return ref, ref_pred, differ, spikes_differ
