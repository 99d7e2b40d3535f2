"""The user's own network and data (issue 13, items 1-2).

1. Flat inputs: an snntorch MLP written the usual way (nn.Linear(64, 96) -> snn.Leaky ->
   nn.Linear(96, 10) -> snn.Leaky on flat [64] samples, trained on digits, exported with
   snntorch's export_to_nir: tests/fixtures/nir/snntorch_digits_flat_mlp.nir, made by
   make_snntorch_digits_flat_mlp.py) compiles, runs in the reference and in Lava, exports
   back to NIR, and runs with spikeform-run on [B, 64] vectors; a registered data set of 8x8
   images is flattened row-major for it (and the summary says so).
2. User data: --data / --labels / --calibration-data (.npy, read without pickle) for
   spikeform-compile and spikeform-report, for NIR graphs and checkpoints alike; report.json
   records where the calibration and verification samples came from. Every bad file exits 2
   with one paragraph naming the file and the expected shape.

The end-to-end check (the issue's "done when"): that MLP compiled with --data/--labels (the
digits test images flattened to [360, 64]) has the float accuracy snntorch itself has on the
same samples, computed here with snntorch, and Lava (lava-sim) differs from the reference
executor in no spike and no logit.
"""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from compiler.serialize import load_graph
from spikeform_cli.compile import main as compile_main
from spikeform_cli.report import main as report_main
from spikeform_cli.run import main as run_main
from spikformer_neuro.data import load_dataset

from support.cli import call, refused
from support.paths import DIGITS_CKPT, NIR_FIXTURES

FLAT_MLP = NIR_FIXTURES / "snntorch_digits_flat_mlp.nir"
T = 8
FOREIGN = ("--nir-convention", "snntorch", "--time-steps", str(T))


# -- helpers --------------------------------------------------------------------------------------

