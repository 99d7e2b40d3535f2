"""The three model layouts of the official Spikformer code, and their weights in ours.

The official repository (ZK-Zhou/spikformer) has one model.py per folder; they compute the
same network but name and shape some layers differently:

| layout              | q/k/v/proj                     | MLP fc1/fc2                          |
|---------------------|--------------------------------|--------------------------------------|
| official-cifar10    | ``q_linear`` nn.Linear         | ``fc1_linear`` nn.Linear             |
| official-imagenet   | ``q_conv`` Conv1d k=1, no bias | ``fc1_conv`` Conv2d 1x1 [4D, D, 1, 1] |
| official-cifar10dvs | ``q_conv`` Conv1d k=1, no bias | ``fc1_conv`` Conv1d k=1 [4D, D, 1]   |

(the attention output ``proj`` always has a bias). A 1x1 convolution over tokens is a Linear
over features: its weight is reshaped to [out, in], and a missing bias is a zero bias (exact).
Keys the forward pass never reads -- the LayerNorms ``block.j.norm1/norm2``, and in
cifar10dvs ``pos_embed`` and ``norm`` -- are dropped and listed.

spikingjelly 2.x's own Spikformer (``activation_based/model/spikformer.py``) is recognised
and refused: its stem runs Conv -> BN -> MaxPool -> LIF, max-pooling the analog BN output
before the neuron, where the paper's and ours (LIF, then max-pool of binary spikes, which
Loihi computes exactly as a sum-pool and a threshold) pool spikes. Its network is a different
one and cannot be converted exactly; an approximate conversion is not done.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from spikformer_neuro.config import SpikformerConfig
from spikformer_neuro.model import build_model

from .errors import OfficialCheckpointError

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_SHOW = 5   # keys named in a message; the rest are counted


@dataclass(frozen=True)
class Layout:
    name: str
    model_py: str                          # where upstream defines it, for messages
    token_layer: str                       # "linear" or "conv": the q/k/v/proj layer names
    mlp_layer: str                         # "linear" or "conv": the fc1/fc2 layer names
    mlp_weight_dims: int                   # 2 (Linear), 3 (Conv1d) or 4 (Conv2d 1x1)
    pool_stages: Tuple[int, ...]           # SPS stages followed by MaxPool2d(3, 2, 1)
    attn_scale: float
    event_input: bool = False              # [B, T, 2, H, W] frames of event counts
    time_steps: Optional[int] = None       # fixed by the official code (imagenet: T = 4)
    img_size: Optional[int] = None         # fixed by the official code (cifar10dvs: 128)
    mean: Optional[Tuple[float, ...]] = None   # the official recipe's normalisation
    std: Optional[Tuple[float, ...]] = None
    unused: Tuple[str, ...] = ()           # regexes of keys its forward never reads

    def official_key(self, ours: str) -> Optional[str]:
        """The official name of our state-dict key ``ours`` (None: not one of the network's)."""
        for pattern, template in _RENAMES:
            match = re.fullmatch(pattern, ours)
            if match:
                parts = match.groupdict()
                if "stage" in parts:
                    parts["stage"] = "" if parts["stage"] == "0" else parts["stage"]
                return template.format(token=self.token_layer, mlp=self.mlp_layer, **parts)
        return None


_LAYER_NORMS = (r"block\.\d+\.norm[12]\.(weight|bias)",)
OFFICIAL_CIFAR10 = Layout(
    "official-cifar10", "cifar10/model.py", "linear", "linear", 2, (2, 3), 0.125,
    mean=CIFAR10_MEAN, std=CIFAR10_STD, unused=_LAYER_NORMS)
OFFICIAL_IMAGENET = Layout(
    "official-imagenet", "imagenet/model.py", "conv", "conv", 4, (0, 1, 2, 3), 0.125,
    time_steps=4, mean=IMAGENET_MEAN, std=IMAGENET_STD, unused=_LAYER_NORMS)
OFFICIAL_CIFAR10DVS = Layout(
    "official-cifar10dvs", "cifar10dvs/model.py", "conv", "conv", 3, (0, 1, 2, 3), 0.25,
    event_input=True, img_size=128,
    unused=_LAYER_NORMS + (r"pos_embed", r"norm\.(weight|bias)"))
LAYOUTS: Dict[str, Layout] = {lay.name: lay for lay in
                              (OFFICIAL_CIFAR10, OFFICIAL_IMAGENET, OFFICIAL_CIFAR10DVS)}

# our key -> the official one; {token}/{mlp} are the layout's layer kinds
_BN = r"(?P<bn>weight|bias|running_mean|running_var|num_batches_tracked)"
_RENAMES = (
    (r"sps\.stages\.(?P<stage>[0-3])\.conv\.weight", "patch_embed.proj_conv{stage}.weight"),
    (rf"sps\.stages\.(?P<stage>[0-3])\.bn\.{_BN}", "patch_embed.proj_bn{stage}.{bn}"),
    (r"sps\.rpe\.conv\.weight", "patch_embed.rpe_conv.weight"),
    (rf"sps\.rpe\.bn\.{_BN}", "patch_embed.rpe_bn.{bn}"),
    (r"blocks\.(?P<j>\d+)\.attn\.(?P<x>q|k|v|proj)\.linear\.(?P<p>weight|bias)",
     "block.{j}.attn.{x}_{token}.{p}"),
    (rf"blocks\.(?P<j>\d+)\.attn\.(?P<x>q|k|v|proj)\.bn\.{_BN}", "block.{j}.attn.{x}_bn.{bn}"),
    (r"blocks\.(?P<j>\d+)\.mlp\.(?P<x>fc1|fc2)\.linear\.(?P<p>weight|bias)",
     "block.{j}.mlp.{x}_{mlp}.{p}"),
    (rf"blocks\.(?P<j>\d+)\.mlp\.(?P<x>fc1|fc2)\.bn\.{_BN}", "block.{j}.mlp.{x}_bn.{bn}"),
    (r"head\.(?P<p>weight|bias)", "head.{p}"),
)
# official keys that may be absent, and the exact value that replaces them
_ZERO_BIAS = re.compile(r"block\.\d+\.attn\.[qkv]_conv\.bias")   # Conv1d(bias=False)
_BN_COUNTER = re.compile(r".*_bn\d?\.num_batches_tracked")      # not read in eval mode

# spikingjelly 2.x's activation_based/model/spikformer.py
_SPIKINGJELLY2 = re.compile(r"patch_embed\.(stages|positional_encoding)\.|\.qkv_conv_bn\.")


class SpikingJelly2Error(OfficialCheckpointError):
    """A spikingjelly 2.x Spikformer: a different network, refused (see the module doc)."""


def refuse_spikingjelly2(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`SpikingJelly2Error`, saying why, for spikingjelly 2.x's Spikformer."""
    sj2 = next((k for k in state if _SPIKINGJELLY2.search(k)), None)
    if sj2 is not None:
        raise SpikingJelly2Error(
            f"{path}: a Spikformer of spikingjelly 2.x (activation_based/model/spikformer.py; "
            f"key {sj2!r}), which is refused: its stem runs Conv -> BN -> MaxPool -> LIF, "
            "max-pooling the analog BatchNorm output before the neuron, while the paper's "
            "Spikformer and spikformer-neuro fire the LIF first and max-pool binary spikes "
            "(which Loihi computes exactly as a sum-pool and a threshold). Pooling analog "
            "values before the threshold is another network, which this compiler cannot run "
            "exactly; converting it approximately is not done. Train with the official "
            "Spikformer code (ZK-Zhou/spikformer) or spikeform-train instead")


def detect_layout(path: Path, state: Mapping[str, torch.Tensor]) -> Layout:
    """The official layout of a state dict (without DDP prefix), by its keys and shapes."""
    refuse_spikingjelly2(path, state)
    if "block.0.attn.q_linear.weight" in state:
        return OFFICIAL_CIFAR10
    if "block.0.attn.q_conv.weight" in state:
        fc1 = state.get("block.0.mlp.fc1_conv.weight")
        if fc1 is not None and fc1.dim() == 4:
            return OFFICIAL_IMAGENET
        if fc1 is not None and fc1.dim() == 3:
            return OFFICIAL_CIFAR10DVS
        found = "missing" if fc1 is None else f"of shape {list(fc1.shape)}"
        raise OfficialCheckpointError(
            f"{path}: its attention is the Conv1d of official-imagenet and "
            f"official-cifar10dvs, but block.0.mlp.fc1_conv.weight is {found} (Conv2d 1x1 "
            "[4D, D, 1, 1] in imagenet/model.py, Conv1d [4D, D, 1] in cifar10dvs/model.py); "
            "pass --layout to say which it is", option="layout")
    raise OfficialCheckpointError(
        f"{path}: not a Spikformer of the official code: it has no "
        "'block.0.attn.q_linear.weight' (official-cifar10) or 'block.0.attn.q_conv.weight' "
        f"(official-imagenet, official-cifar10dvs); its keys begin {_first(state)}. This "
        "converter reads models of ZK-Zhou/spikformer's cifar10/, imagenet/ and cifar10dvs/ "
        "model.py", option="layout")


def looks_official(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has the keys of an official layout or of spikingjelly 2.x's
    Spikformer (which :func:`detect_layout` refuses with its reason)."""
    return any(k in state for k in ("block.0.attn.q_linear.weight",
                                    "block.0.attn.q_conv.weight")) \
        or any(_SPIKINGJELLY2.search(k) for k in state)


@dataclass(frozen=True)
class Architecture:
    """What the weights of an official model determine."""

    embed_dim: int
    depth: int
    mlp_ratio: int
    num_classes: int
    in_channels: int


def read_architecture(path: Path, layout: Layout,
                      state: Mapping[str, torch.Tensor]) -> Architecture:
    """Embedding dimension, depth, MLP ratio, classes and input channels from the weights."""
    def weight(key: str, shape: str) -> torch.Tensor:
        tensor = state.get(key)
        if tensor is None:
            raise OfficialCheckpointError(f"{path}: {layout.name} layout ({layout.model_py}) "
                                          f"without the key {key!r} {shape}, which it always "
                                          "has", option="layout")
        if tensor.dim() != shape.count(",") + 1:
            raise OfficialCheckpointError(f"{path}: {key} has shape {list(tensor.shape)}, "
                                          f"where {layout.model_py} has {shape}; if the layout "
                                          "was guessed wrong, pass --layout", option="layout")
        return tensor

    stem = weight("patch_embed.proj_conv.weight", "[D/8, channels, 3, 3]")
    embed_dim = int(weight("patch_embed.rpe_conv.weight", "[D, D, 3, 3]").shape[0])
    blocks = sorted({int(m.group(1)) for k in state
                     for m in [re.match(r"block\.(\d+)\.", k)] if m})
    if not blocks or blocks != list(range(len(blocks))):
        raise OfficialCheckpointError(f"{path}: its transformer blocks are numbered {blocks}; "
                                      "an official model has block.0 .. block.<depth-1>")
    fc1_shape = "[4D, D" + ", 1" * (layout.mlp_weight_dims - 2) + "]"
    hidden = int(weight(f"block.0.mlp.fc1_{layout.mlp_layer}.weight", fc1_shape).shape[0])
    if hidden % embed_dim:
        raise OfficialCheckpointError(f"{path}: the MLP's hidden width {hidden} is not a "
                                      f"multiple of the embedding dimension {embed_dim}; "
                                      "spikformer-neuro takes an integer MLP ratio")
    head = weight("head.weight", "[classes, D]")
    return Architecture(embed_dim, len(blocks), hidden // embed_dim, int(head.shape[0]),
                        int(stem.shape[1]))


@dataclass
class MappedWeights:
    state_dict: Dict[str, torch.Tensor]    # ours, in our model's key order
    dropped: List[str]                     # official keys the forward pass never reads
    filled: List[str]                      # official keys absent from the file, made exact


def map_weights(path: Path, layout: Layout, state: Mapping[str, torch.Tensor],
                config: SpikformerConfig) -> MappedWeights:
    """Our state dict for ``config`` from the official one. Every key of our model needs its
    official counterpart with the shape ``layout`` gives it (a 1x1 convolution's trailing
    ones included); anything else the file holds must be one of the layout's unused keys."""
    with torch.device("meta"):
        expected = {k: t.shape for k, t in build_model(config).state_dict().items()}
    ours: Dict[str, torch.Tensor] = {}
    used, filled, missing, misshaped = set(), [], [], []
    for key, shape in expected.items():
        name = layout.official_key(key)
        if name is None:   # our model has a tensor the rename table does not know: a bug here
            raise AssertionError(f"no official name for {key}")
        want = _official_shape(layout, name, shape)
        tensor = state.get(name)
        if tensor is None:
            if (_ZERO_BIAS.fullmatch(name) and layout.token_layer == "conv") or \
                    _BN_COUNTER.fullmatch(name):
                ours[key] = torch.zeros(shape, dtype=torch.long if "num_batches" in name
                                        else torch.float32)
                filled.append(name)
            else:
                missing.append(f"{name} (expected {list(want)})")
            continue
        used.add(name)
        if tuple(tensor.shape) != tuple(want):
            misshaped.append(f"{name} (expected {list(want)}, found {list(tensor.shape)})")
            continue
        if tensor.is_floating_point():
            tensor = tensor.float()   # exact for float16/bfloat16 copies of the weights
            problem = non_finite(tensor)
            if problem:
                raise OfficialCheckpointError(
                    f"{path}: tensor {name!r} holds {problem}: the weights are unusable "
                    "(training diverged, or the file was damaged); convert an earlier "
                    "checkpoint of the run")
        ours[key] = tensor.reshape(shape).clone()   # off the memory map, [out, in] for 1x1s
    extra = [k for k in state if k not in used]
    dropped = [k for k in extra if any(re.fullmatch(p, k) for p in layout.unused)]
    unknown = [f"{k} {list(state[k].shape)}" for k in extra if k not in dropped]
    problems = [f"{len(items)} {label}: {', '.join(items[:_SHOW])}"
                + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")
                for label, items in (("missing keys", missing),
                                     ("keys of another shape", misshaped),
                                     ("keys the official model does not have", unknown))
                if items]
    if problems:
        raise OfficialCheckpointError(
            f"{path}: its weights do not match the {layout.name} layout ({layout.model_py}) "
            f"with D = {config.embed_dim}, depth {config.depth}, MLP ratio {config.mlp_ratio}, "
            f"{config.num_classes} classes: {'; '.join(problems)}. A model changed from the "
            "official code cannot be converted; if the layout was guessed wrong, pass --layout",
            option="layout")
    return MappedWeights(ours, dropped, filled)


def non_finite(tensor: torch.Tensor) -> str:
    """'3 NaN and 1 infinite values out of 64' for a tensor holding such values, else ''."""
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return ""
    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    counts = " and ".join(([f"{nan} NaN"] if nan else []) + ([f"{inf} infinite"] if inf else []))
    return f"{counts} value{'s' if nan + inf > 1 else ''} out of {tensor.numel()}"


def _official_shape(layout: Layout, name: str, ours: torch.Size) -> Tuple[int, ...]:
    """The shape ``name`` has in the official model whose counterpart in ours is ``ours``."""
    if name.endswith("_conv.weight") and len(ours) == 2:    # a token-wise 1x1 convolution
        dims = layout.mlp_weight_dims if ".mlp." in name else 3
        return tuple(ours) + (1,) * (dims - 2)
    return tuple(ours)


def _first(state: Mapping[str, torch.Tensor]) -> str:
    keys = list(state)
    return ", ".join(repr(k) for k in keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")
