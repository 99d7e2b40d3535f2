"""Checkpoint files: exact round trips, atomic writes, and a clear refusal of every bad file."""
from __future__ import annotations

import argparse
import os
import pickle
import random
import shlex
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from spikformer_neuro import checkpoint as ckpt
from spikformer_neuro.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from spikformer_neuro.model import build_model
from spikformer_neuro.zoo import get_config

CLASSES = ["zero", "one", "two", "three"]  # test-micro has 4 classes
TOP_LEVEL_KEYS = {"format", "format_version", "model_config", "state_dict", "dataset",
                  "class_names", "normalisation", "metrics", "train_args", "training_state",
                  "created_by", "quantization"}


def trained_like(name: str = "test-micro"):
    """A model whose BatchNorm statistics differ from a fresh one's, so a round trip that
    dropped buffers would change the logits."""
    torch.manual_seed(0)
    model = build_model(get_config(name))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "model.pth", model=trained_like(), dataset="digits",
                           class_names=CLASSES, metrics={"test_accuracy": 0.5})


def rewrite(path, change):
    """Re-save the checkpoint at ``path`` after ``change`` edits its raw dict in place."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    change(raw)
    torch.save(raw, path)
    return path


def load_error(path, *words, **kwargs) -> str:
    """Load ``path``, expect a one-paragraph CheckpointError naming it and ``words``."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    err = info.value
    message = str(err)
    assert str(path) in message
    assert "To fix:" in message
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return message


# -- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_round_trip_gives_identical_logits(tmp_path, name):
    model = trained_like(name)
    cfg = model.cfg
    path = save_checkpoint(tmp_path / "run" / "model.pth", model=model, dataset="digits",
                           class_names=CLASSES)
    assert os.listdir(tmp_path / "run") == ["model.pth"]  # parent created, no temp left

    loaded = load_checkpoint(path)
    assert loaded.path == path and loaded.config == cfg
    assert loaded.dataset == "digits" and loaded.class_names == CLASSES
    assert loaded.format_version == FORMAT_VERSION
    assert loaded.created_by.startswith("spikformer-neuro ")
    assert loaded.normalisation == {"mean": [0.0] * cfg.in_channels,
                                    "std": [1.0] * cfg.in_channels}
    rebuilt = loaded.build_model()
    assert not rebuilt.training
    x = torch.rand(3, *cfg.input_shape())
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_file_is_plain_and_has_the_documented_layout(saved):
    raw = torch.load(saved, map_location="cpu", weights_only=True)
    assert set(raw) == TOP_LEVEL_KEYS
    assert raw["format"] == CHECKPOINT_FORMAT and raw["format_version"] == FORMAT_VERSION
    assert raw["model_config"] == get_config("test-micro").to_dict()
    assert type(raw["state_dict"]) is dict
    assert all(t.device.type == "cpu" and not t.requires_grad for t in raw["state_dict"].values())
    assert raw["training_state"] is None and raw["train_args"] == {}


def test_normalisation_follows_the_config(tmp_path):
    model = build_model(get_config("test-micro").replace(input_mean=(0.5,), input_std=(0.25,)))
    path = save_checkpoint(tmp_path / "m.pth", model=model, dataset="digits", class_names=CLASSES)
    assert load_checkpoint(path).normalisation == {"mean": [0.5], "std": [0.25]}


def test_metrics_train_args_and_training_state_survive(tmp_path):
    model = trained_like().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    training_state = {
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": 3, "best_metric": 0.75,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    metrics = {"test_accuracy": np.float64(0.98), "epoch": np.int64(12),
               "per_class": [np.float32(0.5), 1.0], "passed": np.bool_(True)}
    train_args = {"config": "test-micro", "lr": 1e-3, "pools": (2, 3), "out": None}
    path = save_checkpoint(tmp_path / "m.pth", model=model, dataset="digits",
                           class_names=CLASSES, metrics=metrics, train_args=train_args,
                           training_state=training_state)

    loaded = load_checkpoint(path)
    assert loaded.metrics == {"test_accuracy": 0.98, "epoch": 12, "per_class": [0.5, 1.0],
                              "passed": True}
    assert [type(v) for v in loaded.metrics.values()] == [float, int, list, bool]
    assert loaded.train_args == train_args
    state = loaded.training_state
    assert state["epoch"] == 3 and state["best_metric"] == 0.75
    assert torch.equal(state["rng"]["torch"], training_state["rng"]["torch"])
    assert state["rng"]["python"] == training_state["rng"]["python"]
    random.setstate(state["rng"]["python"])  # tuples stay tuples, as setstate requires

    resumed = torch.optim.AdamW(model.parameters(), lr=1e-3)
    resumed.load_state_dict(state["optimizer"])
    for (_, a), (_, b) in zip(sorted(resumed.state_dict()["state"].items()),
                              sorted(optimizer.state_dict()["state"].items())):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    assert state["scheduler"] == scheduler.state_dict()


