"""Reports: FLOP/SOP counting against hand counts, the paper's 8-512 arithmetic, the membrane
record, and spikeform-report end to end on the shipped digits checkpoint."""
import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from loihi_numerics import fixed_point as fx
from compiler.frontend import model_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.reference import run_reference
from spikeform_cli.report import main as report_main
from compiler.reports.activity import ActivityMeter, attention_maps
from compiler.reports.energy import EnergyMeter, energy_summary, paper_energy_mJ
from compiler.reports.flops import first_conv, synaptic_layers
from compiler.reports.paper import counting_check, implied, zoo_flops
from spikformer_neuro.testing import firing_model, random_input

from support.paths import DIGITS_CKPT, ROOT
DIGITS = DIGITS_CKPT


@pytest.fixture(scope="module")
def micro(micro_quantized):
    """test-micro quantized, with a batch (conftest.py)."""
    return micro_quantized


# -- FLOPs ----------------------------------------------------------------------------------
def test_macs_of_test_micro_by_hand(micro):
    graph, _ = micro
    macs = {layer.name: layer.macs for layer in synaptic_layers(graph)}
    n = 16  # tokens
    expected = {
        "sps.stages.0.conv": 2 * 64 * 1 * 9, "sps.stages.1.conv": 4 * 64 * 2 * 9,
        "sps.stages.2.conv": 8 * 64 * 4 * 9, "sps.stages.3.conv": 16 * 64 * 8 * 9,
        "sps.rpe.conv": 16 * n * 16 * 9,
        "blocks.0.attn.q.linear": 16 * n * 16, "blocks.0.attn.k.linear": 16 * n * 16,
        "blocks.0.attn.v.linear": 16 * n * 16, "blocks.0.attn.proj.linear": 16 * n * 16,
        "blocks.0.attn.attention.qk": 2 * n * n * 8, "blocks.0.attn.attention.av": 2 * n * n * 8,
        "blocks.0.mlp.fc1.linear": 64 * n * 16, "blocks.0.mlp.fc2.linear": 16 * n * 64,
        "head": 16 * 4}
    assert macs == expected
    assert first_conv(synaptic_layers(graph)).name == "sps.stages.0.conv"


def test_sops_equal_event_counts(micro):
    """rate x T x MACs equals the synaptic events an event-driven core performs: every input
    spike of a stride-1 'same' conv reaches C_out * k^2 synapses, of a linear D_out, a Q spike
    N keys, a V spike N queries; the head reads token/time sums."""
    graph, x = micro
    meter = EnergyMeter(graph)
    ref = run_reference(graph, x, record=meter.record_names)
    meter.add(ref.outputs)
    summary = meter.summary()
    batch, t_steps = x.shape[0], 2
    spikes = {n: Fraction(int(ref.outputs[n].sum())) for n in meter.record_names}
    fan_out = {"sps.stages.1.conv": 4 * 9, "sps.stages.2.conv": 8 * 9, "sps.stages.3.conv": 16 * 9,
               "sps.rpe.conv": 16 * 9, "blocks.0.attn.q.linear": 16,
               "blocks.0.attn.k.linear": 16, "blocks.0.attn.v.linear": 16,
               "blocks.0.attn.proj.linear": 16, "blocks.0.attn.attention.qk": 16,
               "blocks.0.attn.attention.av": 16, "blocks.0.mlp.fc1.linear": 64,
               "blocks.0.mlp.fc2.linear": 16}
    by_name = {r["name"]: r for r in summary["layers"]}
    layers = {layer.name: layer for layer in synaptic_layers(graph)}
    for name, out in fan_out.items():
        (src,) = layers[name].inputs
        events = spikes[src] * out / batch
        assert events > 0, name
        # rate is a float quotient: the 1e-12 relative slack is float rounding only, a
        # counting error would be off by a whole fan-out factor
        assert math.isclose(by_name[name]["sops"], float(events), rel_tol=1e-12), name
    head_events = spikes["blocks.0.mlp_residual"] * 4 / (batch * 16)  # K classes, mean over N
    assert math.isclose(by_name["head"]["sops"], float(head_events), rel_tol=1e-12)
    assert summary["flops_first_conv"] == 2 * 64 * 9 * t_steps
    assert summary["sops"] == sum(r["sops"] for r in summary["layers"] if "sops" in r)
    assert summary["energy_mJ"] == pytest.approx(
        (4.6 * summary["flops_first_conv"] + 0.9 * summary["sops"]) * 1e-9, rel=1e-12)