def digits(split: str):
    ds, _ = load_dataset("digits", split)
    x = np.stack([ds[i][0].numpy() for i in range(len(ds))])           # [N, 1, 8, 8]
    y = np.array([ds[i][1] for i in range(len(ds))], dtype=np.int64)
    return x, y


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The digits splits as a user's .npy files: test images flattened row-major to [360, 64]
    (x.npy, y.npy), the training images flattened (c.npy), and image-shaped copies."""
    d = tmp_path_factory.mktemp("userdata")
    x, y = digits("test")
    c, _ = digits("train")
    np.save(d / "x.npy", x.reshape(len(x), -1))
    np.save(d / "y.npy", y)
    np.save(d / "c.npy", c.reshape(len(c), -1))
    np.save(d / "img16.npy", x[:16])
    np.save(d / "y16.npy", y[:16])
    np.save(d / "calib_img.npy", c[:256])
    return d


def snntorch_net(graph):
    """The snntorch network the fixture was exported from, rebuilt from the file's weights
    (nn.Linear -> snn.Leaky -> nn.Linear -> snn.Leaky, reset "zero")."""
    import snntorch as snn
    from torch import nn

    from compiler.nir.conventions import SNNTORCH_DT, snntorch_beta

    def leaky(name):
        tau = graph.nodes[name].tau
        beta = float(snntorch_beta(tau[0], SNNTORCH_DT))
        return snn.Leaky(beta=torch.full(tau.shape, beta), threshold=torch.ones(tau.shape),
                         init_hidden=True, reset_mechanism="zero")

    w0, w2 = graph.nodes["0"].weight, graph.nodes["2"].weight
    net = nn.Sequential(nn.Linear(w0.shape[1], w0.shape[0]), leaky("1"),
                        nn.Linear(w2.shape[1], w2.shape[0]), leaky("3"))
    with torch.no_grad():
        for i in (0, 2):
            net[i].weight.copy_(torch.from_numpy(graph.nodes[str(i)].weight))
            net[i].bias.copy_(torch.from_numpy(graph.nodes[str(i)].bias))
    return net


@pytest.fixture(scope="module")
def snntorch_predictions(files):
    """snntorch's own predictions on x.npy: the sample presented at each of T steps, the
    class with most output spikes."""
    from snntorch import utils as snn_utils

    graph = nir.read(FLAT_MLP)
    net = snntorch_net(graph)
    x = torch.from_numpy(np.load(files / "x.npy"))
    snn_utils.reset(net)
    with torch.no_grad():
        counts = sum(net(x) for _ in range(T))
    return counts.argmax(1).numpy()


def test_the_fixture_is_the_usual_flat_snntorch_mlp():
    graph = nir.read(FLAT_MLP)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {"input": "Input", "0": "Affine", "1": "LIF", "2": "Affine", "3": "LIF",
                     "output": "Output"}
    assert list(graph.nodes["input"].input_type["input"]) == [64]       # flat, no Flatten
    assert graph.nodes["0"].weight.shape == (96, 64) and graph.nodes["2"].weight.shape == (10, 96)


# -- 1. + 3. the flat MLP end to end ------------------------------------------------------------

def test_flat_mlp_compiles_with_user_data_float_equals_snntorch(files, snntorch_predictions,
                                                               tmp_path, capsys):
    y = np.load(files / "y.npy")
    snn_acc = float((snntorch_predictions == y).mean())
    assert snn_acc == pytest.approx(348 / 360)       # 96.67 % in snntorch
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", files / "x.npy",
                "--labels", files / "y.npy", "--calibration-data", files / "c.npy",
                "--target", "reference", "-o", tmp_path / "art", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["samples"] == 360 and report["dataset"] is None
    assert report["accuracy"]["float"] == snn_acc        # our float executor = snntorch
    assert report["accuracy"]["reference"] == pytest.approx(349 / 360)   # 96.94 %
    assert report["float_vs_reference"]["prediction_mismatches"] == 1
    assert report["data"] == {
        "calibration": {"source": "--calibration-data", "path": str(files / "c.npy"),
                        "shape": [64], "labels": None, "samples": 256},
        "verification": {"source": "--data", "path": str(files / "x.npy"), "shape": [64],
                         "labels": str(files / "y.npy"), "samples": 360}}
    assert f"verified on       360 samples of --data {files / 'x.npy'}, labels " in proc.stdout
    graph = load_graph(tmp_path / "art")
    assert graph.meta["sample_shape"] == [64] and graph.input_node.shape == (64, 1, 1)
    assert "dataset" not in graph.meta


@pytest.mark.lava
def test_flat_mlp_in_lava_equals_the_reference(files, snntorch_predictions, tmp_path, capsys):
    """The issue's "done when": --data/--labels only (calibration defaults to --data, and
    the report says so), every test image, Lava vs reference spike for spike."""
    y = np.load(files / "y.npy")
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", files / "x.npy",
                "--labels", files / "y.npy", "--target", "lava-sim", "--samples", "360",
                "-o", tmp_path / "art", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["accuracy"]["float"] == float((snntorch_predictions == y).mean())
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["spikes_compared"] == 360 * T * (96 + 10)
    assert report["accuracy"]["lava"] == report["accuracy"]["reference"]
    calib = report["data"]["calibration"]
    assert calib["source"] == "--data" and calib["samples"] == 256
    assert calib["note"] == "no --calibration-data given: calibrated on --data"
    assert "(no --calibration-data given: calibrated on --data)" in proc.stdout
    # spikeform-run on [B, 64] vectors: the reference's predictions
    from compiler.reference import run_reference

    out = tmp_path / "r.json"
    assert run_main([str(tmp_path / "art"), "--input", str(files / "x.npy"), "--labels",
                     str(files / "y.npy"), "--samples", "20", "--out", str(out), "-q"]) == 0
    result = json.loads(out.read_text())
    ref = run_reference(load_graph(tmp_path / "art"), np.load(files / "x.npy")[:20])
    assert result["predictions"] == ref.predictions.tolist()


@pytest.mark.lava
def test_flat_mlp_on_lava_float_and_spike_trains(files, tmp_path, capsys):
    """lava-sim-float (Lava's floating-point models vs the float executor), and spike-train
    input [B, T, 64]: the import reads the input as spikes when --data holds spike trains."""
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", files / "x.npy",
                "--target", "lava-sim-float", "--samples", "3", "-o", tmp_path / "f", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["mismatches"]["spikes"] == 0 and report["mismatches"]["predictions"] == 0
    assert report["accuracy"]["float"] is None      # no --labels: nothing to score
    x = np.load(files / "x.npy")[:24]
    spikes = (np.random.default_rng(0).random((24, T, 64)) < x[:, None, :]).astype(np.uint8)
    np.save(tmp_path / "s.npy", spikes)
    np.save(tmp_path / "sy.npy", np.load(files / "y.npy")[:24])
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", tmp_path / "s.npy",
                "--labels", tmp_path / "sy.npy", "--target", "lava-sim", "--samples", "6",
                "-o", tmp_path / "s", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["input_encoding"]["encoding"] == "spikes"
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert run_main([str(tmp_path / "s"), "--input", str(tmp_path / "s.npy"), "--samples", "2",
                     "-q"]) == 0
    capsys.readouterr()
    refused(call(capsys, run_main, tmp_path / "s", "--input", files / "x.npy"), "spikeform-run",
            f"--input '{files / 'x.npy'}' does not fit this network: shape [360, 64]",
            "expected spike trains [B, 8, 64] of 0s and 1s")


def test_flat_mlp_on_a_registered_data_set_is_flattened(tmp_path, capsys):
    """--dataset digits: the 8x8 images are flattened row-major to the [64] the network takes,
    and the summary and report say so (it used to fail with "got img_size=1")."""
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--dataset", "digits",
                "--target", "reference", "--samples", "40", "-o", tmp_path / "art", "-q")
    assert proc.returncode == 0, proc.stderr
    assert ("calibrated on     256 samples of digits (train split), [1, 8, 8] samples "
            "flattened row-major to [64]") in proc.stdout
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["data"]["verification"] == {
        "source": "dataset", "dataset": "digits", "split": "test", "shape": [64],
        "reshaped_from": [1, 8, 8], "samples": 40}
    x, y = digits("test")
    from compiler.reference import run_reference

    ref = run_reference(load_graph(tmp_path / "art"), x[:40].reshape(40, 64))
    assert report["accuracy"]["reference"] == float((ref.predictions == y[:40]).mean())


@pytest.mark.lava
def test_flat_artifact_runs_on_its_data_set(tmp_path, capsys):
    art = tmp_path / "art"
    assert compile_main([str(FLAT_MLP), *FOREIGN, "--dataset", "digits", "--no-verify",
                         "--target", "reference", "-o", str(art), "-q"]) == 0
    out = tmp_path / "r.json"
    assert run_main([str(art), "--samples", "10", "--out", str(out), "-q"]) == 0
    from compiler.reference import run_reference

    x, _ = digits("test")
    result = json.loads(out.read_text())
    assert result["predictions"] == run_reference(load_graph(art),
                                                  x[:10].reshape(10, 64)).predictions.tolist()


def test_flat_mlp_exports_to_nir_and_back(files, tmp_path, capsys):
    """--target nir writes the flat network; the file compiles to the same artifact as the
    snntorch file it came from, and stock NIR reads it."""
    proc = call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--target", "nir",
                "-o", tmp_path / "flat.nir", "-q")
    assert proc.returncode == 0, proc.stderr
    assert set(nir.read(tmp_path / "flat.nir").nodes) >= {"input", "0", "1", "2", "3"}
    data = ("--data", files / "x.npy", "--labels", files / "y.npy", "--target", "reference",
            "--samples", "50", "-q")
    assert call(capsys, compile_main, tmp_path / "flat.nir", *data, "-o",
                tmp_path / "a").returncode == 0
    assert call(capsys, compile_main, FLAT_MLP, *FOREIGN, *data, "-o",
                tmp_path / "b").returncode == 0
    for name in ("graph.json", "tensors.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# -- 2. user data for checkpoints and spikeform-report ---------------------------------------------

def test_a_checkpoint_with_the_users_own_test_set(files, tmp_path, capsys):
    """The same images as .npy files give the same artifact and accuracies as the data set."""
    own = call(capsys, compile_main, DIGITS_CKPT, "--data", files / "img16.npy", "--labels",
               files / "y16.npy", "--calibration-data", files / "calib_img.npy",
               "--target", "reference", "-o", tmp_path / "own", "-q")
    assert own.returncode == 0, own.stderr
    ref = call(capsys, compile_main, DIGITS_CKPT, "--target", "reference", "--samples", "16",
               "-o", tmp_path / "ds", "-q")
    assert ref.returncode == 0, ref.stderr
    for name in ("graph.json", "tensors.bin"):
        assert (tmp_path / "own" / name).read_bytes() == (tmp_path / "ds" / name).read_bytes()
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("own", "ds"))
    assert a["accuracy"] == b["accuracy"] and a["samples"] == 16 and a["dataset"] == "digits"
    assert a["data"]["verification"]["source"] == "--data"
    assert a["data"]["calibration"]["source"] == "--calibration-data"


def test_report_with_user_data(files, tmp_path, capsys):
    """spikeform-report: a checkpoint measured on --data (calibrated on it by default), then
    the flat MLP's artifact on --data; report.json says where the samples came from."""
    out = tmp_path / "ckpt.report"
    proc = call(capsys, report_main, DIGITS_CKPT, "--data", files / "img16.npy", "--labels",
                files / "y16.npy", "--samples", "4", "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 4
    assert report["data"]["verification"]["source"] == "--data"
    assert report["data"]["verification"]["samples"] == 4
    assert report["data"]["calibration"] == {
        "source": "--data", "path": str(files / "img16.npy"), "shape": [1, 8, 8],
        "samples": 16, "note": "no --calibration-data given: calibrated on --data"}
    assert "calibrated on     16 samples of --data" in proc.stdout
    art = tmp_path / "mlp"
    assert compile_main([str(FLAT_MLP), *FOREIGN, "--data", str(files / "x.npy"), "--no-verify",
                         "--target", "reference", "-o", str(art), "-q"]) == 0
    proc = call(capsys, report_main, art, "--data", files / "x.npy", "--labels",
                files / "y.npy", "--samples", "12", "-o", tmp_path / "mlp.report", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "mlp.report" / "report.json").read_text())
    assert report["samples"] == 12 and report["accuracy"]["reference"] is not None
    assert report["data"]["calibration"] is None       # an artifact: quantized already
    assert report["data"]["verification"]["labels"] == str(files / "y.npy")
    refused(call(capsys, report_main, art, "-o", tmp_path / "r2", "-q"), "spikeform-report",
            "names no data set to measure on", "--data X.npy (vectors [B, 64]")


# -- bad files: exit 2 naming the file and the expected shape ------------------------------------

def _save(tmp_path, name, arr):
    np.save(tmp_path / name, arr, allow_pickle=True)
    return tmp_path / name


EXPECTED = "expected vectors [B, 64] with values in [0, 1]"


@pytest.mark.parametrize("make, needles", [
    (lambda: np.zeros((4, 65), np.float32), ("does not fit this network: shape [4, 65]",)),
    (lambda: np.zeros((4, 1, 8, 8), np.float32), ("shape [4, 1, 8, 8]",)),
    (lambda: np.zeros((0, 64), np.float32), ("holds no samples (shape [0, 64])",)),
    (lambda: np.float32(0.5), ("holds a single number",)),
    (lambda: np.full((2, 64), "0.5"), ("dtype <U3 (text)",)),
    (lambda: np.zeros((2, 64), np.complex64), ("complex64", "imaginary part")),
    (lambda: np.where(np.arange(128).reshape(2, 64) == 70, np.nan, 0.5),
     ("1 NaN or infinite value", "nan in sample 1 at [6]")),
    (lambda: np.full((2, 64), 16, np.uint8), ("values must lie in [0, 1] (found 16..16",
                                               "divide 8-bit images by 255")),
])
@pytest.mark.parametrize("flag", ["--data", "--calibration-data"])
def test_bad_data_files_name_the_file_and_the_expected_shape(files, tmp_path, capsys, make,
                                                             needles, flag):
    bad = _save(tmp_path, "bad.npy", make())
    extra = ("--data", files / "x.npy") if flag == "--calibration-data" else ()
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, *extra, flag, bad, "--target",
                 "reference", "-o", tmp_path / "art", "-q"),
            "spikeform-compile", f"{flag} '{bad}'", EXPECTED, *needles)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("make, needles", [
    (lambda: np.arange(5), ("has 5 entries for 4 samples of --data",
                            "expected [4] integer class indices in 0..9")),
    (lambda: np.array([0.5, 1, 2, 3]), ("not whole numbers", "expected [4] integer")),
    (lambda: np.zeros((4, 1), np.int64), ("has shape [4, 1]", "expected [4] integer")),
    (lambda: np.array([0, 1, 2, 10]), ("label 10 of sample 3 is not a class of this network "
                                       "(0..9)",)),
    (lambda: np.zeros(0, np.int64), ("holds no samples", "expected [4] integer")),
    (lambda: np.array(["a", "b", "c", "d"]), ("not whole numbers",)),
])
def test_bad_labels_name_the_file(files, tmp_path, capsys, make, needles):
    x = _save(tmp_path, "x.npy", np.load(files / "x.npy")[:4])
    labels = _save(tmp_path, "y.npy", make())
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", x, "--labels", labels,
                 "--target", "reference", "-o", tmp_path / "art", "-q"),
            "spikeform-compile", f"--labels '{labels}'", *needles)


