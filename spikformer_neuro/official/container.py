"""Read a checkpoint file of the official Spikformer code without running anything in it.

The file must be the zip archive ``torch.save`` writes (checked record by record before torch
sees it: TorchScript archives, legacy tar / raw pickles and damaged files are refused unread,
as spikformer_neuro.checkpoint does for our own files). Its pickle is read with
:mod:`.restricted_pickle`, which builds tensors, plain containers and scalars and
``argparse.Namespace`` and refuses every other global, naming it. Tensors are memory-mapped:
an optimizer state several times the model's size is never read into memory.

Containers recognised (each state dict possibly with DDP's ``module.`` prefix on every key):

- timm 0.5.4 ``CheckpointSaver`` (official cifar10/ and imagenet/ train.py, ``*.pth.tar``):
  ``{epoch, arch, state_dict, optimizer, version, args: Namespace, [amp_scaler], metric,
  [state_dict_ema]}``
- the cifar10dvs/ train.py container: ``{model, optimizer, lr_scheduler, epoch, args, ...}``
- a bare state dict (every value a tensor)
"""
from __future__ import annotations

import argparse
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from spikformer_neuro.checkpoint import CHECKPOINT_FORMAT

from . import restricted_pickle
from .errors import OfficialCheckpointError
from .layouts import looks_official

TIMM = "timm CheckpointSaver"
DVS = "cifar10dvs train.py"
BARE = "bare state dict"
OURS = "spikformer-neuro checkpoint"
DDP_PREFIX = "module."
EMA_KEY = "state_dict_ema"
_TIMM_MARKS = ("arch", "args", "epoch", "optimizer", "version", "metric")
_DVS_MARKS = ("args", "epoch", "optimizer", "lr_scheduler")


@dataclass
class Container:
    """What an official checkpoint file holds, as plain Python."""

    path: Path
    kind: str                                  # TIMM, DVS, BARE or OURS
    state_dict: Dict[str, torch.Tensor]        # the weights asked for (EMA with ema=True)
    args: Optional[Dict[str, Any]] = None      # vars() of the stored argparse.Namespace
    ema: bool = False                          # state_dict is timm's state_dict_ema
    stripped_prefix: bool = False              # DDP's "module." was removed from every key
    info: Dict[str, Any] = field(default_factory=dict)   # epoch, metric: plain scalars only


class RefusedCodeError(OfficialCheckpointError):
    """The file's pickle names a global that is not data; nothing of it was run."""


def read_container(path: "str | os.PathLike[str]", *, ema: bool = False) -> Container:
    """The container in ``path``; ``ema`` selects timm's ``state_dict_ema``. Any problem
    (unreadable or damaged file, code in the pickle, an unrecognised layout of the file, no
    EMA weights) raises :class:`OfficialCheckpointError` naming the file."""
    path = Path(path)
    return _container(path, read_restricted(path), ema)


def open_source(path: "str | os.PathLike[str]", *, ema: bool = False) -> Optional[Container]:
    """``path`` as a compiler source: a spikeform-neuro checkpoint (kind OURS, no weights
    read) or an official container; None for a file that is neither, or that cannot be read
    (spikformer_neuro.checkpoint.load_checkpoint then says what is wrong with it). Code in
    the pickle is refused all the same (:class:`RefusedCodeError`)."""
    path = Path(path)
    try:
        raw = read_restricted(path)
    except RefusedCodeError:
        raise
    except OfficialCheckpointError:
        return None
    kind = None if _is_ours(raw) else container_kind(raw)
    if not _is_ours(raw) and (kind is None or (kind == BARE and not looks_official(raw))):
        return None
    return _container(path, raw, ema)