def test_event_input_first_conv_counts_as_sops():
    graph = quantize(float_passes(model_to_ir(firing_model("test-micro-events"))))
    layers = synaptic_layers(graph)
    assert not any(layer.analog for layer in layers)
    meter = EnergyMeter(graph)
    assert "input" in meter.record_names
    x = (torch.rand(3, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    meter.add(run_reference(graph, x, record=meter.record_names).outputs)
    s = meter.summary()
    assert s["flops_first_conv"] == 0 and s["layers"][0]["input_rate"] > 0


def test_event_counts_are_events_for_the_first_conv():
    """Event-count input: each counted event is one accumulate per synapse, so the first
    conv's SOPs are (total count) x fan-out, not MACs."""
    model = firing_model("test-micro-events", event_max_count=9)
    graph = quantize(float_passes(model_to_ir(model)))
    layers = synaptic_layers(graph)
    assert not any(layer.analog for layer in layers)
    meter = EnergyMeter(graph)
    assert "input" in meter.record_names
    x = random_input(model.cfg, 3, seed=4)
    assert x.max() > 1
    meter.add(run_reference(graph, x, record=meter.record_names).outputs)
    s = meter.summary()
    first = s["layers"][0]
    assert first["name"] == "sps.stages.0.conv" and s["flops_first_conv"] == 0
    fan_out = 2 * 9            # the paper's count: 3x3 kernel x 2 stem channels (D/8)
    events = Fraction(int(x.sum())) * fan_out / 3
    assert math.isclose(first["sops"], float(events), rel_tol=1e-12)


def test_missing_rate_is_a_clear_error(micro):
    graph, _ = micro
    with pytest.raises(ValueError, match="sps.stages.0.lif"):
        energy_summary(graph, {})


# -- the paper's figures --------------------------------------------------------------------
def test_imagenet_8_512_counts_from_the_model():
    f = zoo_flops("imagenet-8-512")
    assert f.first_conv_macs == 224 * 224 * 64 * 3 * 9
    n, d = 14 * 14, 512
    convs = 112 * 112 * 128 * 64 * 9 + 56 * 56 * 256 * 128 * 9 + 28 * 28 * 512 * 256 * 9 \
        + n * d * d * 9
    per_block_linear = 4 * n * d * d + 2 * n * d * 4 * d
    assert f.other_macs == {"conv": convs, "linear": 8 * per_block_linear,
                            "attention": 8 * 2 * n * n * d, "head": d * 1000}


def test_paper_8_512_energy_needs_macs_times_t():
    check = counting_check(224 * 224 * 64 * 3 * 9)
    assert {k for k, v in check.items() if v["consistent"]} == {"MACs x T"}
    # exact arithmetic: 0.9 pJ x 11.09 G + 4.6 pJ x 86,704,128 x 4 = 11.57636... mJ
    assert paper_energy_mJ(Fraction("11.09e9"), 86_704_128, 4) == Fraction(
        9 * 1109 * 10 ** 7 + 46 * 86_704_128 * 4, 10 ** 10)


def test_paper_energies_imply_rates_between_0_and_1():
    for name in ("imagenet-8-384", "imagenet-8-768"):
        rate = implied(zoo_flops(name))["implied_mean_rate"]
        assert 0.2 < rate < 0.5, (name, rate)


# -- membrane record ------------------------------------------------------------------------
def test_lif_voltage_before_reset_matches_lif_step():
    rng = np.random.default_rng(0)
    p = fx.LifParams(du=4095, dv=2048, vth=1000, bias_mant=rng.integers(-4096, 4096, 500),
                     bias_exp=rng.integers(0, 8, 500))
    u = rng.integers(-2 ** 23 + 1, 2 ** 23, (4, 500))
    v = rng.integers(-2 ** 23 + 1, 2 ** 23, (4, 500))
    a_in = rng.integers(-2 ** 17, 2 ** 17, (4, 500))  # saturates v in both directions
    u2, v2, s = fx.lif_step(u, v, a_in, p)
    v_pre = fx.lif_voltage(v, u2, p)
    assert np.array_equal(s, v_pre > p.effective_vth)
    assert np.array_equal(v2[~s], v_pre[~s])
    assert (np.abs(v_pre) == 2 ** 23 - 1).any() and s.any() and (~s).any()


def test_membrane_record_leaves_results_unchanged(micro):
    graph, x = micro
    plain = run_reference(graph, x, record=True)
    rec = run_reference(graph, x, record=True, record_membrane=True)
    assert np.array_equal(plain.logits, rec.logits)
    assert plain.outputs.keys() == rec.outputs.keys()
    assert all(np.array_equal(plain.outputs[k], rec.outputs[k]) for k in plain.outputs)
    for node in graph.by_op("loihi_lif"):
        vth = int(node.params["vth"]) << 6
        assert np.array_equal(rec.outputs[node.name] == 1, rec.voltages[node.name] > vth), node.name
    with pytest.raises(ValueError, match="not loihi_lif"):
        run_reference(graph, x, record_membrane=["sps.residual"])


def test_activity_meter_and_attention_maps(micro):
    graph, x = micro
    meter = ActivityMeter(graph)
    meter.add(run_reference(graph, x, record=meter.record_names,
                            record_membrane=meter.membrane_names))
    layers = meter.layers()
    assert "input" not in layers  # graded image levels are no firing rate
    q = layers["blocks.0.attn.q.lif"]
    assert 0 < q["rate_reference"] < 1 and q["membrane"]["v_max_abs"] > q["membrane"]["threshold"]
    assert layers["sps.residual"]["rate_reference"] == pytest.approx(
        layers["sps.pool3"]["rate_reference"] + layers["sps.rpe.lif"]["rate_reference"], rel=1e-12)
    qs = (np.random.default_rng(1).random((2, 4, 2, 2)) < 0.5).astype(np.int64)
    ks = (np.random.default_rng(2).random((2, 4, 2, 2)) < 0.5).astype(np.int64)
    maps = attention_maps(qs, ks, num_heads=2)
    assert maps.shape == (2, 2, 4, 4)
    # head 1, step 0, tokens (row 0, col 1) and (row 1, col 0): channels 2..3 in common
    assert maps[0, 1, 1, 2] == int((qs[0, 2:, 0, 1] * ks[0, 2:, 1, 0]).sum())


# -- one measurement for spikeform-compile and spikeform-report --------------------------------
@pytest.fixture(scope="module")
def micro_float():
    """test-micro's float graph (as a checkpoint gives it), quantized, with labelled batches."""
    float_graph = model_to_ir(firing_model("test-micro"))
    graph = quantize(float_passes(float_graph))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = np.array([0, 1, 2, 3, 1, 0])
    return float_graph, graph, x, y


def test_one_measurement_for_both_reports(micro_float):
    """compiler.reports.measure serves spikeform-compile (accuracies, per-LIF agreement and
    rates, energy) and spikeform-report (also membrane use, float-model energy, attention
    maps): what both report is the same whichever extras are asked for, and equals counting
    the spikes by hand."""
    from compiler.float_exec import run_float
    from compiler.reports.measure import measure

    float_graph, graph, x, y = micro_float
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    full = measure(graph, float_graph, batches)
    lean = measure(graph, float_graph, batches, membrane=False, float_energy=False,
                   attention=False)
    assert full.energy_float is not None and full.attention
    assert lean.energy_float is None and lean.attention == {}
    assert any("membrane" in i for i in full.activity.layers().values())
    assert all("membrane" not in i for i in lean.activity.layers().values())
    for key in ("samples", "labelled", "correct_reference", "correct_float",
                "prediction_mismatches", "has_float"):
        assert getattr(lean, key) == getattr(full, key), key
    assert lean.lif_layers() == full.lif_layers()
    assert lean.energy_reference.summary() == full.energy_reference.summary()
    assert lean.seconds_reference > 0 and lean.seconds_float > 0

    lifs = [n.name for n in graph.by_op("loihi_lif")]
    flt = run_float(float_graph, x, record=lifs)
    ref = run_reference(graph, x, record=lifs)
    expected = {}
    for name in lifs:
        a, b = flt.outputs[name].numpy().astype(np.int64), ref.outputs[name]
        expected[name] = {"agreement": int((a == b).sum()) / a.size,
                          "rate_float": int(a.sum()) / a.size,
                          "rate_reference": int(b.sum()) / b.size}
    assert lean.lif_layers() == expected
    fp, rp = flt.logits.argmax(1).numpy(), ref.predictions
    assert lean.samples == lean.labelled == 6
    assert lean.accuracy_float() == int((fp == y).sum()) / 6
    assert lean.accuracy_reference() == int((rp == y).sum()) / 6
    assert lean.prediction_mismatches == int((fp != rp).sum())

    # without a float model (an artifact) or labels
    alone = measure(graph, None, [(x, None)], membrane=False)
    assert not alone.has_float and alone.lif_layers() == {} and alone.accuracy_float() is None
    assert alone.accuracy_reference() is None and alone.samples == 6
    assert alone.energy_reference.summary() == full.energy_reference.summary()


def test_compile_report_from_the_measurement(micro_float):
    """spikeform-compile's report.json is assembled in the compiler from the pipeline's
    results, the measurement and the Lava check as plain numbers."""
    from compiler.pipeline import Source, compile_graph
    from compiler.reports.compile_report import (LavaVerification, compile_report,
                                                 nir_export_report)
    from compiler.reports.measure import measure

    float_graph, _, x, y = micro_float
    compiled = compile_graph(float_graph, x)
    src = Source(Path("m.pth"), "checkpoint", float_graph, "digits", 8, 2, "test-micro")
    m = measure(compiled.quantized, compiled.float_graph, [(x, y)], membrane=False,
                float_energy=False, attention=False)
    lava = LavaVerification(samples=6, accuracy=0.5, compared_with="reference",
                            spike_mismatches=0, spikes_compared=1000, logit_mismatches=0,
                            prediction_mismatches=0, steps=20, ms_per_step=1.0,
                            samples_per_s=10.0, start_s=0.5, run_s=0.6,
                            layer_mismatches={"sps.stages.0.lif": 0})
    report = compile_report(compiled, src, m, lava, target="lava-sim", artifact="art",
                            run_seconds=2.0)
    assert set(report) == {"target", "source", "checkpoint", "model", "dataset", "artifact",
                           "samples", "accuracy", "mismatches", "lava", "float_vs_reference",
                           "timing_s", "quantization", "input_encoding", "network", "energy",
                           "layers", "nir_assumption", "loihi"}
    assert report["source"] == {"kind": "checkpoint", "path": "m.pth"}
    assert report["checkpoint"] == "m.pth" and report["model"] == "test-micro"
    assert report["samples"] == 6 and report["artifact"] == "art"
    assert report["accuracy"] == {"float": m.accuracy_float(),
                                  "reference": m.accuracy_reference(), "lava": 0.5}
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["spikes_compared"] == 1000 and report["lava"]["start_s"] == 0.5
    assert report["float_vs_reference"] == {"prediction_mismatches": m.prediction_mismatches}
    assert report["timing_s"]["run"] == 2.0 and report["timing_s"]["compile"] > 0
    energy = m.energy_reference.summary()
    assert report["energy"] == {k: v for k, v in energy.items() if k != "layers"}
    quant = compiled.quantized.meta["quantization"]
    assert "layers" not in report["quantization"] and set(report["layers"]) == set(quant["layers"])
    for name, info in report["layers"].items():
        assert "input" not in info
        assert info == {**{k: v for k, v in quant["layers"][name].items() if k != "input"},
                        **m.lif_layers().get(name, {})}
    json.dumps(report, allow_nan=False)  # JSON as it is

    # nothing verified: no accuracies, no energy, the quantizer's record only
    bare = compile_report(compiled, src, None, None, target="reference", artifact="art",
                          run_seconds=0.0)
    assert bare["samples"] == 0 and bare["lava"] is None and bare["energy"] is None
    assert set(bare["accuracy"].values()) == {None}
    assert set(bare["mismatches"].values()) == {None}
    assert bare["layers"]["sps.stages.0.lif"].get("agreement") is None
    # Lava vs the reference fails on any logit; vs the float executor on any prediction
    assert lava.exact and lava.decisive == "logit_mismatches"
    lava.logit_mismatches = 1
    assert not lava.exact
    lava.compared_with = "float_exec"
    assert lava.exact and lava.decisive == "prediction_mismatches"
    lava.prediction_mismatches = 1
    assert not lava.exact
    export = nir_export_report(src, target="nir", nir_file="m.nir", export={"edges": 3},
                               seconds=0.25)
    assert export == {"target": "nir", "source": {"kind": "checkpoint", "path": "m.pth"},
                      "checkpoint": "m.pth", "model": "test-micro", "dataset": "digits",
                      "nir_file": "m.nir", "export": {"edges": 3},
                      "timing_s": {"compile": 0.25}}


# -- spikeform-report -----------------------------------------------------------------------
def _report(args, **kw):
    return subprocess.run([sys.executable, "-m", "spikeform_cli.report", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def test_cli_checkpoint_and_artifact(tmp_path):
    out = tmp_path / "digits.report"
    proc = _report([DIGITS, "--samples", 12, "--batch-size", 5, "-o", out, "-q"])
    assert proc.returncode == 0, proc.stderr
    assert "energy/inference" in proc.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["samples"] == 12 and rep["source"]["kind"] == "checkpoint"
    for png in ("firing_rates.png", "qkv_rates.png", "attention_maps.png",
                "quantization_error.png", "membrane.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in (out / "report.md").read_text()
    e = rep["energy"]["reference"]
    assert e["flops_first_conv"] == 4 * 8 * 8 * 8 * 9 and e["sops"] > 0
    assert set(rep["energy"]["float"]) == set(e)
    layers = rep["activity"]["layers"]
    assert all(0 < layers[n]["rate_reference"] < 1 for n in layers if layers[n]["op"] != "sum")
    assert all(layers[n]["membrane"]["v_max_fraction"] < 1 for n in layers
               if layers[n]["op"] == "loihi_lif")
    assert rep["resources"]["loihi2"]["off_chip"][1]["node"] == "blocks.0.attn.attention"
    assert np.asarray(rep["attention_map"]["maps"]).shape == (4, 4, 16, 16)

    # the same network as an artifact: no float model, identical reference measurements
    from compiler.pipeline import compile_checkpoint
    from compiler.serialize import save_graph
    from spikformer_neuro.checkpoint import load_checkpoint
    from spikformer_neuro.data import load_dataset
    ckpt = load_checkpoint(DIGITS)
    train, _ = load_dataset("digits", "train")
    calib = torch.stack([train[i][0] for i in range(256)])
    art = save_graph(compile_checkpoint(ckpt, calib).quantized, tmp_path / "digits.compiled")
    proc = _report([art, "--samples", 12, "--json"])
    assert proc.returncode == 0, proc.stderr
    rep2 = json.loads(proc.stdout)
    assert (tmp_path / "digits.compiled.report" / "report.json").is_file()
    assert rep2["source"]["kind"] == "artifact" and rep2["energy"]["float"] is None
    assert rep2["energy"]["reference"] == e
    assert rep2["activity"]["qkv"] == rep["activity"]["qkv"]
    # an earlier report may be replaced
    assert _report([art, "--samples", 2, "-q"]).returncode == 0


def test_cli_on_our_nir_export_equals_the_checkpoint(tmp_path, capsys):
    """A .nir file written by spikeform-compile --target nir compiles to the same quantized
    graph (byte-identical round trip), so its report measures exactly the same energy."""
    from spikeform_cli.compile import main as compile_main

    nir_file = tmp_path / "digits.nir"
    assert compile_main([str(DIGITS), "--target", "nir", "-o", str(nir_file), "-q"]) == 0
    reports = []
    for src in (DIGITS, nir_file):
        out = tmp_path / f"{src.suffix[1:]}.report"
        assert report_main([str(src), "--samples", "6", "-o", str(out), "-q"]) == 0
        reports.append(json.loads((out / "report.json").read_text()))
    assert reports[1]["source"]["kind"] == "nir"
    assert reports[1]["energy"]["reference"] == reports[0]["energy"]["reference"]
    ref_rates = [{n: layer["rate_reference"] for n, layer in r["activity"]["layers"].items()}
                 for r in reports]
    assert ref_rates[0] == ref_rates[1]
    # The float rates may differ in a few spikes: the checkpoint's float graph mirrors the
    # PyTorch model (BatchNorm unfolded), the file holds the folded graph, whose float32
    # rounding differs. Both are measured, neither is assumed.
    assert reports[1]["energy"]["float"]["energy_mJ"] == pytest.approx(
        reports[0]["energy"]["float"]["energy_mJ"], rel=1e-3)


def test_cli_refuses_foreign_nir_with_the_compile_first_hint(tmp_path, capsys):
    fixture = ROOT / "tests" / "fixtures" / "nir" / "snntorch_digits_mlp.nir"
    assert report_main([str(fixture), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(fixture) in err and "compile it first" in err and "--nir-convention" in err
    assert not (tmp_path / "r").exists()


def test_cli_bad_input_exits_2(tmp_path, capsys):
    cases = [([str(tmp_path / "missing.pth")], "does not exist"),
             ([str(tmp_path)], "not a compiled artifact"),
             ([str(DIGITS), "--samples", "0"], "--samples must be >= 1")]
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    cases.append(([str(junk), "-o", str(tmp_path / "r")], str(junk)))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    cases.append(([str(DIGITS), "-o", str(busy)], "not an earlier report"))
    for argv, message in cases:
        assert report_main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (busy / "keep.txt").is_file()


def test_docs_hold_the_generated_paper_tables():
    from compiler.reports.paper import tables

    assert tables() in (ROOT / "docs" / "reports.md").read_text()
