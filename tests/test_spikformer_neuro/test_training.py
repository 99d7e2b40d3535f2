"""spikeform-train: schedule, a tiny overfitting run, resume, best checkpoint, CLI errors,
the validation split that chooses the best checkpoint."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from spikformer_neuro.checkpoint import load_checkpoint
from spikformer_neuro.data import load_dataset
from spikformer_neuro.data.split import (
    dataset_labels,
    indices_digest,
    stratified_split,
    without_augmentation,
)
from spikeform_cli.train import list_configs, main
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


def test_tiny_overfitting_run_memorises_its_samples(tmp_path, capsys):
    # 20 digits, full batch, no augmentation or smoothing: the loss must collapse and the
    # network must fit (nearly) all of its training samples. --val-fraction 0: all 20 train
    # and the best checkpoint is chosen on the test split, as before validation splits existed.
    rc, out = _train(tmp_path, "--epochs", "40", "--train-subset", "20", "--test-subset", "20",
                     "--batch-size", "20", "--no-augment", "--lr", "5e-3", "--warmup-epochs", "2",
                     "--label-smoothing", "0", "--val-fraction", "0")
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "[20 train / 20 test]" in stdout
    assert "warning: --val-fraction 0: the best checkpoint is chosen by TEST accuracy" in stdout
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert len(log) == 40
    assert log[-1]["train_accuracy"] >= 0.9
    assert log[-1]["train_loss"] < 0.25 * log[0]["train_loss"]
    ckpt = load_checkpoint(out)
    assert ckpt.dataset == "digits" and ckpt.config.name == "digits-tiny"
    assert ckpt.metrics["test_accuracy"] == max(r["test_accuracy"] for r in log)
    assert ckpt.metrics["selected_by"] == "test_accuracy"
    assert ckpt.train_args["epochs"] == 40 and "validation_split" not in ckpt.train_args
    assert all("val_accuracy" not in r for r in log)


def test_resume_after_interruption_continues_exactly(tmp_path, monkeypatch):
    import spikeform_cli.train as cli

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

    ca, cb = load_checkpoint(a / "m.last.pth"), load_checkpoint(b / "m.last.pth")
    # The default --val-fraction 0.1 holds out round(9.6) of the 96 samples, the same ones.
    assert ca.train_args["validation_split"]["val_size"] == 10
    assert ca.train_args["validation_split"] == cb.train_args["validation_split"]
    sa, sb = ca.state_dict, cb.state_dict
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
    proc = subprocess.run([sys.executable, "-m", "spikeform_cli.train", *argv,
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
         "spikeform_cli.train", "--config", "digits-tiny", "--dataset", "digits",
         "--epochs", "1", "--train-subset", "64", "--test-subset", "16", "--batch-size", "16",
         "--threads", "1", "-q", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x2 processes" in proc.stdout
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "val_accuracy" in log[0]  # one writer (rank 0) evaluates
    assert "[58 train / 6 val / 16 test]" in proc.stdout  # both ranks agreed on the split
    ckpt = load_checkpoint(out)
    assert ckpt.metrics["epoch"] == 1 and ckpt.metrics["selected_by"] == "val_accuracy"
    assert ckpt.train_args["validation_split"]["train_size"] == 58


# -- validation split ----------------------------------------------------------------------
def test_validation_split_is_stratified_disjoint_and_seeded():
    train_ds, _ = load_dataset("digits", "train", augment=True)
    labels = dataset_labels(train_ds)
    assert len(labels) == 1437 and np.array_equal(labels, train_ds.labels.numpy())
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(val) == 144  # round(0.1 * 1437)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(1437))
    for c in range(10):
        members, held_out = int((labels == c).sum()), int((labels[val] == c).sum())
        assert math.floor(0.1 * members) <= held_out <= math.ceil(0.1 * members), c
    again_train, again_val = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(again_train, train) and np.array_equal(again_val, val)
    other = stratified_split(labels, 0.1, seed=4)[1]
    assert len(other) == 144 and not np.array_equal(other, val)
    assert indices_digest(again_val) == indices_digest(val) != indices_digest(other)
    # Labels of a --train-subset view are the subset's.
    assert np.array_equal(dataset_labels(Subset(train_ds, range(5, 9))), labels[5:9])


def test_validation_split_leaves_every_class_a_training_sample():
    # 0.25 of 12 = 3 held out; quotas 2.25 / 0.25 / 0.5 -> 2, 0, 1 (largest remainder).
    labels = np.array([0] * 9 + [1] + [2] * 2)
    train, val = stratified_split(labels, 0.25, seed=0)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 0, 1]
    assert set(labels[train].tolist()) == {0, 1, 2}
    # round(0.5 * 11) = 6: the singleton's remainder (0.5) is the largest, but holding it out
    # would leave class 1 nothing to train on, so class 0 gives the sixth sample.
    labels = np.array([0] * 10 + [1])
    train, val = stratified_split(labels, 0.5, seed=0)
    assert np.bincount(labels[val], minlength=2).tolist() == [6, 0] and 10 in train


def test_validation_samples_are_not_augmented():
    augmented, _ = load_dataset("digits", "train", augment=True)
    plain, _ = load_dataset("digits", "train")
    view = without_augmentation(Subset(augmented, range(30)))
    assert augmented.augment is not None  # the training set keeps its augmentation
    assert all(torch.equal(view[i][0], plain[i][0]) for i in range(30))
    # ... which moves pixels: the comparison above could fail.
    assert not all(torch.equal(augmented[i][0], plain[i][0]) for i in range(30))


@pytest.mark.parametrize("val_fraction, chosen_epoch", [("0.25", 2), ("0", 3)])
def test_best_checkpoint_is_chosen_on_validation_never_test(tmp_path, monkeypatch, capsys,
                                                            val_fraction, chosen_epoch):
    import spikeform_cli.train as cli

    # --train-subset 40 -> 30 train + 10 validation samples (or 40 + 0); --test-subset 16.
    # Scripted accuracies by evaluation set size: validation peaks at epoch 2, test at 3.
    scripted = {10: [0.5, 0.9, 0.6], 16: [0.4, 0.3, 0.8]}
    seen = []

    def scripted_evaluate(model, loader, device, **kwargs):
        n = len(loader.dataset)
        seen.append(n)
        accuracy = scripted[n][seen.count(n) - 1]
        return {"loss": 1.0 - accuracy, "accuracy": accuracy, "samples": n}

    monkeypatch.setattr(cli, "evaluate", scripted_evaluate)
    rc, out = _train(tmp_path, "--epochs", "3", "--train-subset", "40", "--test-subset", "16",
                     "--batch-size", "16", "--val-fraction", val_fraction)
    assert rc == 0
    stdout = capsys.readouterr().out
    ckpt = load_checkpoint(out)
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["test_accuracy"] for r in log] == scripted[16]  # test logged every epoch
    assert ckpt.metrics["epoch"] == chosen_epoch
    assert ckpt.metrics["test_accuracy"] == scripted[16][chosen_epoch - 1]
    if val_fraction == "0":
        assert seen == [16] * 3
        assert ckpt.metrics["selected_by"] == "test_accuracy"
        assert ckpt.metrics["best_test_accuracy"] == 0.8
        assert "[40 train / 16 test]" in stdout and "warning: --val-fraction 0" in stdout
        return
    assert seen == [10, 16] * 3
    assert [r["val_accuracy"] for r in log] == scripted[10]
    assert ckpt.metrics["selected_by"] == "val_accuracy"
    assert ckpt.metrics["val_accuracy"] == ckpt.metrics["best_val_accuracy"] == 0.9
    assert "best_test_accuracy" not in ckpt.metrics
    split = ckpt.train_args["validation_split"]
    assert (split["val_fraction"], split["seed"], split["train_size"], split["val_size"]) == \
        (0.25, 0, 30, 10)
    assert "[30 train / 10 val / 16 test]" in stdout and "warning" not in stdout
    assert "best validation accuracy 0.9000 (epoch 2, test accuracy 0.3000)" in stdout


def test_resume_keeps_the_validation_split_and_refuses_another(tmp_path, capsys):
    common = ["--train-subset", "40", "--test-subset", "16", "--batch-size", "16",
              "--val-fraction", "0.25", "--seed", "5"]
    assert _train(tmp_path, "--epochs", "1", *common)[0] == 0
    last = tmp_path / "m.last.pth"
    split = load_checkpoint(last).train_args["validation_split"]
    assert (split["val_fraction"], split["seed"], split["train_size"], split["val_size"]) == \
        (0.25, 5, 30, 10)
    assert split["val_indices_sha256"] == indices_digest(stratified_split(
        dataset_labels(Subset(load_dataset("digits", "train")[0], range(40))), 0.25, 5)[1])
    capsys.readouterr()
    for changed, says in ((["--val-fraction", "0.5"], "would use --val-fraction 0.5 --seed 5"),
                          (["--seed", "6"], "would use --val-fraction 0.25 --seed 6"),
                          (["--train-subset", "60"], "(45 train / 15 validation samples"),
                          (["--val-fraction", "0"], "would use no validation split")):
        rc = _train(tmp_path, "--epochs", "2", *common, *changed, "--resume", str(last))[0]
        err = capsys.readouterr().err
        assert rc == 2, changed
        assert "must keep its validation split" in err and says in err, err
        assert "Resume with --val-fraction 0.25 --seed 5" in err
    assert load_checkpoint(last).metrics["epoch"] == 1  # nothing was trained or written
    assert _train(tmp_path, "--epochs", "2", *common, "--resume", str(last))[0] == 0
    resumed = load_checkpoint(last)
    assert resumed.metrics["epoch"] == 2 and resumed.train_args["validation_split"] == split

    # A run without a validation split resumes only without one.
    b = tmp_path / "b"
    assert _train(b, "--epochs", "1", *common, "--val-fraction", "0")[0] == 0
    capsys.readouterr()
    assert _train(b, "--epochs", "2", *common, "--resume", str(b / "m.last.pth"))[0] == 2
    assert "Resume with --val-fraction 0," in capsys.readouterr().err


@pytest.mark.parametrize("fraction, message", [
    ("1", "--val-fraction must be in [0, 1), got 1.0"),
    ("-0.1", "--val-fraction must be in [0, 1), got -0.1"),
    ("0.01", "--val-fraction 0.01 of 20 training samples leaves 20 to train on and 0"),
])
def test_unusable_val_fraction_is_an_error(tmp_path, capsys, fraction, message):
    rc, out = _train(tmp_path, "--epochs", "1", "--train-subset", "20", "--val-fraction",
                     fraction)
    assert rc == 2 and not out.exists()
    assert message in capsys.readouterr().err

