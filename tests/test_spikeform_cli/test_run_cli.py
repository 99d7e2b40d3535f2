"""spikeform-run: a compiled artifact runs in Lava on its own, equal to the reference."""
import json
from pathlib import Path

import numpy as np
import pytest

from spikeform_cli.compile import main as compile_main
from compiler.reference import run_reference
from compiler.serialize import load_graph
from spikeform_cli.run import main as run_main, shard_range
from spikformer_neuro.data import load_dataset
from support.paths import DIGITS_CKPT, NIR_FIXTURES

DIGITS = DIGITS_CKPT


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "digits.compiled"
    assert compile_main([str(DIGITS), "--target", "reference", "--no-verify", "-o", str(out),
                         "-q"]) == 0
    return out


def _test_images(n):
    ds, _ = load_dataset("digits", "test")
    return (np.stack([ds[i][0].numpy() for i in range(n)]),
            np.array([ds[i][1] for i in range(n)]))


@pytest.mark.lava
def test_the_commands_target_names_are_the_backends():
    """spikeform-compile and -run share one tuple of target names (spikeform_cli.common),
    without importing Lava to check an argument; it must name what the backend runs."""
    from deploy.lava import DEFAULT_TARGET, FLOAT_TARGET, TARGETS
    from spikeform_cli.common import FLOAT_LAVA_TARGET, LAVA_TARGETS

    assert LAVA_TARGETS == TARGETS and LAVA_TARGETS[0] == DEFAULT_TARGET
    assert FLOAT_LAVA_TARGET == FLOAT_TARGET


def test_shards_partition_the_samples():
    for total in (0, 1, 7, 10):
        for n in (1, 2, 3, 4):
            parts = [list(shard_range(total, i, n)) for i in range(n)]
            assert sum(parts, []) == list(range(total))


@pytest.mark.lava
def test_run_equals_reference_with_probes_and_shards(artifact, tmp_path):
    graph = load_graph(artifact)
    x, y = _test_images(6)
    ref = run_reference(graph, x, record=["blocks.0.attn.q.lif"])
    preds, probes = [], []
    for shard in ("0/2", "1/2"):
        out, probe = tmp_path / f"r{shard[0]}.json", tmp_path / f"p{shard[0]}.npz"
        assert run_main([str(artifact), "--samples", "6", "--shard", shard, "--chunk", "2",
                         "--probe", "blocks.0.attn.q.lif", "--probe-out", str(probe),
                         "--out", str(out), "-q"]) == 0
        result = json.loads(out.read_text())
        preds += result["predictions"]
        probes.append(np.load(probe)["blocks.0.attn.q.lif"])
        assert result["throughput"]["samples_per_s"] > 0
    assert preds == ref.predictions.tolist()
    assert np.array_equal(np.concatenate(probes, axis=1), ref.outputs["blocks.0.attn.q.lif"])


@pytest.mark.lava
def test_user_inputs_from_npy_with_labels(artifact, tmp_path, capsys):
    x, y = _test_images(3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert run_main([str(artifact), "--input", str(tmp_path / "x.npy"), "--labels",
                     str(tmp_path / "y.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ref = run_reference(load_graph(artifact), x)
    assert result["predictions"] == ref.predictions.tolist()
    assert result["accuracy"] == float((ref.predictions == y).mean())


@pytest.mark.parametrize("extra, message", [
    (["--shard", "2/2"], "0 <= i < n"),
    (["--probe", "nope"], "cannot probe ['nope']"),
    (["--target", "nope"], "unknown target"),
    (["--target", "loihi2"], "lava-loihi"),
    (["--samples", "0"], "--samples must be >= 1"),
])
@pytest.mark.lava
def test_bad_arguments_exit_2_with_a_message(artifact, capsys, extra, message):
    assert run_main([str(artifact), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.lava
def test_a_missing_data_set_names_the_flag(artifact, tmp_path, capsys):
    """The artifact's data set is loaded by the shared helper; its errors name --data-dir."""
    import shutil

    from compiler.serialize import save_graph

    graph = load_graph(artifact)
    graph.meta["dataset"] = "mnist"  # has no default location
    save_graph(graph, tmp_path / "mnist.compiled")
    assert run_main([str(tmp_path / "mnist.compiled"), "--target", "lava-sim", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikeform-run: error: mnist: no data directory given")
    assert err.rstrip().endswith("as --data-dir") and err.count("\n") == 1
    graph.meta.pop("dataset")
    shutil.rmtree(tmp_path / "mnist.compiled")
    save_graph(graph, tmp_path / "none.compiled")
    assert run_main([str(tmp_path / "none.compiled"), "-q"]) == 2
    assert "names no data set; pass --input" in capsys.readouterr().err


@pytest.mark.lava
def test_bad_inputs_exit_2(artifact, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 1, 5, 5), np.float32))
    assert run_main([str(artifact), "--input", str(tmp_path / "wrong.npy")]) == 2
    assert "does not fit this network" in capsys.readouterr().err
    assert run_main([str(tmp_path / "missing")]) == 2
    assert "missing graph.json" in capsys.readouterr().err


@pytest.mark.lava
def test_artifact_compiled_from_a_foreign_nir_file_runs_on_its_data_set(tmp_path):
    """An snntorch graph's artifact has no model config: spikeform-run takes the image size
    and time steps from the graph itself, and Lava equals the reference executor."""
    nir_file = NIR_FIXTURES / "snntorch_digits_mlp.nir"
    art = tmp_path / "mlp.compiled"
    assert compile_main([str(nir_file), "--target", "reference", "--no-verify", "--nir-convention",
                         "snntorch", "--time-steps", "8", "--dataset", "digits", "-o", str(art),
                         "-q"]) == 0
    graph = load_graph(art)
    assert "config" not in graph.meta
    out = tmp_path / "r.json"
    assert run_main([str(art), "--samples", "12", "--out", str(out), "-q"]) == 0
    x, y = _test_images(12)
    result = json.loads(out.read_text())
    assert result["predictions"] == run_reference(graph, x).predictions.tolist()
