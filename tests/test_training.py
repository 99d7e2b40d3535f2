"""spikeform-train: schedule, a tiny overfitting run, resume, best checkpoint, CLI errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikformer_neuro.checkpoint import load_checkpoint
from spikformer_neuro.training.cli import list_configs, main
from spikformer_neuro.training.schedule import warmup_cosine_factor
from spikformer_neuro.zoo import config_names


def test_warmup_then_cosine_to_floor():
    f = [warmup_cosine_factor(s, 10, 110, 0.01) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up
    assert warmup_cosine_factor(110, 10, 110, 0.01) == pytest.approx(0.01)


def test_list_configs_names_every_configuration():
    table = list_configs()
    for name in config_names():
        assert name in table
    assert "16.825M" in table  # imagenet-8-384 parameter count


def _train(tmp_path, *extra):
    out = tmp_path / "m.pth"
    argv = ["--config", "digits-tiny", "--dataset", "digits", "--out", str(out), "-q",
            "--threads", "2", *extra]
    return main(argv), out


def test_tiny_overfitting_run_memorises_its_samples(tmp_path):
    # 20 digits, full batch, no augmentation or smoothing: the loss must collapse and the
    # network must fit (nearly) all of its training samples.
    rc, out = _train(tmp_path, "--epochs", "40", "--train-subset", "20", "--test-subset", "20",
                     "--batch-size", "20", "--no-augment", "--lr", "5e-3", "--warmup-epochs", "2",
                     "--label-smoothing", "0")
    assert rc == 0
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert len(log) == 40
    assert log[-1]["train_accuracy"] >= 0.9
    assert log[-1]["train_loss"] < 0.25 * log[0]["train_loss"]
    ckpt = load_checkpoint(out)
    assert ckpt.dataset == "digits" and ckpt.config.name == "digits-tiny"
    assert ckpt.metrics["test_accuracy"] == max(r["test_accuracy"] for r in log)
    assert ckpt.train_args["epochs"] == 40


def test_resume_after_interruption_continues_exactly(tmp_path, monkeypatch):
    import spikformer_neuro.training.cli as cli

    common = ["--epochs", "3", "--train-subset", "96", "--test-subset", "32",
              "--batch-size", "32", "--seed", "3"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert _train(a, *common)[0] == 0

    real_epoch, calls = cli.train_one_epoch, []

    def interrupted_in_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(cli, "train_one_epoch", interrupted_in_third_epoch)
    assert _train(b, *common)[0] == 130
    monkeypatch.setattr(cli, "train_one_epoch", real_epoch)
    assert _train(b, *common, "--resume", str(b / "m.last.pth"))[0] == 0

    sa = load_checkpoint(a / "m.last.pth").state_dict
    sb = load_checkpoint(b / "m.last.pth").state_dict
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert len((b / "m.log.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("argv, message", [
    (["--config", "nope", "--dataset", "digits"], "unknown configuration 'nope'"),
    (["--config", "digits-tiny", "--dataset", "nope"], "nope"),
    (["--config", "fmnist-small", "--dataset", "digits"], "images are 8x8"),
    (["--config", "digits-tiny"], "--dataset are required"),
])
def test_cli_errors_are_one_paragraph_with_exit_code_2(tmp_path, argv, message):
    proc = subprocess.run([sys.executable, "-m", "spikformer_neuro.training.cli", *argv,
                           "--epochs", "1", "--out", str(tmp_path / "x.pth")],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pth").exists()


def test_qat_from_epoch_saves_only_grid_checkpoints(tmp_path):
    # Epoch 1 trains in float, epoch 2 on the Loihi grid; the best checkpoint must be a QAT one
    # (carrying the grid hints) even if the float epoch scored higher.
    rc, out = _train(tmp_path, "--epochs", "2", "--qat-from-epoch", "2", "--train-subset", "32",
                     "--test-subset", "16", "--batch-size", "16")
    assert rc == 0
    ckpt = load_checkpoint(out)
    assert ckpt.metrics["epoch"] == 2
    assert ckpt.quantization["method"] == "qat" and ckpt.quantization["input_levels"] == 16
    assert len(ckpt.quantization["vth"]) == 11  # every conv/linear -> LIF layer of digits-tiny


def test_qat_from_epoch_out_of_range_is_an_error(tmp_path):
    rc, out = _train(tmp_path, "--epochs", "2", "--qat-from-epoch", "3")
    assert rc == 2 and not out.exists()


def test_distributed_training_with_torchrun_on_cpu(tmp_path):
    # Two processes, Gloo backend: the same code path as multi-GPU DDP (NCCL) minus the GPUs.
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "m.pth"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m",
         "spikformer_neuro.training.cli", "--config", "digits-tiny", "--dataset", "digits",
         "--epochs", "1", "--train-subset", "64", "--test-subset", "16", "--batch-size", "16",
         "--threads", "1", "-q", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x2 processes" in proc.stdout
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert len(log) == 1  # one writer (rank 0), all 64 samples counted across both ranks
    assert load_checkpoint(out).metrics["epoch"] == 1