# -- saving refuses what would not load -----------------------------------------------------
@pytest.mark.parametrize("field, value, where", [
    ("metrics", {"confusion": np.zeros((4, 4))}, "metrics['confusion']"),
    ("train_args", {"args": argparse.Namespace(lr=0.1)}, "train_args['args']"),
    ("training_state", {"rng": {"numpy": ("MT19937", np.zeros(3))}},
     "training_state['rng']['numpy'][1]"),
    ("metrics", {"f": object()}, "metrics['f']"),
])
def test_save_rejects_values_that_are_not_plain(tmp_path, field, value, where):
    with pytest.raises(ValueError, match=r"weights_only") as info:
        save_checkpoint(tmp_path / "m.pth", model=trained_like(), dataset="digits",
                        class_names=CLASSES, **{field: value})
    assert str(info.value).startswith(where + " is a ")
    assert os.listdir(tmp_path) == []


def test_save_rejects_wrong_class_count_and_non_spikformer(tmp_path):
    with pytest.raises(ValueError, match="3 class_names for a model with 4 classes"):
        save_checkpoint(tmp_path / "m.pth", model=trained_like(), dataset="digits",
                        class_names=CLASSES[:3])
    with pytest.raises(TypeError, match="must be a Spikformer"):
        save_checkpoint(tmp_path / "m.pth", model=nn.Linear(2, 2), dataset="digits",
                        class_names=CLASSES)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failed_save_leaves_no_file_and_keeps_the_old_one(saved, monkeypatch, failure):
    before = saved.read_bytes()

    def save_half_then_fail(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])
        raise failure

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    for target in (saved, saved.parent / "new.pth"):
        with pytest.raises(type(failure)):
            save_checkpoint(target, model=trained_like(), dataset="other",
                            class_names=CLASSES, metrics={"test_accuracy": 0.9})
    assert os.listdir(saved.parent) == ["model.pth"]
    assert saved.read_bytes() == before
    monkeypatch.undo()
    assert load_checkpoint(saved).metrics == {"test_accuracy": 0.5}


# -- loading refuses every bad file, naming it ----------------------------------------------
def test_missing_directory_and_empty_files(tmp_path):
    load_error(tmp_path / "nope.pth", "does not exist")
    load_error(tmp_path, "is a directory")
    empty = tmp_path / "empty.pth"
    empty.touch()
    load_error(empty, "empty")


def test_truncated_and_random_files(saved, tmp_path):
    half = tmp_path / "half.pth"
    half.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    load_error(half, "truncated or corrupt")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(random.Random(0).randbytes(4096))
    load_error(noise, "not the zip archive torch.save writes", "corrupt")
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("notes.txt", "hello")
    load_error(other_zip, "not a torch checkpoint")


@pytest.mark.parametrize("needle", [
    lambda: trained_like().state_dict()["head.weight"].numpy().tobytes(),  # tensor data
    lambda: CHECKPOINT_FORMAT.encode(),  # inside data.pkl
], ids=["tensor", "pickle"])
def test_flipped_byte_fails_the_crc_check(saved, needle):
    """torch.load itself would read a damaged tensor as different weights without a word."""
    data = bytearray(saved.read_bytes())
    at = data.index(needle()) + 3
    data[at] ^= 0x10
    saved.write_bytes(data)
    load_error(saved, "truncated or corrupt", "fails its CRC check")


class RunsShellCommand:
    """Unpickling this runs ``touch marker``: the canonical malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_payload_runs_under_plain_pickle(tmp_path):
    """Control for the tests below: the payload really executes when unpickled unsafely."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(RunsShellCommand(marker)))
    assert marker.exists()


def test_pickled_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "x": RunsShellCommand(marker)}, path)
    message = load_error(path, "refused: the file contains pickled code/objects", "system",
                         "only plain checkpoints written by spikeform-train are loaded")
    assert "weights_only` set to `False`" not in message  # torch's unsafe advice is dropped
    assert not marker.exists()


@pytest.mark.parametrize("write", [
    lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
    lambda obj, path: path.write_bytes(pickle.dumps(obj)),
], ids=["legacy-torch-format", "raw-pickle"])
def test_non_zip_pickles_are_refused_unread(tmp_path, write):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write({"x": RunsShellCommand(marker)}, path)
    load_error(path, "refused unread")
    assert not marker.exists()


