"""The commands against a hostile user (issue 14, items 2-6): every case exits cleanly (exit 2,
one paragraph naming the problem and the fix, no traceback), no user file is ever deleted or
overwritten, results are never lost to a failure in writing them, and any edit to any artifact
file is detected.

Most cases are refused before any long work, so they run in-process and need no Lava (a Lava
target would only cost start-up time); the cases where a whole Lava run must survive a late
write failure are marked ``lava``. Signals (SIGTERM, SIGHUP, parent death) are in
test_signals.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler.serialize import (GRAPH_FILE, MANIFEST_FILE, TENSOR_FILE, load_graph,
                                save_artifact)
from spikeform_cli import common
from spikeform_cli.compile import main as compile_main
from spikeform_cli.report import main as report_main
from spikeform_cli.run import main as run_main
from spikeform_cli.train import main as train_main

from support.cli import call, refused
from support.paths import DIGITS_CKPT, NIR_FIXTURES, ROOT

ARTIFACT_FILES = [GRAPH_FILE, MANIFEST_FILE, "report.json", TENSOR_FILE]


# -- helpers --------------------------------------------------------------------------------------

def snapshot(directory: Path) -> dict:
    """Every file below ``directory`` with its bytes (a user's tree, to prove it untouched)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    """$TMPDIR (where results go when their own path fails) inside the test's directory."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def unwritable(tmp_path):
    """A directory in which no file can be created. Root ignores permission bits, so for
    root it is /sys, which refuses new files even to root (access() says it is writable:
    the commands try a real file)."""
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if common._write_test(Path("/sys")) is None:  # pragma: no cover - unusual machine
        pytest.skip("no directory here refuses files to root")
    yield Path("/sys")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A digits artifact (graph.json, tensors.bin, report.json, manifest.json)."""
    out = tmp_path_factory.mktemp("hostile") / "digits.compiled"
    assert compile_main([str(DIGITS_CKPT), "--target", "reference", "--samples", "4", "-o",
                         str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ARTIFACT_FILES
    return out


@pytest.fixture
def art(artifact, tmp_path):
    """A private copy of the artifact, free to damage."""
    return Path(shutil.copytree(artifact, tmp_path / "art"))


def compile_ref(capsys, *argv, model=DIGITS_CKPT):
    return call(capsys, compile_main, model, "--target", "reference", "--samples", "4", "-q",
                *argv)


# -- 3. a user's file is never deleted ------------------------------------------------------------

def test_compile_refuses_an_artifact_directory_holding_a_users_file(art, capsys):
    (art / "notes.txt").write_text("precious")
    (art / "plots").mkdir()
    (art / "plots" / "a.png").write_bytes(b"\x89PNG")
    before = snapshot(art)
    err = refused(compile_ref(capsys, "-o", art), "spikeform-compile", "notes.txt", "plots/",
                  "did not write", "would delete them", "move them out", "-o/--output")
    assert "Traceback" not in err
    assert snapshot(art) == before
    assert sorted(p.name for p in art.parent.iterdir()) == ["art"]   # no build directory left


def test_an_artifact_directory_holding_only_its_own_files_is_replaced(art, capsys):
    (art / "report.json").unlink()   # fewer files than a full artifact: still an earlier one
    proc = compile_ref(capsys, "-o", art)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in art.iterdir()) == ARTIFACT_FILES
    assert sorted(p.name for p in art.parent.iterdir()) == ["art"]
    load_graph(art)


def test_a_symlinked_output_directory_is_refused_not_replaced(art, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(art)
    before = snapshot(art)
    refused(compile_ref(capsys, "-o", link), "spikeform-compile", "is a symbolic link",
            "give the directory it points to")
    assert link.is_symlink() and snapshot(art) == before


def test_the_model_inside_the_output_directory_is_refused(art, capsys):
    shutil.copy(DIGITS_CKPT, art / "model.pth")
    before = snapshot(art)
    refused(compile_ref(capsys, "-o", art, model=art / "model.pth"), "spikeform-compile",
            "lies inside the output directory", "choose another -o/--output")
    assert snapshot(art) == before


def test_report_refuses_a_report_directory_holding_a_users_file(artifact, tmp_path, capsys):
    out = tmp_path / "rep"
    argv = (artifact, "-o", out, "--samples", "2", "-q")
    assert call(capsys, report_main, *argv).returncode == 0
    (out / "mine.csv").write_text("1,2")
    before = snapshot(out)
    refused(call(capsys, report_main, *argv), "spikeform-report", "mine.csv", "did not write",
            "move it out")
    assert snapshot(out) == before


@pytest.mark.parametrize("flag", ["--out", "--probe-out"])
def test_run_never_overwrites_its_own_inputs(art, tmp_path, capsys, flag):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8), np.float32))
    before = x.read_bytes()
    extra = ["--probe", "sps.stages.0.lif"] if flag == "--probe-out" else []
    refused(call(capsys, run_main, art, "--input", x, flag, x, *extra), "spikeform-run",
            f"{flag} {x} is the --input file", "give another path")
    assert x.read_bytes() == before
    refused(call(capsys, run_main, art, "--input", x, flag, art / GRAPH_FILE, *extra),
            "spikeform-run", "lies inside the artifact", "write it elsewhere")
    load_graph(art)


def test_compile_report_never_overwrites_the_model_or_the_artifact(art, tmp_path, capsys):
    model = tmp_path / "model.pth"
    shutil.copy(DIGITS_CKPT, model)
    refused(compile_ref(capsys, "-o", tmp_path / "new", "--report", model, model=model),
            "spikeform-compile", "is the model file")
    assert model.read_bytes() == DIGITS_CKPT.read_bytes()
    refused(compile_ref(capsys, "-o", art, "--report", art / "report.json"),
            "spikeform-compile", "lies inside the artifact directory", "outside it")
    load_graph(art)


# -- 2. output paths checked before any work ------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--out", "{dir}"], "--out {dir} is a directory; give a file path"),
    (["--probe", "sps.stages.0.lif", "--probe-out", "{dir}"],
     "--probe-out {dir} is a directory; give a file path"),
    (["--out", "{file}/r.json"], "{file} is not a directory"),
    (["--out", "{ro}/r.json"], "cannot create files in {ro}"),
    (["--probe", "sps.stages.0.lif", "--probe-out", "{ro}/p.npz"], "cannot create files in {ro}"),
])
def test_run_checks_its_outputs_before_lava_starts(art, tmp_path, capsys, unwritable, argv,
                                                    needle):
    """Refused before the artifact's data set is even read, let alone Lava started."""
    (tmp_path / "afile").write_text("x")
    names = {"dir": tmp_path, "file": tmp_path / "afile", "ro": unwritable}
    argv = [a.format(**names) for a in argv]
    refused(call(capsys, run_main, art, "--data-dir", tmp_path / "no-data-here", *argv),
            "spikeform-run", needle.format(**names))


def test_compile_checks_a_read_only_output_before_any_work(capsys, unwritable, tmp_path):
    """The issue: a raw Errno only after the whole verification run."""
    import time

    start = time.perf_counter()
    refused(compile_ref(capsys, "-o", unwritable / "art"), "spikeform-compile",
            f"cannot write -o/--output {unwritable / 'art'}", "cannot create files in",
            "choose another location")
    refused(compile_ref(capsys, "-o", tmp_path / "art", "--report", unwritable / "r.json"),
            "spikeform-compile", "cannot write --report", "choose another location")
    assert time.perf_counter() - start < 20  # nothing compiled or verified
    assert not (tmp_path / "art").exists()


def test_report_and_train_check_their_outputs_first(artifact, capsys, unwritable, tmp_path):
    refused(call(capsys, report_main, artifact, "-o", unwritable / "rep", "-q"),
            "spikeform-report", "cannot create files in")
    refused(call(capsys, train_main, "--config", "digits-tiny", "--dataset", "digits",
                 "--out", tmp_path), "spikeform-train", f"--out {tmp_path} is a directory")
    refused(call(capsys, train_main, "--config", "digits-tiny", "--dataset", "digits",
                 "--out", unwritable / "m.pth"), "spikeform-train", "cannot create files in")


# -- 2. results never lost to a failure in writing them -------------------------------------------

def _failing_writes(monkeypatch, *names):
    """Make atomic writes of files called ``names`` fail as a full disk does."""
    real = common.write_atomic

    def write(path, data):
        if Path(path).name in names:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(common, "write_atomic", write)


def test_compile_keeps_the_artifact_when_the_swap_fails(tmp_path, capsys, monkeypatch,
                                                        tmpdir_env):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common, "replace_directory_atomic", full_disk)
    _failing_writes(monkeypatch, "r.json")
    out, report = tmp_path / "art", tmp_path / "r.json"
    err = refused(compile_ref(capsys, "-o", out, "--report", report), "spikeform-compile",
                  f"could not write the artifact to {out} (No space left on device)",
                  f"it was written to {tmpdir_env}",
                  f"could not write the --report JSON to {report}")
    assert not out.exists() and not report.exists()
    fallback = [p for p in tmpdir_env.iterdir() if p.is_dir()]
    assert len(fallback) == 1 and str(fallback[0]) in err
    assert sorted(p.name for p in fallback[0].iterdir()) == ARTIFACT_FILES
    load_graph(fallback[0])   # complete, with its manifest
    saved = [p for p in tmpdir_env.iterdir() if p.suffix == ".json"]
    assert len(saved) == 1 and str(saved[0]) in err
    assert json.loads(saved[0].read_text())["samples"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]   # no build dir left


