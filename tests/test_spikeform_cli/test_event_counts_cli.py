"""Event-count frames through the commands: spikeform-compile verifies a count-input checkpoint
on the user's count frames with 0 Lava mismatches, and spikeform-run takes count frames with
--input, equal to the reference; counts beyond the network's max_count are refused, not
clipped."""
import json

import numpy as np
import pytest

from compiler.reference import run_reference
from compiler.serialize import load_graph
from spikeform_cli.compile import main as compile_main
from spikeform_cli.run import main as run_main
from spikformer_neuro.checkpoint import save_checkpoint
from spikformer_neuro.testing import firing_model, random_input
from support.cli import call, refused

MAX_COUNT = 9
pytestmark = pytest.mark.lava


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("counts")
    model = firing_model("test-micro-events", seed=3, event_max_count=MAX_COUNT)
    ckpt = save_checkpoint(root / "counts.pth", model=model, dataset="cifar10-dvs",
                           class_names=["a", "b", "c", "d"])
    x = random_input(model.cfg, 12, seed=8).numpy()
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.arange(12) % 4)
    over = x.copy()
    over[3, 1, 0, 4, 4] = MAX_COUNT + 5
    np.save(root / "over.npy", over)
    np.save(root / "binary.npy", (x > 0).astype(np.uint8))
    return root, ckpt


@pytest.fixture(scope="module")
def artifact(files, tmp_path_factory):
    root, ckpt = files
    out = root / "counts.compiled"
    assert compile_main([str(ckpt), "--data", str(root / "x.npy"), "--labels",
                         str(root / "y.npy"), "--target", "lava-sim", "-o", str(out),
                         "-q"]) == 0
    return out


def test_compile_verifies_count_frames_in_lava(artifact):
    report = json.loads((artifact / "report.json").read_text())
    assert report["samples"] == 12
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["input_encoding"]["encoding"] == "counts"
    assert report["input_encoding"]["max_count"] == MAX_COUNT


def test_run_takes_count_frames_equal_to_the_reference(files, artifact, tmp_path, capsys):
    root, _ = files
    x = np.load(root / "x.npy")
    proc = call(capsys, run_main, artifact, "--input", root / "x.npy", "--json", "--chunk", "5")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["predictions"]
    ref = run_reference(load_graph(artifact), x)
    assert got == ref.predictions.tolist() and len(got) == 12
    # binary frames are counts too
    proc = call(capsys, run_main, artifact, "--input", root / "binary.npy", "--json")
    assert proc.returncode == 0, proc.stderr


def test_counts_beyond_max_count_are_refused_naming_it(files, artifact, capsys):
    root, _ = files
    refused(call(capsys, run_main, artifact, "--input", root / "over.npy"), "spikeform-run",
            "over.npy", "above the network's max_count 9", "(the largest: 14, first in sample 3)",
            "never clipped", "--max-count")