def test_pickled_objects_are_refused(saved):
    rewrite(saved, lambda raw: raw.update(train_args=argparse.Namespace(lr=0.1)))
    load_error(saved, "refused", "argparse.Namespace")


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    load_error(path, "TorchScript archive", "refused unread")


def test_bare_state_dict(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(trained_like().state_dict(), path)
    load_error(path, "bare state dict of some model", "sps.stages.0.conv.weight",
               "must be made by spikeform-train", "configuration")


@pytest.mark.parametrize("content, words", [
    ({"model": {"w": torch.zeros(2)}, "epoch": 3}, ["without a 'format' key", "'model'",
                                                    "not a spikformer-neuro checkpoint"]),
    ({}, ["without a 'format' key", "keys: none"]),
    ([1, 2, 3], ["holds a list", "not a spikformer-neuro checkpoint"]),
    (torch.zeros(3), ["holds a Tensor"]),
    ({"format": "other-tool"}, ["'other-tool'", CHECKPOINT_FORMAT]),
])
def test_foreign_files(tmp_path, content, words):
    path = tmp_path / "foreign.pth"
    torch.save(content, path)
    load_error(path, *words)


def test_newer_format_version(saved):
    rewrite(saved, lambda raw: raw.update(format_version=FORMAT_VERSION + 1))
    load_error(saved, "written by a newer spikformer-neuro", "upgrade spikformer-neuro")


def test_missing_keys_are_named(saved):
    rewrite(saved, lambda raw: [raw.pop("dataset"), raw.pop("class_names")])
    load_error(saved, "lacks the required keys", "'dataset'", "'class_names'")


@pytest.mark.parametrize("key, value, words", [
    ("class_names", ["a", 1, "c", "d"], ["class_names must be a list of str"]),
    ("class_names", "abcd", ["class_names must be a list, got str"]),
    ("class_names", ["a", "b"], ["2 class_names", "4 classes"]),
    ("metrics", [0.9], ["metrics must be a dict, got list"]),
    ("training_state", 5, ["training_state must be a dict or None, got int"]),
    ("format_version", "1", ["format_version is '1'"]),
    ("state_dict", {"head.weight": [1.0]}, ["state_dict must map str names to tensors",
                                            "head.weight"]),
])
def test_wrong_types(saved, key, value, words):
    rewrite(saved, lambda raw: raw.update({key: value}))
    load_error(saved, *words)


@pytest.mark.parametrize("change, words", [
    ({"num_heads": 3}, ["model_config is invalid", "not divisible by num_heads 3"]),
    ({"colour": "red"}, ["model_config is invalid", "unknown configuration keys ['colour']"]),
    ({"tau": "fast"}, ["model_config is invalid"]),
])
def test_invalid_model_config(saved, change, words):
    rewrite(saved, lambda raw: raw["model_config"].update(change))
    load_error(saved, *words)


@pytest.mark.parametrize("change, words", [
    (lambda sd: sd.pop("head.weight"), ["1 missing keys", "head.weight (expected [4, 16])"]),
    (lambda sd: sd.update({"extra.weight": torch.zeros(2, 3)}),
     ["1 unexpected keys", "extra.weight (found [2, 3])"]),
    (lambda sd: sd.update({"head.weight": torch.zeros(5, 16)}),
     ["1 shape mismatches", "head.weight (expected [4, 16], found [5, 16])"]),
])
def test_state_dict_that_does_not_match_the_config(saved, change, words):
    rewrite(saved, lambda raw: change(raw["state_dict"]))
    load_error(saved, "does not match its model_config 'test-micro'", *words)

    unchecked = load_checkpoint(saved, verify_state_dict=False)
    with pytest.raises(CheckpointError) as info:
        unchecked.build_model()
    assert str(saved) in str(info.value) and all(w in str(info.value) for w in words[1:])


def test_long_mismatch_lists_are_cut_short(saved):
    rewrite(saved, lambda raw: raw.update(state_dict={}))
    message = load_error(saved, "74 missing keys")
    assert message.count("(expected") == ckpt._SHOW and "and 69 more" in message


def test_quantization_hints_survive_and_are_checked(tmp_path):
    model = build_model(get_config("test-micro"))
    hints = {"method": "qat", "vth": {"sps.stages.0.lif": 123}, "input_levels": 16}
    path = save_checkpoint(tmp_path / "m.pth", model=model, dataset="digits",
                           class_names=CLASSES, quantization=hints)
    assert load_checkpoint(path).quantization == hints
    raw = torch.load(path, weights_only=True)
    raw["quantization"] = {"vth": {"sps.stages.0.lif": 1.5}}
    torch.save(raw, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="quantization hints"):
        load_checkpoint(tmp_path / "bad.pth")