@pytest.mark.lava
def test_run_keeps_its_results_when_writing_them_fails(art, tmp_path, capsys, monkeypatch,
                                                       tmpdir_env):
    """A whole Lava run is not lost to a write that fails at the end: results and probes go
    to $TMPDIR, the command prints them, says where they went, and exits 2."""
    _failing_writes(monkeypatch, "r.json", "p.npz")
    out, probes = tmp_path / "r.json", tmp_path / "p.npz"
    proc = call(capsys, run_main, art, "--samples", "2", "--out", out, "--probe",
                "sps.stages.0.lif", "--probe-out", probes, "-q")
    err = refused(proc, "spikeform-run", f"could not write the --out results to {out}",
                  f"could not write the --probe-out spikes to {probes}", str(tmpdir_env))
    assert "samples    2" in proc.stdout
    saved = {p.suffix: p for p in tmpdir_env.iterdir()}
    assert set(saved) == {".json", ".npz"} and all(str(p) in err for p in saved.values())
    results = json.loads(saved[".json"].read_text())
    assert results["samples"] == 2 and len(results["predictions"]) == 2
    assert np.load(saved[".npz"])["sps.stages.0.lif"].shape[1] == 2
    assert not out.exists() and not probes.exists()


def test_report_keeps_the_report_when_the_swap_fails(artifact, tmp_path, capsys, monkeypatch,
                                                     tmpdir_env):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common, "replace_directory_atomic", full_disk)
    out = tmp_path / "rep"
    err = refused(call(capsys, report_main, artifact, "-o", out, "--samples", "2", "-q"),
                  "spikeform-report", f"could not write the report to {out}", str(tmpdir_env))
    (fallback,) = [p for p in tmpdir_env.iterdir() if p.is_dir()]
    assert str(fallback) in err and (fallback / "report.json").is_file()
    assert (fallback / "report.md").is_file() and not out.exists()


