"""Quantization-aware training (spikformer_neuro.qat) and the compiler agree on the Loihi grid."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.float_exec import run_float
from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import quantize, value_bounds
from compiler.pipeline import compile_checkpoint
from compiler.reference import run_reference
from spikformer_neuro.checkpoint import load_checkpoint
from spikformer_neuro.data import load_dataset
from loihi_numerics.grid import WEIGHT_MANT_MAX, bias_exponent
from spikformer_neuro.model import ConvBNLIF, LinearBNLIF
from spikformer_neuro.qat import disable_qat, enable_qat, snap_to_grid
from spikformer_neuro.testing import firing_model as micro_model

from support.paths import DIGITS_CKPT, ROOT
DIGITS = DIGITS_CKPT


def grid_inputs(cfg, batch: int, seed: int) -> torch.Tensor:
    """Inputs the 8-bit encoding represents exactly: k / 255 images, or binary event frames."""
    gen = torch.Generator().manual_seed(seed)
    if cfg.event_input:
        return (torch.rand(batch, *cfg.input_shape(), generator=gen) < 0.4).float()
    return torch.randint(0, 256, (batch, *cfg.input_shape()), generator=gen).float() / 255


def _fake_quant_layers(model):
    return [m.fake_quant for m in model.modules()
            if isinstance(m, (ConvBNLIF, LinearBNLIF)) and m.fake_quant is not None]


CASES = [("test-micro", {}), ("test-micro", {"time_steps": 4}), ("test-micro-events", {})]


@pytest.fixture(scope="module", params=CASES, ids=["micro", "micro-T4", "micro-events"])
def qat_case(request):
    name, overrides = request.param
    model = micro_model(name, **overrides)
    enable_qat(model, None)
    layers = _fake_quant_layers(model)
    grids, ints, bias_ints = {}, {}, {}
    with torch.no_grad():
        for fq in layers:
            w_q, b_q, grid = fq.quantized()
            w_f, _ = fq.folded()
            tau = fq.layer.lif.tau
            step, b_step = grid.weight_step(tau, fq.levels), grid.bias_step(tau)
            grids[fq.name] = (grid, step, b_step, w_q.clone(), b_q.clone(), w_f.clone(),
                              fq.x_max, fq.levels)
            ints[fq.name] = torch.round(w_q / step).to(torch.int64).numpy()
            bias_ints[fq.name] = torch.round(b_q.double() / b_step).to(torch.int64).numpy()
        x = grid_inputs(model.cfg, 64, seed=11)
        qat_logits = model(x)
    hints = snap_to_grid(model)
    disable_qat(model)
    return dict(model=model, layers=[fq.name for fq in layers], grids=grids, ints=ints,
                bias_ints=bias_ints, hints=hints, x=x, qat_logits=qat_logits)


def test_qat_covers_every_conv_lif_layer(qat_case):
    model = qat_case["model"]
    folded = float_passes(model_to_ir(model))
    conv_lifs = [n.name for n in folded.by_op("lif") if folded[n.inputs[0]].op == "conv2d"]
    assert sorted(qat_case["layers"]) == sorted(conv_lifs)
    assert sorted(qat_case["hints"]["vth"]) == sorted(conv_lifs)
    assert qat_case["hints"]["method"] == "qat"
    if not model.cfg.event_input:  # (events models record 255 too; the compiler ignores it)
        assert qat_case["hints"]["input_levels"] == 255
    # QAT sizes each layer's grid for the same integer input range the compiler derives
    q = quantize(folded)
    bounds = value_bounds(q)
    for lif in conv_lifs:
        conv = folded[folded[lif].inputs[0]]
        _, _, _, _, _, _, x_max, levels = qat_case["grids"][lif]
        assert x_max == sum(bounds[i] for i in conv.inputs), lif
        src = q[conv.inputs[0]]
        assert levels == (src.attrs["input_scale"] if src.op == "input"
                          and src.attrs["encoding"] == "graded" else 1.0), lif


def test_qat_forward_weights_lie_on_the_grid(qat_case):
    for name, (grid, step, b_step, w_q, b_q, w_f, _, _) in qat_case["grids"].items():
        n = torch.round(w_q / step)
        # w_q is exactly the float product of an integer and the step, and that integer is
        # the nearest one to the BN-folded float weight (round, not floor or truncation)
        assert torch.equal(n * step, w_q), name
        assert torch.equal(torch.round(w_f / step), n), name
        assert int(n.abs().max()) <= WEIGHT_MANT_MAX
        # the bias: per neuron an integer mantissa (13 bit) times the unit step * 2^exp, with
        # exp the compiler's (smallest) exponent for that integer
        b_int = [int(v) for v in torch.round(b_q.double() / b_step).tolist()]
        exps = torch.tensor([float(bias_exponent(abs(v))) for v in b_int], dtype=b_q.dtype)
        unit = b_step * torch.pow(2.0, exps)
        mant = torch.round(b_q / unit)
        assert torch.equal(mant * unit, b_q), name
        assert int(mant.abs().max()) <= 4095
        assert [int(m) << int(e) for m, e in zip(mant.tolist(), exps.tolist())] == b_int, name
        assert qat_case["hints"]["vth"][name] == grid.vth


def test_snapped_model_reproduces_the_qat_forward(qat_case):
    model, x = qat_case["model"], qat_case["x"]
    with torch.no_grad():
        plain = model(x)
    assert torch.equal(plain.argmax(1), qat_case["qat_logits"].argmax(1))
    assert torch.allclose(plain, qat_case["qat_logits"], atol=1e-4)


def test_compiler_reproduces_the_qat_integers_exactly(qat_case):
    model = qat_case["model"]
    g = float_passes(model_to_ir(model))
    g.meta["loihi_hints"] = qat_case["hints"]
    q = quantize(g)
    layers = q.meta["quantization"]["layers"]
    for name in qat_case["layers"]:
        grid = qat_case["grids"][name][0]
        info = layers[name]
        assert info["limited_by"] == "hint" and info["scale"] == grid.scale
        assert int(q[name].params["vth"]) == grid.vth
        w = q[info["input"]].params["weight"]
        assert np.array_equal(w.reshape(qat_case["ints"][name].shape), qat_case["ints"][name]), name
        eff_bias = (q[name].params["bias_mant"] << q[name].params["bias_exp"]).reshape(-1)
        assert np.array_equal(eff_bias, qat_case["bias_ints"][name]), name


def test_float_model_and_reference_agree_after_qat(qat_case):
    model, x = qat_case["model"], qat_case["x"]
    float_graph = model_to_ir(model)
    g = float_passes(float_graph)
    g.meta["loihi_hints"] = qat_case["hints"]
    q = quantize(g)
    lifs = [n.name for n in q.by_op("loihi_lif")]
    f = run_float(float_graph, x, record=lifs)
    r = run_reference(q, x, record=lifs)
    report = {}
    for name in lifs:
        a = f.outputs[name].numpy().astype(np.int64)
        b = r.outputs[name]
        report[name] = float((a == b).mean())
        assert a.any(), f"{name} never fires: the comparison would be vacuous"
    print("per-layer spike agreement float vs reference:",
          {k: round(v, 6) for k, v in report.items()})
    for name, agreement in report.items():
        assert agreement >= 0.999, (name, agreement)
    assert np.array_equal(f.logits.argmax(1).numpy(), r.predictions)
    # the integer logits are the float logits on the head's grid: s_h * T * N * float logits
    s_h = q["head"].attrs["scale"]
    tn = model.cfg.time_steps * model.cfg.num_tokens
    assert np.allclose(r.logits, f.logits.double().numpy() * s_h * tn, rtol=1e-4, atol=1e-2)


# -- spikeform-train --init ... --qat, then compile -----------------------------------------------

@pytest.fixture(scope="module")
def qat_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "m.pth"
    cmd = [sys.executable, "-m", "spikeform_cli.train", "--config", "digits-tiny",
           "--dataset", "digits", "--init", str(DIGITS), "--qat", "--train-subset", "32",
           "--test-subset", "32", "--epochs", "1", "--batch-size", "32", "--threads", "1",
           "-q", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_qat_training_run_writes_hints_that_compile_on_the_grid(qat_checkpoint):
    ckpt = load_checkpoint(qat_checkpoint)
    hints = ckpt.quantization
    assert hints is not None and hints["method"] == "qat"
    assert hints["input_levels"] == 16  # scikit-learn digits: k / 16
    assert all(isinstance(v, int) and v >= 1 for v in hints["vth"].values())
    assert checkpoint_to_ir(ckpt).meta["loihi_hints"] == hints
    train_ds, _ = load_dataset("digits", "train", img_size=8, time_steps=ckpt.config.time_steps)
    calib = torch.stack([train_ds[i][0] for i in range(64)])
    compiled = compile_checkpoint(ckpt, calib)
    q = compiled.quantized
    assert q.input_node.attrs["input_scale"] == 16.0
    layers = q.meta["quantization"]["layers"]
    conv_lifs = [n for n, info in layers.items() if q[info["input"]].op == "conv2d"]
    assert sorted(conv_lifs) == sorted(hints["vth"])
    for name in conv_lifs:
        assert layers[name]["limited_by"] == "hint", name
        assert int(q[name].params["vth"]) == hints["vth"][name]
        assert layers[name]["weight_error"] < 1e-6  # the folded weights already lie on the grid
    assert layers["blocks.0.attn.attn_lif"]["limited_by"] == "attention gain"
    # and the compiled network reproduces the float model on test digits
    test_ds, _ = load_dataset("digits", "test", img_size=8, time_steps=ckpt.config.time_steps)
    x = torch.stack([test_ds[i][0] for i in range(32)])
    lifs = [n.name for n in q.by_op("loihi_lif")]
    f = run_float(compiled.float_graph, x, record=lifs)
    r = run_reference(q, x, record=lifs)
    assert np.array_equal(f.logits.argmax(1).numpy(), r.predictions)
    for name in lifs:
        agreement = (f.outputs[name].numpy().astype(np.int64) == r.outputs[name]).mean()
        assert agreement >= 0.999, (name, agreement)
