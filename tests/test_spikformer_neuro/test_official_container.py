"""Reading files of the official Spikformer code (spikformer_neuro.official.container and
.restricted_pickle): what such files hold is admitted, anything that could run code is refused
by name and never runs, and the three container kinds are recognised, DDP prefix or not.

The networks' weights come from tests/support/official_models.py with stand-in neurons (the
state dict is the same with spikingjelly's, which has no state-dict entries), so these tests
need no spikingjelly.
"""
from __future__ import annotations

import argparse
import builtins
import io
import os
import pickle
import shlex

import pytest
import torch
from torch import nn

from spikformer_neuro.checkpoint import CheckpointError, save_checkpoint
from spikformer_neuro.official import (OURS, OfficialCheckpointError, RefusedCodeError,
                                       open_source, read_container)
from spikformer_neuro.official import restricted_pickle
from spikformer_neuro.official.container import BARE, DVS, TIMM
from spikformer_neuro.testing import firing_model
from support import official_models as om


class RunsShellCommand:
    """Unpickling this runs ``touch marker`` through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class ExecsPython:
    """Unpickling this creates ``marker`` through builtins.exec."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def cifar():
    return om.build_official(om.Spec(om.CIFAR10), seed=0, neuron=om.no_neuron)


def timm_dict(model, **changes):
    """The dict timm's CheckpointSaver writes (see support.official_models.save_timm)."""
    content = {"epoch": 299, "arch": "spikformer", "state_dict": model.state_dict(),
               "optimizer": om._optimizer_state(model), "version": 2,
               "args": om.train_args(model.spec), "metric": 95.19}
    content.update(changes)
    return content