def test_unreadable_files_are_refused_unread(files, tmp_path, capsys):
    pickled = _save(tmp_path, "o.npy", np.array([{"evil": 1}, None], dtype=object))
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", pickled, "--target",
                 "reference", "-o", tmp_path / "a", "-q"),
            "spikeform-compile", f"cannot read --data '{pickled}'", EXPECTED)
    np.savez(tmp_path / "z.npz", x=np.zeros((2, 64)))
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", tmp_path / "z.npz",
                 "--target", "reference", "-o", tmp_path / "a", "-q"),
            "spikeform-compile", "is an .npz archive", "numpy.save", EXPECTED)
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", tmp_path / "none.npy",
                 "--target", "reference", "-o", tmp_path / "a", "-q"),
            "spikeform-compile", f"cannot read --data '{tmp_path / 'none.npy'}'", EXPECTED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy", "z.npz"]


def test_bad_spike_trains_and_user_data_for_spikeform_report(files, tmp_path, capsys):
    trains = np.zeros((3, T, 64), np.float32)
    trains[1, 2, 5] = 0.5
    bad = _save(tmp_path, "s.npy", trains)
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", bad, "--target",
                 "reference", "-o", tmp_path / "a", "-q"),
            "spikeform-compile", f"--data '{bad}' holds 1 value(s) that are not spikes",
            "expected spike trains [B, 8, 64] of 0s and 1s")
    steps = _save(tmp_path, "t.npy", np.zeros((3, 5, 64), np.float32))
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, "--data", steps, "--target",
                 "reference", "-o", tmp_path / "a", "-q"),
            "spikeform-compile", f"--data '{steps}'", "shape [3, 5, 64]: the network runs 8 "
            "time steps, the spike trains have 5", "expected spike trains [B, 8, 64]")
    # a checkpoint's input encoding is the model's: spike trains are refused, by shape
    refused(call(capsys, report_main, DIGITS_CKPT, "--data", steps, "-o", tmp_path / "r", "-q"),
            "spikeform-report", f"--data '{steps}' does not fit this network",
            "expected images [B, 1, 8, 8] with values in [0, 1]")


