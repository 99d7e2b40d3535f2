"""The Spikformer configuration: everything needed to rebuild a model, and nothing else.

A configuration is stored in every checkpoint as a plain dict (``to_dict``), so the compiler
rebuilds the exact network from the file alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

NUM_SPS_STAGES = 4  # conv stages with D/8, D/4, D/2, D channels

# Model families built from one configuration (spikformer_neuro.model.build_model):
#   spikformer    Zhou et al., ICLR 2023: spiking self-attention Q.K^T.V (model.py)
#   spike-driven  Yao et al., NeurIPS 2023: spike-driven self-attention (masks and sums) and
#                 the membrane shortcut (spike_driven.py)
FAMILIES = ("spikformer", "spike-driven")
DEFAULT_FAMILY = FAMILIES[0]


class ConfigError(ValueError):
    """A configuration that cannot describe a valid Spikformer."""


@dataclass(frozen=True)
class SpikformerConfig:
    name: str
    img_size: int  # square input, H = W
    in_channels: int
    num_classes: int
    embed_dim: int
    depth: int
    num_heads: int
    time_steps: int = 4
    mlp_ratio: int = 4
    # SPS stages (0..3) followed by a 3x3 / stride 2 max-pool. The paper uses (2, 3) on
    # CIFAR (patch 4) and (0, 1, 2, 3) on ImageNet and DVS (patch 16).
    pool_stages: Tuple[int, ...] = (2, 3)
    event_input: bool = False  # True: input is [T, C, H, W] event frames, not a static image
    # Event frames of counts (events per pixel and bin, as spikingjelly's
    # integrate_events_segment_to_frame makes them) hold integers 0..event_max_count; None:
    # binary frames (0/1). The bound is the quantizer's proven input range: larger counts are
    # refused at run time, never clipped.
    event_max_count: Optional[int] = None
    attn_scale: float = 0.125
    tau: float = 2.0
    v_threshold: float = 1.0
    attn_v_threshold: float = 0.5
    # Per-channel input normalisation applied inside the model: x -> (x - mean) / std.
    input_mean: Optional[Tuple[float, ...]] = None
    input_std: Optional[Tuple[float, ...]] = None
    description: str = field(default="", compare=False)
    family: str = DEFAULT_FAMILY

    def __post_init__(self) -> None:
        self.validate()

    # -- derived geometry ---------------------------------------------------------------
    @property
    def stage_channels(self) -> Tuple[int, ...]:
        d = self.embed_dim
        return (d // 8, d // 4, d // 2, d)

    @property
    def patch_size(self) -> int:
        return 2 ** len(self.pool_stages)

    @property
    def token_grid(self) -> int:
        """Side of the token grid after the SPS max-pools."""
        side = self.img_size
        for _ in self.pool_stages:
            side = (side + 2 * 1 - 3) // 2 + 1  # MaxPool2d(3, stride 2, padding 1)
        return side

    @property
    def num_tokens(self) -> int:
        return self.token_grid ** 2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def input_shape(self) -> Tuple[int, ...]:
        """Shape of one sample as the data set yields it (no batch dimension)."""
        chw = (self.in_channels, self.img_size, self.img_size)
        return (self.time_steps,) + chw if self.event_input else chw

    # -- checks -----------------------------------------------------------------------
    def validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"configuration '{self.name}': {msg}")

        for key in ("img_size", "in_channels", "num_classes", "embed_dim", "depth",
                    "num_heads", "time_steps", "mlp_ratio"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{key} must be a positive integer, got {value!r}")
        if self.family not in FAMILIES:
            raise bad(f"family must be one of {list(FAMILIES)}, got {self.family!r}")
        if self.family == "spike-driven" and self.mlp_ratio == 1:
            raise bad("mlp_ratio 1: the official spike-driven MLP then adds a second, inner "
                      "residual that this implementation does not build; use mlp_ratio >= 2")
        if self.embed_dim % 8:
            raise bad(f"embed_dim {self.embed_dim} must be a multiple of 8 (SPS uses D/8 channels)")
        if self.embed_dim % self.num_heads:
            raise bad(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.event_max_count is not None:
            count = self.event_max_count
            if not self.event_input:
                raise bad("event_max_count is for event input (event_input=True); a static "
                          "image model takes values in [0, 1]")
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count < 2 ** 23:
                raise bad(f"event_max_count must be an integer in 1..{2 ** 23 - 1} (the 24-bit "
                          f"graded payload), got {count!r}")
            if self.input_mean is not None or self.input_std is not None:
                raise bad("event-count input is not normalised: drop input_mean/input_std")
        stages = tuple(self.pool_stages)
        if any(s not in range(NUM_SPS_STAGES) for s in stages) or len(set(stages)) != len(stages):
            raise bad(f"pool_stages {stages} must be distinct SPS stage indices in 0..3")
        if self.tau <= 1.0:
            raise bad(f"tau must be > 1, got {self.tau}")
        for key in ("v_threshold", "attn_v_threshold", "attn_scale"):
            if not getattr(self, key) > 0:
                raise bad(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("input_mean", "input_std"):
            value = getattr(self, key)
            if value is not None and len(value) != self.in_channels:
                raise bad(f"{key} has {len(value)} values for {self.in_channels} input channels")
        if self.input_std is not None and any(s <= 0 for s in self.input_std):
            raise bad(f"input_std must be positive, got {self.input_std}")

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["pool_stages"] = list(self.pool_stages)
        if out["family"] == DEFAULT_FAMILY:
            del out["family"]  # files written before families existed stay byte-identical
        for key in ("input_mean", "input_std"):
            if out[key] is not None:
                out[key] = [float(v) for v in out[key]]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "SpikformerConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"model configuration must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys {unknown}; known keys: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # type: ignore[misc]
        if missing:
            raise ConfigError(f"model configuration lacks required keys {missing}")
        kwargs = dict(data)
        kwargs["pool_stages"] = tuple(int(s) for s in kwargs.get("pool_stages", (2, 3)))
        for key in ("input_mean", "input_std"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "SpikformerConfig":
        return dataclasses.replace(self, **changes)