@pytest.mark.parametrize("payload", [RunsShellCommand, ExecsPython])
def test_payloads_run_under_plain_torch_load(tmp_path, payload):
    """Control for the refusals below: each payload really runs when loaded unrestricted."""
    marker = tmp_path / "ran"
    torch.save({"x": payload(marker)}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


PLANTS = {  # where in an official container the payload hides
    "namespace attribute": lambda m, p: timm_dict(m, args=argparse.Namespace(
        **vars(om.train_args(m.spec)), hook=p)),
    "optimizer state": lambda m, p: timm_dict(m, optimizer={"state": {0: {"step": p}},
                                                           "param_groups": []}),
    "deep inside a list": lambda m, p: timm_dict(m, args=argparse.Namespace(
        mean=[0.5, [1, [2, {"k": (3, [p])}]]])),
    "dvs lr_scheduler": lambda m, p: {"model": m.state_dict(), "epoch": 3,
                                      "lr_scheduler": {"noise": p},
                                      "args": om.train_args(m.spec)},
}


@pytest.mark.parametrize("payload, global_name", [(RunsShellCommand, os.system.__module__),
                                                  (ExecsPython, "builtins.exec")])
@pytest.mark.parametrize("where", sorted(PLANTS))
def test_code_anywhere_in_the_pickle_is_refused_and_never_runs(tmp_path, cifar, where, payload,
                                                               global_name):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth.tar"
    torch.save(PLANTS[where](cifar, payload(marker)), path)
    with pytest.raises(RefusedCodeError) as err:
        read_container(path)
    message = str(err.value)
    assert str(path) in message and global_name in message and "Nothing of it was run" in message
    with pytest.raises(RefusedCodeError):   # the compiler's entry refuses it too
        open_source(path)
    assert not marker.exists()


def test_a_pickled_module_is_refused_naming_its_class(tmp_path):
    """torch.save(model) pickles the classes of the training script: not data, refused."""
    path = tmp_path / "whole-model.pth"
    torch.save({"model": nn.Linear(2, 2), "epoch": 1}, path)
    with pytest.raises(RefusedCodeError, match="torch.nn.modules.linear.Linear"):
        read_container(path)


def test_a_pickle_cannot_change_argparse_namespace_for_the_process():
    """BUILD on a class object sets class attributes; the reader hands each load a private
    subclass, so a file cannot patch argparse.Namespace for everything after it."""
    # GLOBAL argparse.Namespace; BUILD (None, {"injected": 1}) on the class itself
    data = (b"\x80\x02cargparse\nNamespace\nN}X\x08\x00\x00\x00injectedK\x01s\x86b.")
    loaded = restricted_pickle.Unpickler(io.BytesIO(data)).load()
    assert loaded.injected == 1 and issubclass(loaded, argparse.Namespace)
    assert not hasattr(argparse.Namespace, "injected")


def test_timm_container_is_read_with_its_arguments_and_ema(tmp_path, cifar):
    ema = om.build_official(om.Spec(om.CIFAR10), seed=1, neuron=om.no_neuron)
    path = om.save_timm(cifar, tmp_path / "model_best.pth.tar", ema=ema)
    got = read_container(path)
    assert got.kind == TIMM and not got.ema and not got.stripped_prefix
    assert got.args["num_heads"] == 4 and got.args["dataset"] == "torch/cifar10"
    assert got.info == {"epoch": 299, "metric": 95.19}
    assert all(torch.equal(got.state_dict[k], v) for k, v in cifar.state_dict().items())
    with_ema = read_container(path, ema=True)
    assert with_ema.ema
    assert all(torch.equal(with_ema.state_dict[k], v) for k, v in ema.state_dict().items())


def test_dvs_and_bare_containers_with_and_without_ddp_prefix(tmp_path):
    model = om.build_official(om.Spec(om.CIFAR10DVS, in_channels=2, img_size=32), 0,
                              neuron=om.no_neuron)
    want = model.state_dict()
    for ddp in (False, True):
        dvs = read_container(om.save_dvs(model, tmp_path / f"dvs{ddp}.pth", ddp=ddp))
        bare = read_container(om.save_bare(model, tmp_path / f"bare{ddp}.pth", ddp=ddp))
        assert (dvs.kind, bare.kind) == (DVS, BARE)
        for got in (dvs, bare):
            assert got.stripped_prefix == ddp
            assert list(got.state_dict) == list(want)
        assert dvs.args["T"] == 4 and dvs.info == {"epoch": 95, "max_test_acc1": 80.9}
        assert bare.args is None


def test_ema_weights_that_are_not_there_name_the_flag(tmp_path, cifar):
    for path in (om.save_timm(cifar, tmp_path / "a.pth.tar"),
                 om.save_bare(cifar, tmp_path / "b.pth")):
        with pytest.raises(OfficialCheckpointError, match="--ema") as err:
            read_container(path, ema=True)
        assert "state_dict_ema" in str(err.value) and err.value.option == "ema"


def test_a_ddp_prefix_on_some_keys_only_is_refused(tmp_path, cifar):
    state = dict(cifar.state_dict())
    state["module.head.weight"] = state.pop("head.weight")
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(OfficialCheckpointError, match="'module.head.weight'"):
        read_container(tmp_path / "mixed.pth")


@pytest.mark.parametrize("content, needle", [
    ({"epoch": 3, "weights": [1, 2]}, "keys 'epoch', 'weights'"),
    ([1, 2, 3], "holds a list"),
    ({}, "empty dict"),
])
def test_files_that_are_no_container_are_named(tmp_path, content, needle):
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(OfficialCheckpointError, match="not a checkpoint of the official") as err:
        read_container(path)
    assert needle in str(err.value)
    assert open_source(path) is None   # the compiler leaves the message to load_checkpoint


def test_our_own_checkpoint_is_recognised_without_its_weights(tmp_path):
    path = save_checkpoint(tmp_path / "m.pth", model=firing_model("test-micro"),
                           dataset="digits", class_names=[str(i) for i in range(4)])
    got = open_source(path)
    assert got.kind == OURS and got.state_dict == {}
    with pytest.raises(OfficialCheckpointError, match="drop --ema"):
        read_container(path, ema=True)


def test_raw_and_legacy_pickles_are_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"x": RunsShellCommand(marker)}))
    legacy = tmp_path / "legacy.pth"
    torch.save({"x": RunsShellCommand(marker)}, legacy, _use_new_zipfile_serialization=False)
    for path in (raw, legacy):
        with pytest.raises(OfficialCheckpointError, match="refused unread"):
            read_container(path)
        assert open_source(path) is None
    assert not marker.exists()


def test_torchscript_missing_empty_and_damaged_files(tmp_path, cifar):
    scripted = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(scripted))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    damaged = om.save_bare(cifar, tmp_path / "damaged.pth")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    for path, needle in ((scripted, "TorchScript"), (tmp_path / "none.pth", "does not exist"),
                         (empty, "not the zip archive"), (damaged, "CRC"),
                         (tmp_path, "is a directory")):
        with pytest.raises(CheckpointError, match=needle):
            read_container(path)
