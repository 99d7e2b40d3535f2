"""What the weights cannot say -- heads, time steps, image size, normalisation, data set --
read from the flags, the stored training arguments or the layout, each with where it came
from.

Precedence: a flag, then the official train.py's stored ``args``, then what the official
code fixes or its recipe uses (imagenet/model.py runs T = 4; cifar10dvs/model.py takes
128x128 frames; the normalisation of cifar10.yml / imagenet.yml), else an error naming the
flag to pass. The argument names are the official train.py's: ``num_heads``, ``time_step``
(cifar10) or ``T`` (cifar10dvs), ``img_size`` (or timm's ``input_size``), ``mean``/``std``,
``dataset``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from spikformer_neuro.data import dataset_names
from spikformer_neuro.data.events import CIFAR10_DVS_CLASSES, GESTURE_CLASSES

from .container import TIMM, Container
from .errors import OfficialCheckpointError
from .layouts import IMAGENET_MEAN, IMAGENET_STD, Architecture, Layout

DEFAULT_MAX_COUNT = 255
# names upstream's train.py store for them
HEADS_ARGS = ("num_heads",)
TIME_STEPS_ARGS = ("time_step", "T")
IMG_SIZE_ARGS = ("img_size",)
# the official code's --dataset values -> the data sets spikformer-neuro knows
_DATASET_OF_ARGS = {"cifar10": "cifar10", "cifar100": "cifar100", "cifar10dvs": "cifar10-dvs",
                    "cifar10-dvs": "cifar10-dvs", "dvsgesture": "dvs-gesture",
                    "dvs128gesture": "dvs-gesture", "imagenet": "imagefolder"}
# classes of the data sets whose names are fixed; counts of those whose number is
_CLASS_NAMES = {"cifar10": CIFAR10_DVS_CLASSES,   # CIFAR10-DVS records CIFAR-10's classes
                "cifar10-dvs": CIFAR10_DVS_CLASSES, "dvs-gesture": GESTURE_CLASSES}
_CLASS_COUNTS = {"cifar100": 100, "digits": 10, "mnist": 10, "fashion-mnist": 10,
                 **{name: len(names) for name, names in _CLASS_NAMES.items()}}


# what the official recipes used, as a hint in the messages asking for a value
_RECIPES = {"--num-heads": " (the official recipes: 12 heads for cifar10 4-384, 8 for "
                           "imagenet 8-512, 16 for cifar10dvs 2-256)",
            "--time-steps": " (the official recipes: T = 4 on cifar10, 16 on cifar10dvs)",
            "--img-size": " (the official recipes: 32 for cifar10, 224 for imagenet)"}


@dataclass(frozen=True)
class Setting:
    value: Any
    origin: str          # "--num-heads", "args.num_heads", "fixed by imagenet/model.py", ...

    def describe(self) -> str:
        return f"{self.value} (from {self.origin})"


@dataclass(frozen=True)
class ConversionOptions:
    """The user's choices; None (or "auto") leaves a value to the file and the layout."""

    num_heads: Optional[int] = None
    time_steps: Optional[int] = None
    img_size: Optional[int] = None
    layout: str = "auto"
    ema: bool = False
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    max_count: Optional[int] = None
    dataset: Optional[str] = None

    def given(self) -> Tuple[str, ...]:
        """The flags set, for refusing them where a source does not take them."""
        return tuple(flag for flag, set_ in (
            ("--num-heads", self.num_heads is not None),
            ("--time-steps", self.time_steps is not None),
            ("--img-size", self.img_size is not None), ("--layout", self.layout != "auto"),
            ("--ema", self.ema), ("--mean", self.mean is not None),
            ("--std", self.std is not None), ("--max-count", self.max_count is not None),
            ("--dataset", self.dataset is not None)) if set_)


