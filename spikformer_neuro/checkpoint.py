"""Checkpoints: one self-describing file per trained model, safe to open from anywhere.

A checkpoint stores the model configuration next to the weights, so the compiler rebuilds
the exact network from the file alone. It holds only plain values (str, int, float, bool,
None, list, tuple, dict) and tensors, so it loads with ``torch.load(weights_only=True)``,
which never runs pickled code. ``save_checkpoint`` enforces that on the way in.

``torch.load`` still has paths that bypass the weights-only unpickler: it hands TorchScript
archives to ``torch.jit.load`` and reads legacy tar / raw-pickle files through older code.
``load_checkpoint`` therefore gives torch nothing but the zip archive ``torch.save`` writes.
Every problem with a file becomes one ``CheckpointError`` that names the file, the problem
and the fix, so a command-line user never sees a traceback from inside torch.
"""
from __future__ import annotations

import os
import pickle
import secrets
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .config import ConfigError, SpikformerConfig
from .model import Spikformer
from .model import build_model as build_spikformer
from .model import model_classes

CHECKPOINT_FORMAT = "spikformer-neuro-checkpoint"
FORMAT_VERSION = 1

# Top-level keys every checkpoint has (besides "format" / "format_version"), with the
# types a reader may rely on.
_FIELD_TYPES: Dict[str, tuple] = {
    "model_config": (dict,),
    "state_dict": (dict,),
    "dataset": (str,),
    "class_names": (list,),
    "normalisation": (dict,),
    "metrics": (dict,),
    "train_args": (dict,),
    "training_state": (dict, type(None)),
    "created_by": (str,),
}
_SCALARS = (str, int, float, bool, type(None))
_SHOW = 5  # offending keys named in a message; the rest are counted
_REMAKE = "re-create the checkpoint with spikeform-train"


class CheckpointError(Exception):
    """A file that is not a loadable checkpoint; the message names the file, problem and fix."""


def _error(path: Path, problem: str, fix: str = _REMAKE) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: {problem}. To fix: {fix}.")


@dataclass
class Checkpoint:
    """A checkpoint as ``load_checkpoint`` returns it: checked, tensors on the CPU."""

    path: Path
    config: SpikformerConfig
    state_dict: Dict[str, torch.Tensor]
    dataset: str
    class_names: List[str]
    normalisation: dict
    metrics: dict
    train_args: dict
    training_state: Optional[dict]
    format_version: int
    created_by: str
    # Loihi grid hints from quantization-aware fine-tuning (spikformer_neuro.qat), or None.
    quantization: Optional[dict] = None

    def build_model(self) -> Spikformer:
        """The trained network, in eval mode. Checks the weights first so that a mismatch
        names the offending keys instead of surfacing as torch's load_state_dict error."""
        model = build_spikformer(self.config)
        expected = {name: t.shape for name, t in model.state_dict().items()}
        mismatch = _state_dict_mismatch(expected, self.state_dict)
        if mismatch:
            raise _error(self.path, f"its state dict does not match configuration "
                                    f"'{self.config.name}': {mismatch}")
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