def _is_ours(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT


def _container(path: Path, raw: Any, ema: bool) -> Container:
    if _is_ours(raw):
        if ema:
            raise OfficialCheckpointError(
                f"{path}: --ema selects the EMA weights of an official timm checkpoint, and "
                "this is a spikformer-neuro checkpoint; drop --ema", option="ema")
        return Container(path, OURS, {})
    kind = container_kind(raw)
    if kind is None:
        raise OfficialCheckpointError(f"{path}: not a checkpoint of the official Spikformer "
                                      f"code: {describe(raw)}. Expected a timm CheckpointSaver "
                                      "file (state_dict, args, ...), the cifar10dvs container "
                                      "(model, args, ...) or a bare state dict")
    weights = raw if kind == BARE else raw["state_dict" if kind == TIMM else "model"]
    if ema:
        if kind != TIMM or not isinstance(raw.get(EMA_KEY), dict) or not raw[EMA_KEY]:
            raise OfficialCheckpointError(
                f"{path}: --ema asks for the EMA weights (timm's '{EMA_KEY}', saved when "
                f"training with --model-ema), and this {kind} has none; drop --ema to "
                "convert its weights", option="ema")
        weights = raw[EMA_KEY]
    state, stripped = _strip_ddp_prefix(path, weights)
    return Container(path, kind, state, args=_args_of(path, raw, kind), ema=ema,
                     stripped_prefix=stripped, info=_plain_info(raw, kind))


def read_restricted(path: Path) -> Any:
    """The unpickled contents of a ``torch.save`` zip archive, read with the restricted
    unpickler (tensors memory-mapped from the file)."""
    _check_archive(path)
    try:
        return torch.load(str(path), map_location="cpu", pickle_module=restricted_pickle,
                          weights_only=False, mmap=True)
    except restricted_pickle.RefusedGlobal as exc:
        raise RefusedCodeError(
            f"{path}: refused: its pickle names the global '{exc.name}', which could run code "
            "when loaded; checkpoints hold tensors, plain containers and numbers (and, from "
            "the official Spikformer code, argparse.Namespace), nothing else. Nothing of it "
            "was run. Only load files from sources you trust, and ask their author for the "
            "plain weights (model.state_dict() saved with torch.save)") from None
    except OSError as exc:
        raise OfficialCheckpointError(f"{path}: the file cannot be read "
                                      f"({exc.strerror or exc})") from None
    except Exception as exc:  # torch reports a malformed archive as RuntimeError, EOFError ...
        first_line = str(exc).partition("\n")[0]
        raise OfficialCheckpointError(f"{path}: the file is truncated or corrupt "
                                      f"({type(exc).__name__}: {first_line}); copy it again "
                                      "from its source") from None


def _check_archive(path: Path) -> None:
    """Only an intact zip archive as ``torch.save`` writes it reaches torch (see
    spikformer_neuro.checkpoint._check_archive for why): torch.load hands TorchScript
    archives to torch.jit.load and legacy files to older loaders. Records must be stored
    uncompressed, as torch.save writes them, for the memory map to read them."""
    if not path.exists():
        raise OfficialCheckpointError(f"{path}: the file does not exist; check the path")
    if path.is_dir():
        raise OfficialCheckpointError(f"{path}: it is a directory; pass the checkpoint file "
                                      "inside it (e.g. model_best.pth.tar)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":
            raise OfficialCheckpointError(
                f"{path}: not the zip archive torch.save writes (it starts with {head!r}): "
                "the file is corrupt, empty, or a raw pickle or legacy torch file (torch < "
                "1.6, or _use_new_zipfile_serialization=False), which is refused unread; "
                "re-save it with torch.save on torch >= 1.6")
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            damaged = archive.testzip()
    except OSError as exc:
        raise OfficialCheckpointError(f"{path}: the file cannot be read "
                                      f"({exc.strerror or exc})") from None
    except OfficialCheckpointError:
        raise
    except Exception as exc:  # zipfile reports damage as BadZipFile, ValueError, EOFError ...
        raise OfficialCheckpointError(f"{path}: the file is truncated or corrupt (unreadable "
                                      f"zip archive: {exc}); copy it again from its source"
                                      ) from None
    if damaged is not None:
        raise OfficialCheckpointError(f"{path}: the file is truncated or corrupt (record "
                                      f"{damaged} fails its CRC check); copy it again")
    records = {info.filename.split("/", 1)[-1] for info in infos}
    if "constants.pkl" in records:
        raise OfficialCheckpointError(f"{path}: it is a TorchScript archive (torch.jit.save), "
                                      "which can carry code and is refused unread; save the "
                                      "model's state_dict() with torch.save instead")
    if "data.pkl" not in records:
        raise OfficialCheckpointError(f"{path}: a zip archive without torch's data.pkl, not a "
                                      "torch checkpoint")
    packed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise OfficialCheckpointError(f"{path}: record {packed[0]} is compressed, which "
                                      "torch.save never does: the archive was rewritten by "
                                      "another tool; re-save it with torch.save")


def container_kind(raw: Any) -> Optional[str]:
    """TIMM, DVS or BARE by the top-level structure, or None."""
    if not isinstance(raw, dict) or not raw:
        return None
    if _is_state_dict(raw.get("state_dict")) and any(k in raw for k in _TIMM_MARKS):
        return TIMM
    if _is_state_dict(raw.get("model")) and any(k in raw for k in _DVS_MARKS):
        return DVS
    if _is_state_dict(raw):
        return BARE
    return None


def _is_state_dict(value: Any) -> bool:
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                    for k, v in value.items()))


def describe(raw: Any) -> str:
    """A short account of an unrecognised file's contents, for messages."""
    if not isinstance(raw, dict):
        return f"it holds a {type(raw).__name__}"
    if not raw:
        return "it holds an empty dict"
    keys = [repr(k) for k in list(raw)[:10]]
    return f"a dict with keys {', '.join(keys)}{', ...' if len(raw) > 10 else ''}"


def _strip_ddp_prefix(path: Path, state: Dict[str, torch.Tensor]):
    """(state dict without DDP's ``module.`` prefix, whether it had one). A prefix on some
    keys only is a file no training loop writes: refused, naming one key of each kind."""
    prefixed = [k for k in state if k.startswith(DDP_PREFIX)]
    if not prefixed:
        return dict(state), False
    if len(prefixed) != len(state):
        plain = next(k for k in state if not k.startswith(DDP_PREFIX))
        raise OfficialCheckpointError(
            f"{path}: some keys carry DDP's '{DDP_PREFIX}' prefix ({prefixed[0]!r}) and some "
            f"do not ({plain!r}); save the unwrapped model's state_dict() instead")
    return {k[len(DDP_PREFIX):]: v for k, v in state.items()}, True


def _args_of(path: Path, raw: dict, kind: str) -> Optional[Dict[str, Any]]:
    if kind == BARE or raw.get("args") is None:
        return None
    args = raw["args"]
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    if isinstance(args, dict):
        return dict(args)
    raise OfficialCheckpointError(f"{path}: its 'args' is a {type(args).__name__}, not the "
                                  "argparse.Namespace the official train.py stores")


def _plain_info(raw: dict, kind: str) -> Dict[str, Any]:
    """Epoch and best metric of a training container, where they are plain numbers."""
    keys = {TIMM: ("epoch", "metric"), DVS: ("epoch", "max_test_acc1")}.get(kind, ())
    return {k: raw[k] for k in keys
            if type(raw.get(k)) in (int, float) and not isinstance(raw.get(k), bool)}