@dataclass(frozen=True)
class Settings:
    num_heads: Setting
    time_steps: Setting
    img_size: Setting
    mean: Setting            # value: a tuple, or None for event counts
    std: Setting
    dataset: Setting
    max_count: Optional[Setting]     # event-count input only
    class_names: Tuple[str, ...]

    def as_dict(self) -> Dict[str, Dict[str, Any]]:
        named = {"num_heads": self.num_heads, "time_steps": self.time_steps,
                 "img_size": self.img_size, "mean": self.mean, "std": self.std,
                 "dataset": self.dataset, "max_count": self.max_count}
        return {k: {"value": list(s.value) if isinstance(s.value, tuple) else s.value,
                    "from": s.origin} for k, s in named.items() if s is not None}


def resolve(container: Container, layout: Layout, arch: Architecture,
            options: ConversionOptions) -> Settings:
    path, args = container.path, container.args or {}
    heads = _integer(path, "--num-heads", "the number of attention heads", options.num_heads,
                     args, HEADS_ARGS, None, layout)
    if arch.embed_dim % heads.value:
        raise OfficialCheckpointError(
            f"{path}: {heads.value} heads (from {heads.origin}) do not divide the embedding "
            f"dimension {arch.embed_dim} of the weights; pass --num-heads with a divisor of "
            f"{arch.embed_dim} (the official recipes: 8 or 12 heads, 16 on cifar10dvs)",
            option="num_heads")
    steps = _integer(path, "--time-steps", "the number of time steps T", options.time_steps,
                     args, TIME_STEPS_ARGS, layout.time_steps, layout)
    img = _integer(path, "--img-size", "the side of the input images", options.img_size,
                   args, IMG_SIZE_ARGS + ("input_size",), layout.img_size, layout)
    mean, std = _normalisation(container, layout, arch, options)
    dataset = _dataset(path, layout, arch, options, args)
    names = _CLASS_NAMES.get(dataset.value) or tuple(f"class_{i}"
                                                     for i in range(arch.num_classes))
    return Settings(heads, steps, img, mean, std, dataset, _max_count(path, layout, options),
                    tuple(names))


def _integer(path: Path, flag: str, what: str, given: Optional[int], args: Dict[str, Any],
             names: Sequence[str], fixed: Optional[int], layout: Layout) -> Setting:
    stored = next(((f"args.{n}", _arg_int(args, n)) for n in names
                   if _arg_int(args, n) is not None), None)
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise OfficialCheckpointError(f"{flag} must be a positive integer, got {given!r}",
                                          option=flag[2:].replace("-", "_"))
        note = f"; {stored[0]} says {stored[1]}" if stored and stored[1] != given else ""
        return Setting(given, flag + note)
    if stored is not None:
        return Setting(*reversed(stored))
    if fixed is not None:
        return Setting(fixed, f"{layout.model_py}, which fixes it")
    where = ("its stored training arguments do not hold it ("
             + " / ".join(f"args.{n}" for n in names) + ")") if args else \
        "the file holds no training arguments"
    raise OfficialCheckpointError(
        f"{path}: {what} cannot be read from the weights, and {where}: pass {flag} with "
        f"the value the model was trained with{_RECIPES.get(flag, '')}",
        option=flag[2:].replace("-", "_"))


