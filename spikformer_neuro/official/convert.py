"""An official Spikformer checkpoint -> a spikformer-neuro :class:`Checkpoint`.

The weights fix the architecture (embedding dimension, depth, MLP ratio, classes, input
channels); :mod:`.settings` finds the rest; :mod:`.layouts` renames and reshapes the
tensors. The result is an in-memory ``Checkpoint`` (what the compiler takes, no file
needed) plus a :class:`ConversionSummary` saying where each value came from;
:func:`save_conversion` writes it as our own checkpoint file (atomic, loads with
``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from spikformer_neuro.checkpoint import FORMAT_VERSION, Checkpoint, save_checkpoint
from spikformer_neuro.config import ConfigError, SpikformerConfig
from spikformer_neuro.model import build_model, count_parameters

from .container import OURS, Container, read_container
from .errors import OfficialCheckpointError
from .layouts import (LAYOUTS, Architecture, Layout, detect_layout, map_weights,
                      read_architecture, refuse_spikingjelly2)
from .settings import ConversionOptions, Settings, resolve

_PLAIN = (str, int, float, bool, type(None))


@dataclass
class ConversionSummary:
    source: Path
    container: str                # container.TIMM, DVS or BARE
    layout: str
    layout_detected: bool         # False: chosen with --layout
    ema: bool
    stripped_prefix: bool
    architecture: Architecture
    settings: Settings
    dropped: List[str]            # official keys the forward pass never reads
    filled: List[str]             # official keys absent from the file, filled exactly
    parameters: int
    config_name: str

    def lines(self) -> List[str]:
        s, a = self.settings, self.architecture
        weights = ("EMA weights (state_dict_ema)" if self.ema else "weights") + \
            (", DDP 'module.' prefix removed" if self.stripped_prefix else "")
        norm = ("none (event counts)" if s.mean.value is None else
                f"mean {list(s.mean.value)} (from {s.mean.origin}), std "
                f"{list(s.std.value)} (from {s.std.origin})")
        lines = [
            f"source            {self.source} ({self.container}, {weights})",
            f"layout            {self.layout} ("
            f"{'detected from its keys' if self.layout_detected else 'from --layout'})",
            f"architecture      D {a.embed_dim}, depth {a.depth}, MLP ratio {a.mlp_ratio}, "
            f"{a.num_classes} classes, {a.in_channels} input channels (from the weights)",
            f"heads             {s.num_heads.describe()}",
            f"time steps        {s.time_steps.describe()}",
            f"image size        {s.img_size.describe()}",
            f"normalisation     {norm}"]
        if s.max_count is not None:
            lines.append(f"max event count   {s.max_count.describe()}: larger counts per "
                         "pixel and bin are refused at run time")
        lines += [f"data set          {s.dataset.describe()}",
                  f"parameters        {self.parameters:,} ({self.config_name})",
                  f"dropped keys      {_listing(self.dropped, 'unused by the forward pass')}"]
        if self.filled:
            why = "absent from the file, filled exactly (zero biases, BN counters)"
            lines.append(f"filled keys       {_listing(self.filled, why)}")
        return lines

    def as_dict(self) -> Dict[str, Any]:
        return {"source": str(self.source), "container": self.container, "layout": self.layout,
                "layout_detected": self.layout_detected, "ema": self.ema,
                "stripped_ddp_prefix": self.stripped_prefix,
                "architecture": dict(vars(self.architecture)),
                "settings": self.settings.as_dict(), "dropped_keys": list(self.dropped),
                "filled_keys": list(self.filled), "parameters": self.parameters,
                "config": self.config_name}


def _listing(keys: List[str], why: str) -> str:
    if not keys:
        return "none"
    return f"{len(keys)}, {why}: {', '.join(keys)}"


@dataclass
class Conversion:
    checkpoint: Checkpoint        # in memory; its path is the official file's
    summary: ConversionSummary


def convert_file(path: "str | os.PathLike[str]",
                 options: Optional[ConversionOptions] = None) -> Conversion:
    """Read ``path`` (restricted unpickler, never running code) and convert it."""
    options = options or ConversionOptions()
    container = read_container(path, ema=options.ema)
    if container.kind == OURS:
        raise OfficialCheckpointError(f"{container.path} is already a spikformer-neuro "
                                      "checkpoint: compile it as it is with spikeform-compile")
    return convert_container(container, options)


def convert_container(container: Container, options: ConversionOptions) -> Conversion:
    path = container.path
    layout = _layout(container, options.layout)
    arch = read_architecture(path, layout, container.state_dict)
    settings = resolve(container, layout, arch, options)
    config = _config(path, layout, arch, settings)
    mapped = map_weights(path, layout, container.state_dict, config)
    with torch.device("meta"):
        parameters = count_parameters(build_model(config))
    summary = ConversionSummary(
        path, container.kind, layout.name, options.layout == "auto", container.ema,
        container.stripped_prefix, arch, settings, mapped.dropped, mapped.filled, parameters,
        config.name)
    checkpoint = Checkpoint(
        path=path, config=config, state_dict=mapped.state_dict, dataset=settings.dataset.value,
        class_names=list(settings.class_names),
        normalisation={"mean": list(config.input_mean or (0.0,) * config.in_channels),
                       "std": list(config.input_std or (1.0,) * config.in_channels)},
        metrics={}, train_args=_provenance(container, summary), training_state=None,
        format_version=FORMAT_VERSION, created_by=f"spikformer-neuro {_version()} "
                                                  f"(converted from {path.name})")
    return Conversion(checkpoint, summary)


def save_conversion(conversion: Conversion, out: "str | os.PathLike[str]") -> Path:
    """Write the converted checkpoint to ``out`` (atomically; spikformer_neuro.checkpoint)."""
    ckpt = conversion.checkpoint
    return save_checkpoint(out, model=ckpt.build_model(), dataset=ckpt.dataset,
                           class_names=ckpt.class_names, metrics=ckpt.metrics,
                           train_args=ckpt.train_args)


def _layout(container: Container, choice: str) -> Layout:
    if choice == "auto":
        return detect_layout(container.path, container.state_dict)
    if choice not in LAYOUTS:
        raise OfficialCheckpointError(f"unknown layout {choice!r}; choose auto or one of "
                                      f"{', '.join(LAYOUTS)}", option="layout")
    refuse_spikingjelly2(container.path, container.state_dict)   # another network, always
    return LAYOUTS[choice]


def _config(path: Path, layout: Layout, arch: Architecture,
            settings: Settings) -> SpikformerConfig:
    try:
        return SpikformerConfig(
            name=f"{layout.name}-{arch.depth}-{arch.embed_dim}", img_size=settings.img_size.value,
            in_channels=arch.in_channels, num_classes=arch.num_classes,
            embed_dim=arch.embed_dim, depth=arch.depth, num_heads=settings.num_heads.value,
            time_steps=settings.time_steps.value, mlp_ratio=arch.mlp_ratio,
            pool_stages=layout.pool_stages, event_input=layout.event_input,
            event_max_count=None if settings.max_count is None else settings.max_count.value,
            attn_scale=layout.attn_scale, input_mean=settings.mean.value,
            input_std=settings.std.value,
            description=f"converted from {path.name} ({layout.name}, {layout.model_py})")
    except ConfigError as exc:
        raise OfficialCheckpointError(f"{path}: {exc}") from None


def _provenance(container: Container, summary: ConversionSummary) -> Dict[str, Any]:
    """What the converted checkpoint records of its origin (plain values only)."""
    args = {k: v for k, v in (container.args or {}).items() if _is_plain(v)}
    return {"converted_from": summary.as_dict(), "official_args": args,
            "official_info": dict(container.info)}


def _is_plain(value: Any) -> bool:
    if type(value) in _PLAIN:
        return True
    return type(value) in (list, tuple) and all(type(v) in _PLAIN for v in value)


def _version() -> str:
    try:
        return metadata.version("spikformer-neuro")
    except metadata.PackageNotFoundError:
        return "unknown"
