"""`spikeform-compile` (python -m spikeform_cli.compile) end to end on the shipped digits checkpoint."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.serialize import load_graph

from support.paths import DIGITS_CKPT, ROOT
DIGITS = DIGITS_CKPT


def compile_cli(tmp: Path, *args, model=DIGITS, out="art", report="r.json"):
    """Run the CLI in a subprocess with TMPDIR inside ``tmp`` (to catch stray temp files)."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "spikeform_cli.compile", str(model), *args]
    if out is not None:
        cmd += ["-o", str(tmp / out)]
    if report is not None:
        cmd += ["--report", str(tmp / report)]
    return subprocess.run(cmd + ["-q"], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def compile_main(tmp: Path, capsys, *args, model=DIGITS, out="art", report="r.json"):
    """The same CLI in-process (``spikeform_cli.compile.main``): for the refusals, to keep this fast."""
    from spikeform_cli.compile import main

    argv = [str(model), *args, "-q"]
    if out is not None:
        argv += ["-o", str(tmp / out)]
    if report is not None:
        argv += ["--report", str(tmp / report)]
    (tmp / "tmpdir").mkdir(exist_ok=True)
    rc = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, captured.out, captured.err)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two compilations of the same checkpoint: the first into an existing empty directory,
    the second over a stale earlier artifact (both may be replaced)."""
    runs = []
    for name in ("a", "b"):
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "art").mkdir()
        if runs:
            for f in ("graph.json", "tensors.bin", "report.json"):
                (tmp / "art" / f).write_text("stale")
        proc = compile_cli(tmp, "--target", "reference", "--samples", "24")
        runs.append((tmp, proc))
    return runs


def test_exit_code_artifact_and_report(two_runs):
    tmp, proc = two_runs[0]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    art = tmp / "art"
    assert sorted(p.name for p in art.iterdir()) == ["graph.json", "manifest.json", "report.json",
                                                     "tensors.bin"]
    report = json.loads((tmp / "r.json").read_text())
    assert json.loads((art / "report.json").read_text()) == report
    assert report["target"] == "reference"
    assert report["samples"] == 24
    assert set(report) == {"target", "source", "checkpoint", "model", "dataset", "artifact",
                           "samples", "accuracy", "mismatches", "lava", "float_vs_reference",
                           "timing_s", "quantization", "input_encoding", "network", "energy",
                           "layers", "nir_assumption", "data", "loihi"}
    # where the samples came from: the checkpoint's data set, training and test splits
    assert report["data"] == {
        "calibration": {"source": "dataset", "dataset": "digits", "split": "train",
                        "shape": [1, 8, 8], "samples": 256},
        "verification": {"source": "dataset", "dataset": "digits", "split": "test",
                         "shape": [1, 8, 8], "samples": 24}}
    assert "calibrated on     256 samples of digits (train split)" in proc.stdout
    assert "verified on       24 samples of digits (test split)" in proc.stdout
    assert report["lava"] is None and set(timing := report["timing_s"]) == {
        "compile", "run", "float", "reference"}
    assert timing["float"] > 0 and timing["reference"] > 0
    acc = report["accuracy"]
    assert set(acc) >= {"float", "reference", "lava"}
    assert acc["lava"] is None
    for key in ("float", "reference"):
        assert isinstance(acc[key], float) and 0.0 <= acc[key] <= 1.0
        assert acc[key] * 24 == round(acc[key] * 24)  # a count of correct samples
    assert report["mismatches"] == {"spikes": None, "predictions": None, "logits": None}
    timing = report["timing_s"]
    assert timing["compile"] > 0 and timing["run"] > 0
    energy = report["energy"]  # the paper's method on the reference spikes (docs/reports.md)
    assert energy["e_mac_pJ"] == 4.6 and energy["e_sop_pJ"] == 0.9
    assert energy["energy_mJ"] == pytest.approx(
        (4.6 * energy["flops_first_conv"] + 0.9 * energy["sops"]) * 1e-9, rel=1e-12)
    assert energy["sops"] > 0 and energy["first_conv"] == "sps.stages.0.conv"
    # the artifact loads back and is the quantized graph
    g = load_graph(art)
    assert g.meta["stage"] == "quantized" and g.by_op("loihi_lif")
    # the printed table carries the headline numbers
    assert f"{100 * acc['reference']:.2f} %" in proc.stdout
    assert "accuracy float" in proc.stdout and "spike agreement" in proc.stdout
    for name, info in report["layers"].items():
        assert 0.0 <= info["agreement"] <= 1.0, name


def test_compiling_twice_is_byte_identical(two_runs):
    (a, pa), (b, pb) = two_runs
    assert pa.returncode == 0 and pb.returncode == 0
    for name in ("graph.json", "tensors.bin"):
        assert (a / "art" / name).read_bytes() == (b / "art" / name).read_bytes(), name
    ra = json.loads((a / "r.json").read_text())
    rb = json.loads((b / "r.json").read_text())
    assert ra["accuracy"] == rb["accuracy"] and ra["layers"] == rb["layers"]


def test_no_temporary_files_after_success(two_runs):
    tmp, _ = two_runs[0]
    assert sorted(p.name for p in tmp.iterdir()) == ["art", "r.json", "tmpdir"]
    assert list((tmp / "tmpdir").iterdir()) == []


# -- bad inputs: exit 2, one paragraph, no traceback, nothing written -----------------------------

def _assert_failure_message(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("spikeform-compile: error:"), err
    assert "\n\n" not in err and err.count("spikeform-compile:") == 1, err  # one paragraph
    for needle in needles:
        assert needle in err, (needle, err)


def _assert_clean_failure(tmp: Path, proc, *needles):
    _assert_failure_message(proc, *needles)
    leftovers = sorted(p.name for p in tmp.iterdir() if p.name not in ("tmpdir", "model.pth"))
    assert leftovers == [], leftovers
    assert list((tmp / "tmpdir").iterdir()) == []


@pytest.mark.lava
def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope.pth"
    proc = compile_cli(tmp_path, model=missing)
    _assert_clean_failure(tmp_path, proc, str(missing), "does not exist")


@pytest.mark.lava
def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    proc = compile_cli(tmp_path, model=bad)
    _assert_clean_failure(tmp_path, proc, str(bad), "corrupt")


def test_unknown_target_leaves_an_existing_artifact_untouched(tmp_path, two_runs):
    good, _ = two_runs[0]
    art = tmp_path / "art"
    art.mkdir()
    for name in ("graph.json", "tensors.bin", "report.json"):
        (art / name).write_bytes((good / "art" / name).read_bytes())
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    proc = compile_cli(tmp_path, "--target", "loihi9")
    _assert_failure_message(proc, "unknown target 'loihi9'", "reference")
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "tmpdir"]
    assert list((tmp_path / "tmpdir").iterdir()) == []


@pytest.mark.parametrize("n", ["0"])
def test_nonpositive_samples(tmp_path, n):
    proc = compile_cli(tmp_path, "--samples", n)
    _assert_clean_failure(tmp_path, proc, "--samples", n)


@pytest.mark.lava
def test_unrepresentable_hints_fail_late_without_writing(tmp_path, capsys):
    """The checkpoint loads and the data set too; quantization then refuses a QAT hint that
    would overflow the 8-bit weights: the error names the layer and nothing is written."""
    from spikformer_neuro.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(DIGITS)
    hints = {**ckpt.quantization, "vth": {**ckpt.quantization["vth"],
                                          "blocks.0.mlp.fc1.lif": 120_000}}
    model = ckpt.build_model()
    save_checkpoint(tmp_path / "model.pth", model=model, dataset=ckpt.dataset,
                    class_names=list(ckpt.class_names), quantization=hints)
    proc = compile_main(tmp_path, capsys, "--samples", "8", model=tmp_path / "model.pth")
    _assert_clean_failure(tmp_path, proc, "blocks.0.mlp.fc1", "hint")


def _save_modified(tmp: Path, mutate, hints: bool = True) -> Path:
    """The shipped digits checkpoint with ``mutate(model)`` applied, saved as tmp/model.pth."""
    import torch

    from spikformer_neuro.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(DIGITS)
    model = ckpt.build_model()
    with torch.no_grad():
        mutate(model)
    return save_checkpoint(tmp / "model.pth", model=model, dataset=ckpt.dataset,
                           class_names=list(ckpt.class_names),
                           quantization=ckpt.quantization if hints else None)


@pytest.mark.lava
def test_unsupported_layer_in_the_checkpoint_is_named(tmp_path, capsys):
    """A model with a layer the Spikformer architecture (and so the compiler) does not have:
    its parameters appear in the checkpoint under a key no supported layer owns."""
    from torch import nn

    def add_layernorm(model):
        model.blocks[0].norm = nn.LayerNorm(model.cfg.embed_dim)

    path = _save_modified(tmp_path, add_layernorm)
    proc = compile_main(tmp_path, capsys, "--samples", "8", model=path)
    _assert_clean_failure(tmp_path, proc, str(path), "blocks.0.norm.weight")


def _big_bias(model):
    model.sps.stages[0].bn.bias[0] = 1e7


def _huge_weight(model):
    model.blocks[0].mlp.fc1.linear.weight[0, 0] = 1e9


@pytest.mark.parametrize("mutate, hints, needles", [
    # post-training quantization: no scale keeps both the bias and a 1-step threshold
    (_big_bias, False, ("sps.stages.0.lif", "limited by bias", "V_th=1.0")),
    # QAT grid given by the checkpoint: the bias cannot be represented on it
    (_big_bias, True, ("sps.stages.0.conv", "bias 1e+07", "13-bit mantissa")),
    (_huge_weight, False, ("blocks.0.mlp.fc1.lif", "limited by weights")),
])
@pytest.mark.lava
def test_out_of_range_parameter_is_named_not_clipped(tmp_path, capsys, mutate, hints, needles):
    path = _save_modified(tmp_path, mutate, hints)
    proc = compile_main(tmp_path, capsys, "--samples", "8", model=path)
    _assert_clean_failure(tmp_path, proc, *needles)


@pytest.mark.lava
def test_invalid_batchnorm_statistics_are_named(tmp_path, capsys):
    def negative_variance(model):
        model.sps.stages[0].bn.running_var[0] = -5.0

    path = _save_modified(tmp_path, negative_variance, hints=False)
    proc = compile_main(tmp_path, capsys, "--samples", "8", model=path)
    _assert_clean_failure(tmp_path, proc, "sps.stages.0.bn", "var + eps must be > 0")


# -- output locations the run could not write, or would destroy -----------------------------------

@pytest.mark.lava
def test_refuses_to_replace_a_directory_that_is_not_an_artifact(tmp_path, capsys):
    proj = tmp_path / "art"
    (proj / "sub").mkdir(parents=True)
    (proj / "notes.txt").write_text("precious")
    (proj / "sub" / "data.bin").write_bytes(b"\x00\x01")
    proc = compile_main(tmp_path, capsys, "--samples", "8", report=None)
    _assert_failure_message(proc, str(proj), "not a compiled artifact")
    assert (proj / "notes.txt").read_text() == "precious"
    assert (proj / "sub" / "data.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "tmpdir"]


@pytest.mark.lava
def test_refuses_an_output_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "art"
    target.write_bytes(b"not a directory")
    proc = compile_main(tmp_path, capsys, "--samples", "8", report=None)
    _assert_failure_message(proc, str(target), "not a directory")
    assert target.read_bytes() == b"not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "tmpdir"]


@pytest.mark.lava
@pytest.mark.parametrize("report, needle", [("rdir", "is a directory"),
                                            ("afile/r.json", "is not a directory")])
def test_unwritable_report_fails_before_writing_anything(tmp_path, capsys, report, needle):
    (tmp_path / "rdir").mkdir()
    (tmp_path / "afile").write_text("x")
    proc = compile_main(tmp_path, capsys, "--samples", "8", report=report)
    _assert_failure_message(proc, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "rdir", "tmpdir"]
    assert list((tmp_path / "rdir").iterdir()) == []
    assert list((tmp_path / "tmpdir").iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--calibration-samples", "-1"], "--calibration-samples must be >= 0, got -1"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--overflow", "calibrated", "--margin", "-1"], "--margin must be > 0, got -1"),
])
def test_other_bad_numbers_are_refused_before_any_work(tmp_path, capsys, args, needle):
    proc = compile_main(tmp_path, capsys, *args)
    _assert_clean_failure(tmp_path, proc, needle)


@pytest.mark.lava
def test_lava_target_verifies_every_spike_and_logit(tmp_path, capsys):
    proc = compile_main(tmp_path, capsys, "--target", "lava-sim", "--samples", "4")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["spikes_compared"] > 0
    assert set(report["lava"]) == {"samples", "accuracy", "compared_with", "spike_mismatches",
                                   "spikes_compared", "layer_mismatches", "logit_mismatches",
                                   "prediction_mismatches", "steps", "ms_per_step",
                                   "samples_per_s", "start_s", "run_s"}
    assert report["lava"]["compared_with"] == "reference" and report["lava"]["samples"] == 4
    assert 0.0 <= report["accuracy"]["lava"] <= 1.0
    assert report["accuracy"]["lava"] == report["accuracy"]["reference"]


@pytest.mark.lava
def test_float_lava_target_matches_the_float_executor(tmp_path, capsys):
    """lava-sim-float: the float graph on Lava's floating-point models, attention included."""
    proc = compile_main(tmp_path, capsys, "--target", "lava-sim-float", "--samples", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["lava"]["compared_with"] == "float_exec"
    assert report["mismatches"]["spikes"] == 0 and report["mismatches"]["predictions"] == 0
    assert report["lava"]["spikes_compared"] > 0
    assert report["accuracy"]["lava"] == report["accuracy"]["float"]
    assert "Lava vs float" in proc.stdout


@pytest.mark.lava
def test_lava_mismatch_exits_3_and_writes_no_artifact(tmp_path, capsys, monkeypatch):
    import deploy.lava.verify as verify

    real = verify.verify_against_reference

    def one_flipped_spike(*args, **kwargs):
        check = real(*args, **kwargs)
        name = next(iter(check.layer_mismatches))
        check.layer_mismatches[name] += 1
        return check

    monkeypatch.setattr(verify, "verify_against_reference", one_flipped_spike)
    proc = compile_main(tmp_path, capsys, "--target", "lava-sim", "--samples", "2")
    assert proc.returncode == 3
    assert "differs from the reference executor" in proc.stderr and "1 spike values" in proc.stderr
    assert not (tmp_path / "art").exists()
    assert json.loads((tmp_path / "r.json").read_text())["mismatches"]["spikes"] == 1


@pytest.mark.lava
def test_hints_of_another_model_are_refused(tmp_path, capsys):
    """QAT hints naming a layer the model does not have (a checkpoint edited or assembled
    from two models) are an error, not silently half-used."""
    from spikformer_neuro.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(DIGITS)
    hints = {**ckpt.quantization, "vth": {**ckpt.quantization["vth"], "blocks.7.mlp.fc1.lif": 40}}
    save_checkpoint(tmp_path / "model.pth", model=ckpt.build_model(), dataset=ckpt.dataset,
                    class_names=list(ckpt.class_names), quantization=hints)
    proc = compile_main(tmp_path, capsys, "--samples", "8", model=tmp_path / "model.pth")
    _assert_clean_failure(tmp_path, proc, "blocks.7.mlp.fc1.lif", "another model")


# -- the helpers the commands share (spikeform_cli/common.py) --------------------------------------

def test_output_dir_is_checked_built_aside_and_swapped(tmp_path):
    from spikeform_cli.common import CliError, OutputDir

    def is_earlier(path):
        return (path / "graph.json").is_file()

    def files(path):
        return {"graph.json"}

    out = OutputDir(tmp_path / "art", "a compiled artifact (no graph.json)", is_earlier, files,
                    writer="spikeform-compile")
    out.check()  # absent: fine
    with out.build() as build:
        assert build.parent == tmp_path and build.name.startswith(".art.build-")
        (build / "graph.json").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert (tmp_path / "art" / "graph.json").read_text() == "new"
    out.check()  # an earlier output: may be replaced
    with pytest.raises(RuntimeError):  # a failed build leaves the old output untouched
        with out.build() as build:
            (build / "graph.json").write_text("half")
            raise RuntimeError("failed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert (tmp_path / "art" / "graph.json").read_text() == "new"

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(CliError, match="is not a compiled artifact .no graph.json.; it would be "
                                       "replaced and its contents deleted"):
        OutputDir(tmp_path / "mine", out.kind, is_earlier, files).check()
    with pytest.raises(FileExistsError):  # and refused again at the swap
        with OutputDir(tmp_path / "mine", out.kind, is_earlier, files).build():
            pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    (tmp_path / "mine" / "graph.json").write_text("old")   # an earlier output + a user's file
    with pytest.raises(CliError, match="holds notes.txt, which spikeform-compile did not write; "
                                       "replacing the directory would delete it"):
        OutputDir(tmp_path / "mine", out.kind, is_earlier, files, writer="spikeform-compile"
                  ).check()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "mine"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CliError, match="exists and is not a directory"):
        OutputDir(tmp_path / "afile", out.kind, is_earlier, files).check()
    with pytest.raises(CliError, match="afile is not a directory"):
        OutputDir(tmp_path / "afile" / "sub" / "art", out.kind, is_earlier, files).check()


def test_report_file_and_json_helpers(tmp_path):
    from spikeform_cli.common import CliError, check_report_file, check_writable, write_json

    check_report_file(None)
    check_report_file(tmp_path / "new" / "r.json")  # a directory to be created: fine
    with pytest.raises(CliError, match="--report .* is a directory; give a file path"):
        check_report_file(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CliError, match="cannot write .*: .*afile is not a directory"):
        check_writable(tmp_path / "afile" / "r.json")
    write_json(tmp_path / "a.json", {"b": 1, "a": [2]})
    assert (tmp_path / "a.json").read_text() == '{\n "a": [\n  2\n ],\n "b": 1\n}\n'
    write_json(tmp_path / "b.json", {"b": 1, "a": 2}, sort_keys=False)
    assert (tmp_path / "b.json").read_text() == '{\n "b": 1,\n "a": 2\n}\n'


def test_targets_and_data_helpers():
    from compiler.ir import Graph, Node
    from spikeform_cli.common import (TARGETS, CliError, check_target, first_samples,
                                      graph_dataset, labelled_batches, stack_samples)

    assert TARGETS == ("lava-sim", "lava-sim-stock", "loihi2", "lava-sim-float", "reference",
                       "nir")
    check_target("reference")
    with pytest.raises(CliError, match="unknown target 'x'; choose one of: lava-sim, "
                                       "lava-sim-stock, loihi2$"):
        check_target("x", TARGETS[:3])
    # a compiled graph's data set at the graph's own image size and time steps
    g = Graph(meta={"time_steps": 4, "dataset": "digits"})
    g.add(Node("input", "input", [], (1, 8, 8), {}, {"encoding": "analog"}))
    ds = graph_dataset(g, "test", None, missing="no data set")
    assert len(ds) == 360 and tuple(ds[0][0].shape) == (1, 8, 8)
    g.meta["dataset"] = None
    with pytest.raises(CliError, match="^no data set$"):
        graph_dataset(g, "test", None, missing="no data set")
    g.meta["dataset"] = "mnist"  # data set errors become one-paragraph CliErrors with flags
    with pytest.raises(CliError, match="as --data-dir$"):
        graph_dataset(g, "test", None, missing="no data set")
    x, y = stack_samples(ds, 5)
    assert tuple(x.shape) == (5, 1, 8, 8) and y.dtype == np.int64 and len(y) == 5
    assert len(stack_samples(ds, 0)[0]) == 0
    assert first_samples(ds, None) is ds and len(first_samples(ds, 7)) == 7
    count, batches = labelled_batches(first_samples(ds, 7), 3)
    batches = list(batches)
    assert count == 3 and [len(b[1]) for b in batches] == [3, 3, 1]
    assert isinstance(batches[0][1], np.ndarray) and np.array_equal(batches[0][1], y[:3])