# -- 4. every artifact file integrity-checked -----------------------------------------------------

@pytest.mark.parametrize("name", ARTIFACT_FILES)
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_one_flipped_byte_in_any_artifact_file_is_refused_by_run_and_report(
        art, capsys, name, where):
    path = art / name
    data = bytearray(path.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0x01
    path.write_bytes(bytes(data))
    for prog, main in (("spikeform-run", run_main), ("spikeform-report", report_main)):
        err = refused(call(capsys, main, art, "-q"), prog, name, "recompile")
        if name != MANIFEST_FILE:
            assert "does not match its checksum in manifest.json" in err


def test_an_edited_tensor_offset_is_refused(art, capsys):
    """The issue: one edited offset in graph.json ran with 75 % instead of 100 % accuracy."""
    doc = json.loads((art / GRAPH_FILE).read_text())
    node = next(n for n in doc["nodes"] if n["params"])
    spec = next(iter(node["params"].values()))
    spec["offset"] += 1
    (art / GRAPH_FILE).write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    refused(call(capsys, run_main, art, "-q"), "spikeform-run",
            "graph.json does not match its checksum in manifest.json", "recompile")


def test_an_artifact_without_a_manifest_is_refused(art, capsys):
    """Older artifacts (or one whose manifest was deleted to hide an edit) are refused."""
    (art / MANIFEST_FILE).unlink()
    for prog, main in (("spikeform-run", run_main), ("spikeform-report", report_main)):
        refused(call(capsys, main, art, "-q"), prog, "no manifest.json",
                "recompile the network with spikeform-compile")


def test_a_file_missing_from_the_artifact_is_named(art, capsys):
    (art / "report.json").unlink()
    refused(call(capsys, run_main, art, "-q"), "spikeform-run",
            "report.json, listed in manifest.json, is missing")


def test_the_artifact_files_are_those_written_in_the_manifest(artifact):
    doc = json.loads((artifact / MANIFEST_FILE).read_text())
    assert sorted(doc["files"]) == [GRAPH_FILE, "report.json", TENSOR_FILE]


# -- 5. NaN / Inf and non-real values, named with their tensor and layer --------------------------

def _checkpoint_with(tmp_path, mutate):
    import torch

    from spikformer_neuro.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(DIGITS_CKPT)
    model = ckpt.build_model()
    with torch.no_grad():
        mutate(model)
    return save_checkpoint(tmp_path / "model.pth", model=model, dataset=ckpt.dataset,
                           class_names=list(ckpt.class_names))


def _nan_var(m):
    m.sps.stages[0].bn.running_var[1] = float("nan")


def _inf_weight(m):
    m.blocks[0].mlp.fc1.linear.weight[0, 0] = float("inf")


def _nan_head(m):
    m.head.bias[3] = float("nan")


@pytest.mark.parametrize("mutate, needles", [
    (_nan_var, ("'sps.stages.0.bn.running_var'", "BatchNorm2d", "1 NaN")),
    (_inf_weight, ("'blocks.0.mlp.fc1.linear.weight'", "Linear", "1 infinite")),
    (_nan_head, ("'head.bias'", "layer 'head', Linear", "1 NaN")),
])
def test_non_finite_checkpoint_weights_are_named(tmp_path, capsys, mutate, needles):
    path = _checkpoint_with(tmp_path, mutate)
    runs = (("spikeform-compile", compile_main,
             [path, "--target", "reference", "-o", tmp_path / "a"]),
            ("spikeform-report", report_main, [path, "-o", tmp_path / "r"]),
            ("spikeform-train", train_main,
             ["--init", path, "--dataset", "digits", "--out", tmp_path / "t.pth"]))
    for prog, main, argv in runs:
        err = refused(call(capsys, main, *argv, "-q"), prog, *needles, "retrain")
        assert "mantissa" not in err and "relative to its threshold" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


def test_non_finite_parameters_of_an_in_memory_model_are_named_by_the_ir():
    """Graph.validate checks every float parameter, whatever the frontend (checkpoints are
    refused earlier, at loading; this is the net under every other source)."""
    import torch

    from compiler.frontend import model_to_ir
    from compiler.ir import IRError
    from spikformer_neuro.testing import firing_model

    model = firing_model("test-micro")
    with torch.no_grad():
        model.sps.stages[1].conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(IRError, match=r"node 'sps.stages.1.conv' \(conv2d\): parameter 'weight' "
                                      r"holds 1 NaN value \(first at index \[0, 0, 0, 0\]\)"):
        model_to_ir(model)


def _nir_with(tmp_path, node, field, value):
    import nir

    g = nir.read(str(NIR_FIXTURES / "snntorch_digits_mlp.nir"))
    arr = np.array(getattr(g.nodes[node], field), dtype=np.float32 if np.isrealobj(value)
                   else np.complex64)
    arr.flat[0] = value
    setattr(g.nodes[node], field, arr)
    path = tmp_path / "bad.nir"
    nir.write(str(path), g)
    return path


@pytest.mark.parametrize("node, field, value, needles", [
    ("1", "weight", np.nan, ("NIR node '1' (Affine): 'weight' holds 1 NaN value",)),
    ("1", "weight", np.inf, ("NIR node '1' (Affine): 'weight' holds 1 infinite value",)),
    ("3", "bias", -np.inf, ("NIR node '3' (Affine): 'bias' holds 1 infinite value",)),
    ("2", "tau", np.nan, ("NIR node '2' (LIF): 'tau' holds 1 NaN value",)),
    ("2", "v_threshold", np.inf, ("NIR node '2' (LIF): 'v_threshold' holds 1 infinite",)),
    ("2", "r", np.nan, ("NIR node '2' (LIF): 'r' holds 1 NaN",)),
])
def test_non_finite_nir_parameters_are_named_with_their_nir_type(tmp_path, capsys, node, field,
                                                                 value, needles):
    """The issue: NaN reported as 'beyond the 8-bit mantissa' of a layer called conv2d; Inf as
    'too large relative to its threshold'."""
    path = _nir_with(tmp_path, node, field, value)
    for target in ("reference", "nir"):
        argv = ["--nir-convention", "snntorch", "--time-steps", "8", "--dataset", "digits",
                "--target", target, "-o", tmp_path / "out", "-q"]
        if target == "reference":
            argv[-1:-1] = ["--samples", "4"]
        err = refused(call(capsys, compile_main, path, *argv), "spikeform-compile", *needles,
                      str(path), "export it again")
        assert "mantissa" not in err and "differs between neurons" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nir"]


def test_complex_nir_parameters_are_refused(tmp_path, capsys):
    import h5py

    path = tmp_path / "c.nir"
    shutil.copy(NIR_FIXTURES / "snntorch_digits_mlp.nir", path)
    with h5py.File(path, "r+") as f:
        w = f["node/nodes/1/weight"][()]
        del f["node/nodes/1/weight"]
        f["node/nodes/1/weight"] = w.astype(np.complex64) + 1j
    refused(call(capsys, compile_main, path, "--nir-convention", "snntorch", "--time-steps", "8",
                 "--dataset", "digits", "--target", "reference", "-o", tmp_path / "o", "-q"),
            "spikeform-compile", "NIR node '1' (Affine): 'weight' holds complex numbers")


def _npy(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr, allow_pickle=True)
    return path


@pytest.mark.parametrize("make, needles", [
    (lambda: np.full((2, 1, 8, 8), "0.5"), ("dtype <U3 (text)", "give real numbers")),
    (lambda: np.zeros((2, 1, 8, 8), np.complex64) + 0.5j,
     ("complex64", "imaginary part would be dropped")),
    (lambda: np.zeros((0, 1, 8, 8), np.float32), ("holds no samples", "[0, 1, 8, 8]")),
    (lambda: np.float32(0.5), ("holds a single number",)),
    (lambda: np.where(np.arange(128).reshape(2, 1, 8, 8) == 77, np.nan, 0.5),
     ("1 NaN or infinite value", "nan in sample 1 at [0, 1, 5]", "fix or drop")),
    (lambda: np.where(np.arange(128).reshape(2, 1, 8, 8) < 3, -np.inf, 0.5),
     ("3 NaN or infinite values", "-inf in sample 0")),
    (lambda: np.zeros((2, 1, 5, 5), np.float32), ("does not fit this network",
                                                  "expected images [B, 1, 8, 8]")),
    (lambda: np.full((2, 1, 8, 8), 2.0), ("must lie in [0, 1]",)),
])
def test_bad_run_inputs_are_refused_before_lava_starts(art, tmp_path, capsys, make, needles):
    x = _npy(tmp_path, "x.npy", make())
    refused(call(capsys, run_main, art, "--input", x, "-q"), "spikeform-run", f"'{x}'",
            *needles)


def test_object_and_npz_inputs_are_refused_unread(art, tmp_path, capsys):
    x = _npy(tmp_path, "o.npy", np.array([{"evil": 1}, None], dtype=object))
    refused(call(capsys, run_main, art, "--input", x), "spikeform-run", "cannot read --input")
    np.savez(tmp_path / "z.npz", x=np.zeros((2, 1, 8, 8)))
    refused(call(capsys, run_main, art, "--input", tmp_path / "z.npz"), "spikeform-run",
            "is an .npz archive", "numpy.save")


@pytest.mark.parametrize("labels, needles", [
    (np.array([0.5, 1.0]), ("not whole numbers",)),
    (np.array([1, 2, 3]), ("3 entries for 2 inputs",)),
    (np.array([[1], [2]]), ("give one integer class index per input",)),
    (np.array([1, 10]), ("label 10 of input 1 is not a class of this network (0..9)",)),
    (np.array(["a", "b"]), ("not whole numbers",)),
])
def test_bad_labels_are_refused(art, tmp_path, capsys, labels, needles):
    x = _npy(tmp_path, "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    y = _npy(tmp_path, "y.npy", labels)
    refused(call(capsys, run_main, art, "--input", x, "--labels", y), "spikeform-run", *needles)


# -- 5. options that cannot make sense are refused ------------------------------------------------

@pytest.mark.parametrize("argv, needles", [
    (["--overflow", "calibrated", "--calibration-samples", "0"],
     ("--overflow calibrated", "--calibration-samples 0 gives none", "--overflow worst-case")),
    (["--margin", "3"], ("--margin 3 only applies to --overflow calibrated",)),
    (["--no-verify"], ("--samples 4 has no effect with --no-verify",)),
    (["--target", "nir", "--calibration-samples", "9"],
     ("--samples, --calibration-samples do not apply to --target nir",)),
])
def test_compile_refuses_options_that_cannot_take_effect(tmp_path, capsys, argv, needles):
    refused(compile_ref(capsys, "-o", tmp_path / "art", *argv), "spikeform-compile", *needles)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("argv, needles", [
    (["--overflow", "calibrated"], ("--overflow only applies to a checkpoint",)),
    (["--calibration-samples", "8", "--margin", "2"],
     ("--calibration-samples, --margin only apply to a checkpoint",)),
])
def test_report_refuses_checkpoint_options_on_an_artifact(artifact, tmp_path, capsys, argv,
                                                          needles):
    refused(call(capsys, report_main, artifact, "-o", tmp_path / "r", *argv), "spikeform-report",
            *needles)


def test_report_refuses_calibrated_overflow_without_samples(tmp_path, capsys):
    refused(call(capsys, report_main, DIGITS_CKPT, "-o", tmp_path / "r", "--overflow",
                 "calibrated", "--calibration-samples", "0"), "spikeform-report",
            "--calibration-samples 0 gives none")


@pytest.mark.parametrize("argv, needles", [
    (["--probe-out", "p.npz"], ("without --probe records nothing",)),
    (["--labels", "y.npy"], ("--labels goes with --input",)),
    (["--input", "x.npy", "--data-dir", "."], ("--data-dir", "no effect with --input")),
    (["--input", "x.npy", "--shard", "0/3"], ("--shard 0/3 of 2 samples is empty",
                                               "at most 2 shards")),
    (["--out", "same.json", "--probe", "sps.stages.0.lif", "--probe-out", "same.json"],
     ("--out and --probe-out are the same file",)),
])
def test_run_refuses_options_that_cannot_take_effect(art, tmp_path, capsys, monkeypatch, argv,
                                                     needles):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.zeros((2, 1, 8, 8), np.float32))
    np.save("y.npy", np.zeros(2, np.int64))
    refused(call(capsys, run_main, art, *argv), "spikeform-run", *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "x.npy", "y.npy"]


@pytest.mark.parametrize("argv, needles", [
    (["--config", "fmnist-small"], ("--config fmnist-small contradicts --init",
                                    "img_size 28 vs 8", "Drop --config")),
    (["--time-steps", "8"], ("--time-steps 8 contradicts --init", "runs 4 time steps",
                             "Drop --time-steps")),
    (["--config", "digits-tiny", "--time-steps", "2"],
     ("--config digits-tiny --time-steps 2 contradicts --init", "time_steps 2 vs 4")),
    (["--resume", DIGITS_CKPT], ("--init and --resume exclude each other",)),
    (["--qat", "--qat-from-epoch", "2"], ("pass one of them",)),
])
def test_train_refuses_options_that_contradict_init(tmp_path, capsys, argv, needles):
    refused(call(capsys, train_main, "--init", DIGITS_CKPT, "--dataset", "digits", "--out",
                 tmp_path / "m.pth", *argv), "spikeform-train", *needles)
    assert list(tmp_path.iterdir()) == []


def test_train_accepts_init_with_its_own_config(tmp_path, capsys):
    """What the Makefile recipes pass: --init with the checkpoint's own --config."""
    proc = call(capsys, train_main, "--init", DIGITS_CKPT, "--config", "digits-tiny",
                "--dataset", "digits", "--out", tmp_path / "m.pth", "--epochs", "1",
                "--train-subset", "32", "--test-subset", "16", "--val-fraction", "0",
                "--threads", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.pth").is_file()


# -- one end to end in a subprocess: the exact stderr a user sees ---------------------------------

def test_a_users_file_in_the_artifact_directory_as_a_user_sees_it(art):
    (art / "notes.txt").write_text("precious")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "spikeform_cli.compile", str(DIGITS_CKPT),
                           "--target", "reference", "--samples", "4", "-o", str(art), "-q"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"spikeform-compile: error: output directory {art} holds notes.txt, "
                           "which spikeform-compile did not write; replacing the directory "
                           f"would delete it: move it out of {art}, or choose another "
                           "-o/--output\n")
    assert (art / "notes.txt").read_text() == "precious"


def test_save_artifact_writes_what_the_manifest_lists(tmp_path, artifact):
    """The artifact spikeform-compile writes is save_artifact's (the manifest written last)."""
    out = save_artifact(load_graph(artifact), tmp_path / "copy",
                        {"report.json": (artifact / "report.json").read_bytes()})
    assert snapshot(out) == snapshot(artifact)