# -- saving -------------------------------------------------------------------------------
def save_checkpoint(
    path: "str | os.PathLike[str]",
    *,
    model: Spikformer,
    dataset: str,
    class_names: List[str],
    metrics: Optional[dict] = None,
    train_args: Optional[dict] = None,
    training_state: Optional[dict] = None,
    quantization: Optional[dict] = None,
) -> Path:
    """Write ``model`` and its training record to ``path`` atomically; return the path.

    Everything is checked before the first byte is written: a value that is not plain
    (a numpy array, an argparse.Namespace ...) raises ValueError naming its key, because
    a file holding it would not load with weights_only=True. The file appears complete
    or not at all, so an interrupted save never leaves a checkpoint that cannot be read.
    """
    path = Path(path)
    if not isinstance(model, model_classes()):
        raise TypeError(f"model must be a Spikformer or SpikeDrivenTransformer, got {type(model).__name__} "
                        "(unwrap DataParallel / torch.compile wrappers before saving)")
    cfg = model.cfg
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty str, got {dataset!r}")
    names = list(class_names)
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"class_names must all be str, got {names!r}")
    if len(names) != cfg.num_classes:
        raise ValueError(f"{len(names)} class_names for a model with "
                         f"{cfg.num_classes} classes (configuration '{cfg.name}')")
    for where, value in (("metrics", metrics), ("train_args", train_args),
                         ("training_state", training_state), ("quantization", quantization)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{where} must be a dict, got {type(value).__name__}")
    if path.is_dir():
        raise ValueError(f"cannot save checkpoint: {path} is a directory; pass a file "
                         "path such as model.pth")
    payload = _plain({
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": cfg.to_dict(),
        "state_dict": dict(model.state_dict()),
        "dataset": dataset,
        "class_names": names,
        "normalisation": {
            "mean": list(cfg.input_mean or (0.0,) * cfg.in_channels),
            "std": list(cfg.input_std or (1.0,) * cfg.in_channels),
        },
        "metrics": metrics or {},
        "train_args": train_args or {},
        "training_state": training_state,
        "quantization": quantization,
        "created_by": f"spikformer-neuro {_version()}",
    }, "")
    _atomic_save(payload, path)
    return path


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` made only of types the weights-only unpickler accepts.

    Numpy scalars become Python numbers (metrics are often np.float64) and tensors are
    detached and moved to the CPU; anything else that is not plain raises ValueError
    naming where it sits, e.g. ``metrics['confusion']``.
    """
    if type(value) in _SCALARS:  # exact: np.float64 subclasses float but pickles as numpy
        return value
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if type(value) in (list, tuple):
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key = key.item() if isinstance(key, np.generic) else key
            if type(key) not in _SCALARS:
                raise ValueError(f"{where or 'checkpoint'} has a key of type "
                                 f"{type(key).__name__} ({key!r}); checkpoint keys must be "
                                 "str, int, float, bool or None")
            out[key] = _plain(item, f"{where}[{key!r}]" if where else str(key))
        return out
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise ValueError(
        f"{where} is a {kind}, which a checkpoint cannot hold: only str, int, float, bool, "
        "None, list, tuple, dict and torch.Tensor load with torch.load(weights_only=True); "
        "convert it first (e.g. array.tolist(), vars(namespace), float(x))")


def _atomic_save(payload: dict, path: Path) -> None:
    """torch.save into a hidden temporary file beside ``path``, then rename it over ``path``.

    os.replace is atomic within one directory, so readers see the old file or the new one,
    never a partial write; on any failure (Ctrl-C included) the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _version() -> str:
    try:
        return metadata.version("spikformer-neuro")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- loading ------------------------------------------------------------------------------
def load_checkpoint(path: "str | os.PathLike[str]", *, verify_state_dict: bool = True) -> Checkpoint:
    """Read and check a checkpoint written by ``save_checkpoint``.

    With ``verify_state_dict`` the weights are compared, key by key and shape by shape,
    with the network the stored configuration describes, so a bad file fails here rather
    than deep inside the compiler. Any problem raises CheckpointError.
    """
    path = Path(path)
    raw = _read(path)
    _check_contents(path, raw)
    try:
        config = SpikformerConfig.from_dict(raw["model_config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise _error(path, f"its model_config is invalid: {exc}") from None
    if len(raw["class_names"]) != config.num_classes:
        raise _error(path, f"it has {len(raw['class_names'])} class_names but its model has "
                           f"{config.num_classes} classes")
    if verify_state_dict:
        mismatch = _state_dict_mismatch(_expected_shapes(config), raw["state_dict"])
        if mismatch:
            raise _error(path, f"its state dict does not match its model_config "
                               f"'{config.name}': {mismatch}")
        problem = _non_finite(config, raw["state_dict"])
        if problem:
            raise _error(path, problem, "the weights are unusable (training diverged, or the "
                                        "file was edited): retrain, or resume from an earlier "
                                        "checkpoint, with spikeform-train")
    return Checkpoint(
        path=path, config=config, state_dict=raw["state_dict"], dataset=raw["dataset"],
        class_names=raw["class_names"], normalisation=raw["normalisation"],
        metrics=raw["metrics"], train_args=raw["train_args"],
        training_state=raw["training_state"], format_version=raw["format_version"],
        created_by=raw["created_by"], quantization=raw.get("quantization"))


def _read(path: Path) -> Any:
    """The unpickled contents of ``path``, read with the weights-only unpickler only."""
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the CRCs held, so the pickle is as written
        detail = str(exc).rpartition("WeightsUnpickler error:")[2].strip()
        raise _error(path, f"refused: the file contains pickled code/objects ({detail}); "
                           "only plain checkpoints written by spikeform-train are loaded"
                     ) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except Exception as exc:  # torch reports a malformed archive as RuntimeError, EOFError ...
        first_line = str(exc).partition("\n")[0]
        raise _corrupt(path, f"{type(exc).__name__}: {first_line}") from None


def _check_archive(path: Path) -> None:
    """Refuse, before torch reads it, anything but an intact zip archive from torch.save.

    torch.load hands TorchScript archives to torch.jit.load, and legacy tar / raw-pickle
    files to older loaders, even with weights_only=True; neither kind reaches it here. The
    CRC check finds damage torch ignores: a flipped byte in a tensor would load as a
    silently different model, and one in data.pkl as a refusal blaming pickled code.
    """
    if not path.exists():
        raise _error(path, "the file does not exist",
                     "check the path, or train a model with spikeform-train")
    if path.is_dir():
        raise _error(path, "it is a directory, not a file",
                     "pass the checkpoint file inside it (e.g. model.pth)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not head:
        raise _corrupt(path, "it is empty, 0 bytes, e.g. from an interrupted copy")
    if head != b"PK\x03\x04":
        raise _error(path, f"it is not the zip archive torch.save writes (it starts with "
                           f"{head!r}): the file is corrupt, or a raw pickle or legacy torch "
                           "file, which is refused unread")
    try:
        with zipfile.ZipFile(path) as archive:
            records = {name.split("/", 1)[-1] for name in archive.namelist()}
            damaged = archive.testzip()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except Exception as exc:  # zipfile reports damage as BadZipFile, ValueError, EOFError ...
        raise _corrupt(path, f"unreadable zip archive: {exc}") from None
    if damaged is not None:
        raise _corrupt(path, f"record {damaged} fails its CRC check")
    if "constants.pkl" in records:
        raise _error(path, "it is a TorchScript archive (torch.jit.save), which can carry code "
                           "and is refused unread")
    if "data.pkl" not in records:
        raise _error(path, "it is a zip archive without torch's data.pkl, not a torch checkpoint")


def _corrupt(path: Path, detail: str) -> CheckpointError:
    return _error(path, f"the file is truncated or corrupt ({detail})",
                  f"copy it again from its source or {_REMAKE}")


def _unreadable(path: Path, exc: OSError) -> CheckpointError:
    return _error(path, f"the file cannot be read ({exc.strerror or exc})",
                  "check that it is readable by this user")


def _check_contents(path: Path, raw: Any) -> None:
    """Recognise foreign files and check the top-level layout, with a message for each."""
    if not isinstance(raw, dict):
        raise _error(path, f"it holds a {type(raw).__name__}, not a spikformer-neuro "
                           "checkpoint dict")
    if "format" not in raw:
        if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise _error(path, f"it looks like a bare state dict of some model ({len(raw)} "
                               f"tensors, e.g. {next(iter(raw))!r}) with no model "
                               "configuration",
                         "a checkpoint must be made by spikeform-train (or "
                         "spikformer_neuro.checkpoint.save_checkpoint), which stores the "
                         "configuration next to the weights")
        keys = ", ".join(repr(k) for k in list(raw)[:10]) + (", ..." if len(raw) > 10 else "")
        raise _error(path, f"it is a dict without a 'format' key (keys: {keys or 'none'}), "
                           "not a spikformer-neuro checkpoint")
    if raw["format"] != CHECKPOINT_FORMAT:
        raise _error(path, f"its format is {raw['format']!r}, not {CHECKPOINT_FORMAT!r}")
    version = raw.get("format_version")
    if type(version) is not int or version < 1:
        raise _error(path, f"its format_version is {version!r}, not a positive int")
    if version > FORMAT_VERSION:
        raise _error(path, f"it was written by a newer spikformer-neuro (checkpoint format "
                           f"version {version}; this version reads up to {FORMAT_VERSION})",
                     "upgrade spikformer-neuro")
    missing = [key for key in _FIELD_TYPES if key not in raw]
    if missing:
        raise _error(path, f"it lacks the required keys {missing}")
    for key, types in _FIELD_TYPES.items():
        if not isinstance(raw[key], types):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise _error(path, f"{key} must be a {wanted}, got {type(raw[key]).__name__}")
    if not all(isinstance(name, str) for name in raw["class_names"]):
        raise _error(path, f"class_names must be a list of str, got {raw['class_names']!r}")
    quant = raw.get("quantization")
    if quant is not None and not (isinstance(quant, dict) and isinstance(quant.get("vth"), dict)
                                  and all(type(v) is int for v in quant["vth"].values())):
        raise _error(path, "its quantization hints must be a dict with a 'vth' dict of ints "
                           f"(got {quant!r:.80})")
    state = raw["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise _error(path, f"state_dict must map str names to tensors; offending keys: "
                           f"{bad[:_SHOW]!r}")


def _expected_shapes(config: SpikformerConfig) -> Dict[str, torch.Size]:
    """State-dict shapes of the network ``config`` describes. Built on the meta device:
    no memory and no initialisation, so even the ImageNet models take milliseconds."""
    with torch.device("meta"):
        model = build_spikformer(config)
    return {name: t.shape for name, t in model.state_dict().items()}


def _non_finite(config: SpikformerConfig, state: Dict[str, torch.Tensor]) -> str:
    """The first tensor holding NaN or infinite values, named with its layer and the
    layer's type (``sps.stages.0.bn.running_var`` of BatchNorm2d), or ''."""
    for key, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        inf = int((~finite).sum()) - nan
        with torch.device("meta"):
            modules = dict(build_spikformer(config).named_modules())
        layer, _, name = key.rpartition(".")
        kind = type(modules[layer]).__name__ if layer in modules else "unknown layer"
        counts = " and ".join(([f"{nan} NaN"] if nan else [])
                              + ([f"{inf} infinite"] if inf else []))
        return (f"tensor '{key}' ({name} of layer '{layer}', {kind}) holds {counts} "
                f"value{'s' if nan + inf > 1 else ''} out of {tensor.numel()}")
    return ""


def _state_dict_mismatch(expected: Dict[str, torch.Size], found: Dict[str, torch.Tensor]) -> str:
    """Missing, unexpected and wrongly shaped keys, the first few of each by name; '' if none."""
    groups = (
        ("missing keys", [f"{k} (expected {list(s)})" for k, s in expected.items()
                          if k not in found]),
        ("unexpected keys", [f"{k} (found {list(t.shape)})" for k, t in found.items()
                             if k not in expected]),
        ("shape mismatches", [f"{k} (expected {list(s)}, found {list(found[k].shape)})"
                              for k, s in expected.items()
                              if k in found and found[k].shape != s]),
    )
    parts = []
    for label, items in groups:
        if items:
            more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    return "; ".join(parts)