def _arg_int(args: Dict[str, Any], name: str) -> Optional[int]:
    """A positive integer argument; timm's input_size [C, H, W] gives its square side."""
    value = args.get(name)
    if name == "input_size" and isinstance(value, (list, tuple)) and len(value) == 3 \
            and value[1] == value[2]:
        value = value[1]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def _normalisation(container: Container, layout: Layout, arch: Architecture,
                   options: ConversionOptions) -> Tuple[Setting, Setting]:
    path, args = container.path, container.args
    if layout.event_input:
        if options.mean is not None or options.std is not None:
            raise OfficialCheckpointError(
                f"--mean/--std do not apply to {layout.name}: it takes frames of event counts, "
                "which the official code feeds unnormalised; drop them", option="mean")
        return Setting(None, "event counts"), Setting(None, "event counts")
    if (options.mean is None) != (options.std is None):
        raise OfficialCheckpointError("--mean and --std go together (the per-channel "
                                      "normalisation (x - mean) / std); pass both",
                                      option="mean" if options.mean is None else "std")
    if options.mean is not None:
        pair = (Setting(_floats(options.mean, "--mean", arch), "--mean"),
                Setting(_floats(options.std, "--std", arch), "--std"))
    elif args and _numbers(args.get("mean")) and _numbers(args.get("std")):
        pair = (Setting(tuple(map(float, args["mean"])), "args.mean"),
                Setting(tuple(map(float, args["std"])), "args.std"))
    elif args and container.kind == TIMM and "mean" in args:
        # timm's resolve_data_config falls back to the model's default_cfg, ImageNet's
        pair = (Setting(IMAGENET_MEAN, "timm's default: args.mean is None"),
                Setting(IMAGENET_STD, "timm's default: args.std is None"))
    else:
        pair = (Setting(layout.mean, f"the official recipe of {layout.name}"),
                Setting(layout.std, f"the official recipe of {layout.name}"))
    for setting, flag in zip(pair, ("--mean", "--std")):
        if len(setting.value) != arch.in_channels:
            raise OfficialCheckpointError(
                f"{path}: the normalisation {flag[2:]} {list(setting.value)} (from "
                f"{setting.origin}) has {len(setting.value)} values for "
                f"{arch.in_channels} input channels; pass --mean and --std with "
                f"{arch.in_channels} values each", option=flag[2:])
    if any(not s > 0 for s in pair[1].value):
        raise OfficialCheckpointError(f"--std must be positive, got {list(pair[1].value)}",
                                      option="std")
    return pair


def _numbers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _floats(values: Sequence[float], flag: str, arch: Architecture) -> Tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise OfficialCheckpointError(f"{flag} must be finite numbers, got {list(values)}",
                                      option=flag[2:])
    return out


def _dataset(path: Path, layout: Layout, arch: Architecture, options: ConversionOptions,
             args: Dict[str, Any]) -> Setting:
    if options.dataset is not None:
        setting = Setting(options.dataset, "--dataset")
    else:
        stored = str(args.get("dataset") or "").lower().rpartition("/")[2]
        if stored in _DATASET_OF_ARGS:
            setting = Setting(_DATASET_OF_ARGS[stored], f"args.dataset {args['dataset']!r}")
        else:
            setting = Setting(_default_dataset(layout, arch),
                              f"the {layout.name} layout and {arch.num_classes} classes")
    known = dataset_names()
    if setting.value not in known:
        raise OfficialCheckpointError(f"unknown data set {setting.value!r} (from "
                                      f"{setting.origin}); known: {', '.join(known)}",
                                      option="dataset")
    count = _CLASS_COUNTS.get(setting.value)
    if count is not None and count != arch.num_classes:
        raise OfficialCheckpointError(
            f"{path}: the data set {setting.value} (from {setting.origin}) has {count} "
            f"classes and the model's head {arch.num_classes}; pass --dataset naming the data "
            "set it was trained on (imagefolder for your own folders of images)",
            option="dataset")
    return setting


def _default_dataset(layout: Layout, arch: Architecture) -> str:
    if layout.event_input:
        return "dvs-gesture" if arch.num_classes == 11 else "cifar10-dvs"
    if layout.name == "official-imagenet":
        return "imagefolder"   # ImageNet as train/<class>/ and test/<class>/ folders
    return "cifar100" if arch.num_classes == 100 else "cifar10"


def _max_count(path: Path, layout: Layout, options: ConversionOptions) -> Optional[Setting]:
    given = options.max_count
    if not layout.event_input:
        if given is not None:
            raise OfficialCheckpointError(
                f"--max-count bounds the event counts of official-cifar10dvs frames; "
                f"{path} is {layout.name}, whose input is an image: drop --max-count",
                option="max_count")
        return None
    if given is None:
        return Setting(DEFAULT_MAX_COUNT, "the default")
    if isinstance(given, bool) or not isinstance(given, int) or not 1 <= given < 2 ** 23:
        raise OfficialCheckpointError(f"--max-count must be an integer in 1..{2 ** 23 - 1}, "
                                      f"got {given!r}", option="max_count")
    return Setting(given, "--max-count")
