"""`spikeform-compile` with NIR: `--target nir` (and --nir-portable) writes a .nir file; a .nir
file compiles like a checkpoint (byte-identical artifact for our own export, through the same
Lava verification); bad files and flags exit 2 with one paragraph naming the file, node or flag."""
import json
import shutil
import subprocess
from pathlib import Path

import nir
import numpy as np
import pytest

from spikeform_cli.compile import main

from support.paths import DIGITS_CKPT, ROOT
DIGITS = DIGITS_CKPT


def cli(capsys, *argv):
    if "--target" not in argv:  # refusals need not import Lava (the default target)
        argv = (*argv, "--target", "reference")
    rc = main([str(a) for a in argv] + ["-q"])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, out.out, out.err)


def assert_refused(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("spikeform-compile: error:") and "Traceback" not in err, err
    assert "\n" not in err, err  # one paragraph
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped checkpoint copied to model.pth and exported with the default output path."""
    tmp = tmp_path_factory.mktemp("nircli")
    shutil.copy(DIGITS, tmp / "model.pth")
    rc = main([str(tmp / "model.pth"), "--target", "nir", "--report", str(tmp / "r.json"), "-q"])
    assert rc == 0
    return tmp


def test_target_nir_writes_the_file_and_says_what_it_wrote(exported):
    assert sorted(p.name for p in exported.iterdir()) == ["model.nir", "model.pth", "r.json"]
    report = json.loads((exported / "r.json").read_text())
    assert report["target"] == "nir" and report["nir_file"] == str(exported / "model.nir")
    assert report["source"] == {"kind": "checkpoint", "path": str(exported / "model.pth")}
    export = report["export"]
    g = nir.read(exported / "model.nir")
    assert export["edges"] == len(g.edges) and export["ir_nodes"] == 33
    # 12 LIF layers + the max-pool rewrite's threshold, written as a memoryless LIF
    assert export["nir_nodes"]["LIF"] == 13 and export["nir_nodes"]["NIRGraph"] == 1
    assert export["fragment"] is False and export["outputs"] == ["output"]


def test_portable_summary_names_what_was_left_out(tmp_path, capsys):
    proc = cli(capsys, DIGITS, "--target", "nir", "--nir-portable", "-o", tmp_path / "p.nir",
               "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["export"]["fragment"] is True
    assert report["export"]["blockers"] == ["blocks.0.attn.attention (spiking_attention)"]
    assert "head" in report["export"]["left_out"]
    # the padded max-pool window is a Conv2d, its threshold a memoryless LIF (docs/nir.md)
    assert {type(n).__name__ for n in nir.read(tmp_path / "p.nir").nodes.values()} == {
        "Input", "Conv2d", "LIF", "Output"}


def test_a_nir_file_compiles_to_the_checkpoints_artifact(exported, tmp_path, capsys):
    a = cli(capsys, exported / "model.nir", "--target", "reference", "--samples", "8",
            "-o", tmp_path / "from_nir")
    assert a.returncode == 0, a.stderr
    b = cli(capsys, DIGITS, "--target", "reference", "--samples", "8", "-o", tmp_path / "direct")
    assert b.returncode == 0, b.stderr
    for name in ("graph.json", "tensors.bin"):
        assert (tmp_path / "from_nir" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    report = json.loads((tmp_path / "from_nir" / "report.json").read_text())
    assert report["source"]["kind"] == "nir" and report["checkpoint"] is None
    assert report["dataset"] == "digits" and report["model"] == "digits-tiny"
    assert report["samples"] == 8


@pytest.mark.lava
def test_a_nir_file_runs_in_lava_spike_for_spike(exported, tmp_path, capsys):
    # in-process, after the in-process reference runs above: Lava's import must still work
    # (tqdm's default multiprocessing lock used to fix the start method Lava sets on import)
    proc = cli(capsys, exported / "model.nir", "--target", "lava-sim", "--samples", "2",
               "-o", tmp_path / "art")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["spikes_compared"] > 0


# -- refusals: exit 2, one paragraph, nothing written ---------------------------------------------

def test_bad_nir_files_are_named(exported, tmp_path, capsys):
    assert_refused(cli(capsys, tmp_path / "nope.nir", "-o", tmp_path / "a"), "nope.nir",
                   "no such NIR file")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_refused(cli(capsys, bad, "-o", tmp_path / "a"), str(bad), "not a readable NIR")
    import h5py
    odd = tmp_path / "odd.nir"
    shutil.copy(exported / "model.nir", odd)
    with h5py.File(odd, "r+") as f:
        node = f["node"]["nodes"]["sps.rpe.conv"]
        del node["type"]
        node.create_dataset("type", data=b"Conv3d")
    assert_refused(cli(capsys, odd, "-o", tmp_path / "a"), str(odd), "'sps.rpe.conv' (Conv3d)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nir", "odd.nir"]


@pytest.fixture
def foreign(tmp_path):
    """A stock NIR graph from 'another toolchain' (no spikeform metadata)."""
    w = np.ones((3, 4), dtype=np.float32)
    g = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(3, np.float32)),
                               nir.LIF(tau=np.full(3, 2e-4), r=np.full(3, 2.0),
                                       v_leak=np.zeros(3), v_threshold=np.ones(3)))
    nir.write(tmp_path / "mlp.nir", g)
    return tmp_path / "mlp.nir"


def test_foreign_graphs_need_their_convention_and_time_steps(foreign, tmp_path, capsys):
    proc = cli(capsys, foreign, "-o", tmp_path / "a")
    assert_refused(proc, str(foreign), "--nir-convention")
    assert "nir_convention" not in proc.stderr  # the flag, not the library's parameter
    proc = cli(capsys, foreign, "--nir-convention", "snntorch", "-o", tmp_path / "a")
    assert_refused(proc, str(foreign), "--time-steps")
    assert "time_steps" not in proc.stderr


@pytest.mark.parametrize("node, needles", [
    # an unsupported node: Lava/Loihi have no IF without decay in this compiler
    (nir.IF(r=np.ones(3), v_threshold=np.ones(3)), ("NIR node 'if'", "IF")),
    # an unsupported parameter: a LIF leaking towards a non-zero potential
    (nir.LIF(tau=np.full(3, 2e-4), r=np.full(3, 2.0), v_leak=np.full(3, 0.5),
             v_threshold=np.ones(3)), ("NIR node 'lif'", "v_leak must be 0", "0.5")),
])
def test_unsupported_foreign_nodes_are_named(node, needles, tmp_path, capsys):
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 64), np.float32),
                                          bias=np.zeros(3, np.float32)), node)
    path = tmp_path / "other.nir"
    nir.write(path, g)
    proc = cli(capsys, path, "--nir-convention", "snntorch", "--time-steps", "4", "--dataset",
               "digits", "-o", tmp_path / "a")
    assert_refused(proc, str(path), *needles)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "digits"], "--dataset only apply to NIR files"),
    (["--nir-convention", "snntorch", "--time-steps", "4"],
     "--nir-convention, --time-steps only apply to NIR files"),
    (["--nir-portable"], "--nir-portable only applies to --target nir"),
])
def test_flags_that_do_not_apply_are_refused(args, needle, tmp_path, capsys):
    assert_refused(cli(capsys, DIGITS, *args, "-o", tmp_path / "a"), needle)
    assert list(tmp_path.iterdir()) == []


def test_nir_flag_values_are_checked(exported, tmp_path, capsys):
    assert_refused(cli(capsys, exported / "model.nir", "--time-steps", "0", "-o", tmp_path / "a"),
                   "--time-steps must be >= 1")
    # the library names its parameter (time_steps), the command line its flag
    proc = cli(capsys, exported / "model.nir", "--time-steps", "8", "--no-verify",
               "-o", tmp_path / "a")
    assert_refused(proc, "4", "--time-steps 8 contradicts it")
    assert "time_steps" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_target_nir_refuses_to_overwrite_its_input_or_a_directory(exported, tmp_path, capsys):
    before = (exported / "model.nir").read_bytes()
    assert_refused(cli(capsys, exported / "model.nir", "--target", "nir"), "is the input file")
    assert (exported / "model.nir").read_bytes() == before
    (tmp_path / "d.nir").mkdir()
    assert_refused(cli(capsys, DIGITS, "--target", "nir", "-o", tmp_path / "d.nir"),
                   "is a directory")