@pytest.mark.parametrize("args, needles", [
    (("--labels", "y.npy"), ("--labels goes with --data",)),
    (("--data", "x.npy", "--labels", "y.npy", "--no-verify"), ("--labels has no effect with "
                                                               "--no-verify",)),
    (("--data", "x.npy", "--data-dir", "/tmp"), ("--data-dir has no effect",)),
    (("--calibration-data", "x.npy", "--calibration-samples", "0"),
     ("--calibration-data has no effect with --calibration-samples 0",)),
    (("--data", "x.npy", "--target", "nir"), ("--data do", "not apply to --target nir")),
    ((), ("names no data set for calibration and verification", "--data X.npy (vectors "
          "[B, 64] with values in [0, 1]) with --labels Y.npy", "--dataset NAME")),
])
def test_data_flags_that_cannot_take_effect_are_refused(files, tmp_path, capsys, args, needles):
    args = [str(files / a) if a.endswith(".npy") else a for a in args]
    if "--target" not in args:
        args += ["--target", "reference"]
    refused(call(capsys, compile_main, FLAT_MLP, *FOREIGN, *args, "-o", tmp_path / "a", "-q"),
            "spikeform-compile", *needles)
    assert not (tmp_path / "a").exists()


def test_a_data_set_that_does_not_fit_names_both_shapes(tmp_path, capsys):
    """A registered data set whose samples the network cannot take: both shapes and --data
    are named (not the data set's img_size parameter)."""
    w = np.ones((10, 100), np.float32)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=w, bias=np.zeros(10, np.float32)),
        nir.LIF(tau=np.full(10, 2e-4), r=np.full(10, 2.0), v_leak=np.zeros(10),
                v_threshold=np.ones(10)))
    nir.write(tmp_path / "k100.nir", graph)
    err = refused(call(capsys, compile_main, tmp_path / "k100.nir", *FOREIGN, "--dataset",
                       "digits", "--target", "reference", "-o", tmp_path / "a", "-q"),
                  "spikeform-compile", "the data set digits has samples of shape [1, 8, 8] "
                  "(64 values); the network takes [100] (100 values) per sample",
                  "--data X.npy ([B, 100])")
    assert "img_size" not in err
    conv = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 28, 28])}),
               "flat": nir.Flatten(input_type={"input": np.array([1, 28, 28])}, start_dim=0,
                                   end_dim=-1),
               "fc": nir.Affine(weight=np.ones((10, 784), np.float32),
                                bias=np.zeros(10, np.float32)),
               "lif": nir.LIF(tau=np.full(10, 2e-4), r=np.full(10, 2.0), v_leak=np.zeros(10),
                              v_threshold=np.ones(10)),
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(tmp_path / "mnist.nir", conv)
    err = refused(call(capsys, compile_main, tmp_path / "mnist.nir", *FOREIGN, "--dataset",
                       "digits", "--target", "reference", "-o", tmp_path / "a", "-q"),
                  "spikeform-compile", "the data set digits has samples of shape [1, 8, 8]",
                  "the network takes [1, 28, 28]", "--data X.npy ([B, 1, 28, 28])")
    assert "img_size" not in err
