"""Networks laid out like the official Spikformer code, for the official-checkpoint tests.

Written for these tests (not copied): modules with the layer names, shapes and types of
ZK-Zhou/spikformer's cifar10/, imagenet/ and cifar10dvs/ model.py and their forward order,
whose neurons are spikingjelly 0.0.0.0.12's own ``clock_driven.neuron.MultiStepLIFNode(
tau=2.0, detach_reset=True)`` (``v_threshold=0.5`` in the attention), so the state dicts
they save are what the official code saves and their forward is the official computation
run by the real spikingjelly. The official code passes ``backend='cupy'`` (CUDA kernels of
the same recurrence); on a CPU these use ``backend='torch'``.

Per layout (T, B batch, N tokens, C = D channels):

- official-cifar10: tokens [T, B, N, C]; q/k/v/proj and fc1/fc2 are nn.Linear, their
  BatchNorm1d runs on the transposed [TB, C, N]; attention ``((q @ kᵀ) * 0.125) @ v``;
  max-pools after SPS stages 2 and 3; input repeated over T
- official-imagenet: maps [T, B, C, H, W]; q/k/v Conv1d k=1 without bias, proj Conv1d;
  MLP Conv2d 1x1 + BatchNorm2d; attention ``(q @ (kᵀ @ v)) * 0.125``; max-pools after all
  four stages; T = 4 hard-coded
- official-cifar10dvs: [T, B, C, N]; Conv1d everywhere; attention ``((q @ kᵀ) @ v) * 0.25``;
  input [B, T, 2, H, W] frames of event counts; ``pos_embed`` and a final LayerNorm ``norm``
  that the forward never reads (the official SPS hard-codes 128x128 input; this one takes any
  multiple of 16, so the tests stay small)

Head, all three: mean over tokens, then over T, then ``head``.

Random weights (:func:`randomize`) lie on a dyadic grid (multiples of 2^-8, BatchNorm
scales that are powers of two): every sum and product inside a layer is then exact in
float32 whatever the order, so nn.Linear, Conv1d and Conv2d 1x1 -- and BatchNorm on a
transposed tensor, which torch evaluates with a different kernel -- give bit-identical
values, and the converted model's spikes and logits can be compared with ``torch.equal``.
(With arbitrary float weights the kernels round differently in the last bit; a membrane
potential within one ulp of the threshold would then flip a spike.)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from support.requirements import import_interop

CIFAR10, IMAGENET, CIFAR10DVS = "official-cifar10", "official-imagenet", "official-cifar10dvs"
POOLS = {CIFAR10: (2, 3), IMAGENET: (0, 1, 2, 3), CIFAR10DVS: (0, 1, 2, 3)}
SCALE = {CIFAR10: 0.125, IMAGENET: 0.125, CIFAR10DVS: 0.25}


def spikingjelly():
    """(spikingjelly.clock_driven.neuron, .functional) at the pinned version; skips the calling
    test module when it is not installed (fails under SPIKEFORM_REQUIRE_TEST_DEPS=1).

    spikingjelly tries to import lava-dl's slayer for a 'lava' backend these tests do not use;
    the import is blocked while spikingjelly loads (it then runs without that backend), so
    these tests stay out of Lava and in the fast `-m "not lava"` loop."""
    blocked = "lava.lib.dl.slayer"
    before = sys.modules.get(blocked, _ABSENT)
    if before is _ABSENT:
        sys.modules[blocked] = None   # `import` of a None entry raises ImportError
    try:
        neuron = import_interop("spikingjelly.clock_driven.neuron", "spikingjelly")
        from spikingjelly.clock_driven import functional
    finally:
        if before is _ABSENT:
            del sys.modules[blocked]
    return neuron, functional


_ABSENT = object()


def lif(v_threshold: float = 1.0) -> nn.Module:
    """spikingjelly's own neuron, as the official model.py builds it."""
    neuron, _ = spikingjelly()
    return neuron.MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True,
                                   backend="torch")


def no_neuron(v_threshold: float = 1.0) -> nn.Module:
    """A stand-in for tests that only need the weights (neurons have no state-dict
    entries), so that they run where spikingjelly is not installed."""
    return nn.Identity()


Neuron = Callable[..., nn.Module]


# -- the stem -----------------------------------------------------------------------------

class SPS(nn.Module):
    """``patch_embed``: proj_conv/proj_bn/proj_lif, proj_conv1 ... 3, rpe_conv/bn/lif."""

    def __init__(self, in_channels: int, dim: int, pools: Tuple[int, ...], neuron: Neuron):
        super().__init__()
        chans = (in_channels, dim // 8, dim // 4, dim // 2, dim)
        for i in range(4):
            tag = "" if i == 0 else str(i)
            setattr(self, f"proj_conv{tag}", nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1,
                                                       bias=False))
            setattr(self, f"proj_bn{tag}", nn.BatchNorm2d(chans[i + 1]))
            setattr(self, f"proj_lif{tag}", neuron())
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.pools = pools
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, C, H, W] -> [T, B, D, h, w]: each stage Conv -> BN -> LIF, then (in the
        pooled stages) the max-pool of the spikes; RPE spikes added to their input."""
        t, b = x.shape[:2]
        x = x.flatten(0, 1)
        for i in range(4):
            tag = "" if i == 0 else str(i)
            y = getattr(self, f"proj_bn{tag}")(getattr(self, f"proj_conv{tag}")(x))
            x = getattr(self, f"proj_lif{tag}")(y.reshape(t, b, *y.shape[1:])).flatten(0, 1)
            if i in self.pools:
                x = self.pool(x)
        feat = x.reshape(t, b, *x.shape[1:])
        y = self.rpe_bn(self.rpe_conv(x))
        return self.rpe_lif(y.reshape(t, b, *y.shape[1:])) + feat


# -- official-cifar10: tokens [T, B, N, C], nn.Linear ------------------------------------

def _linear_bn_lif(linear: nn.Linear, bn: nn.BatchNorm1d, neuron: nn.Module,
                   x: torch.Tensor) -> torch.Tensor:
    """cifar10/model.py's order: Linear over [TB, N, C], BatchNorm1d over the transposed
    [TB, C, N], back to [T, B, N, C'], LIF."""
    t, b, n, _ = x.shape
    y = linear(x.flatten(0, 1))
    y = bn(y.transpose(-1, -2)).transpose(-1, -2)
    return neuron(y.reshape(t, b, n, -1).contiguous())


class LinearSSA(nn.Module):
    def __init__(self, dim: int, heads: int, neuron: Neuron):
        super().__init__()
        self.heads = heads
        for x in ("q", "k", "v", "proj"):
            setattr(self, f"{x}_linear", nn.Linear(dim, dim))
            setattr(self, f"{x}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{x}_lif", neuron())
        self.attn_lif = neuron(0.5)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        t, b, n, c = x.shape
        return x.reshape(t, b, n, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split(_linear_bn_lif(getattr(self, f"{n}_linear"),
                                             getattr(self, f"{n}_bn"),
                                             getattr(self, f"{n}_lif"), x)) for n in "qkv")
        attn = (q @ k.transpose(-2, -1)) * SCALE[CIFAR10]
        y = (attn @ v).transpose(2, 3).reshape(x.shape).contiguous()
        return _linear_bn_lif(self.proj_linear, self.proj_bn, self.proj_lif, self.attn_lif(y))


class LinearMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, neuron: Neuron):
        super().__init__()
        for name, (a, b) in (("fc1", (dim, hidden)), ("fc2", (hidden, dim))):
            setattr(self, f"{name}_linear", nn.Linear(a, b))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(b))
            setattr(self, f"{name}_lif", neuron())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _linear_bn_lif(self.fc1_linear, self.fc1_bn, self.fc1_lif, x)
        return _linear_bn_lif(self.fc2_linear, self.fc2_bn, self.fc2_lif, x)


# -- official-imagenet and official-cifar10dvs: channels first, 1x1 convolutions -----------

class ConvSSA(nn.Module):
    """q/k/v Conv1d(k=1, bias=False), proj Conv1d, BatchNorm1d, on [T, B, C, N]."""

    def __init__(self, dim: int, heads: int, layout: str, neuron: Neuron):
        super().__init__()
        self.heads, self.layout = heads, layout
        for x in ("q", "k", "v", "proj"):
            setattr(self, f"{x}_conv", nn.Conv1d(dim, dim, 1, 1, bias=x == "proj"))
            setattr(self, f"{x}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{x}_lif", neuron())
        if layout == CIFAR10DVS:
            self.res_lif = neuron()   # constructed upstream, never called
        self.attn_lif = neuron(0.5)

    def conv_bn_lif(self, name: str, x: torch.Tensor) -> torch.Tensor:
        t, b, c, n = x.shape
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x.flatten(0, 1)))
        return getattr(self, f"{name}_lif")(y.reshape(t, b, c, n).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [T, B, C, N]
        t, b, c, n = x.shape

        def heads(s: torch.Tensor) -> torch.Tensor:
            return s.transpose(-1, -2).reshape(t, b, n, self.heads, c // self.heads) \
                .permute(0, 1, 3, 2, 4)

        q, k, v = (heads(self.conv_bn_lif(name, x)) for name in "qkv")
        if self.layout == IMAGENET:
            y = (q @ (k.transpose(-2, -1) @ v)) * SCALE[IMAGENET]
        else:
            y = ((q @ k.transpose(-2, -1)) @ v) * SCALE[CIFAR10DVS]
        y = self.attn_lif(y.transpose(3, 4).reshape(t, b, c, n).contiguous())
        return self.conv_bn_lif("proj", y)


class ConvMLP(nn.Module):
    """imagenet: Conv2d 1x1 + BatchNorm2d on [T, B, C, H, W]; cifar10dvs: Conv1d +
    BatchNorm1d on [T, B, C, N]."""

    def __init__(self, dim: int, hidden: int, layout: str, neuron: Neuron):
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if layout == IMAGENET else \
            (nn.Conv1d, nn.BatchNorm1d)
        for name, (a, b) in (("fc1", (dim, hidden)), ("fc2", (hidden, dim))):
            setattr(self, f"{name}_conv", conv(a, b, kernel_size=1, stride=1))
            setattr(self, f"{name}_bn", bn(b))
            setattr(self, f"{name}_lif", neuron())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        for name in ("fc1", "fc2"):
            y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x.flatten(0, 1)))
            x = getattr(self, f"{name}_lif")(y.reshape(t, b, *y.shape[1:]).contiguous())
        return x


class Block(nn.Module):
    def __init__(self, layout: str, dim: int, heads: int, mlp_ratio: int, neuron: Neuron):
        super().__init__()
        self.layout = layout
        self.norm1 = nn.LayerNorm(dim)   # built upstream, never called in the forward
        self.attn = LinearSSA(dim, heads, neuron) if layout == CIFAR10 else \
            ConvSSA(dim, heads, layout, neuron)
        self.norm2 = nn.LayerNorm(dim)
        hidden = dim * mlp_ratio
        self.mlp = LinearMLP(dim, hidden, neuron) if layout == CIFAR10 else \
            ConvMLP(dim, hidden, layout, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == IMAGENET:   # attention on [T, B, C, N], the rest on maps
            x = x + self.attn(x.flatten(3)).reshape(x.shape)
        else:
            x = x + self.attn(x)
        return x + self.mlp(x)


@dataclass(frozen=True)
class Spec:
    """The sizes of an official-layout network."""

    layout: str
    embed_dim: int = 32
    depth: int = 1
    num_heads: int = 4
    time_steps: int = 4
    img_size: int = 16
    in_channels: int = 3
    num_classes: int = 10
    mlp_ratio: int = 4

    @property
    def tokens(self) -> int:
        return (self.img_size // 2 ** len(POOLS[self.layout])) ** 2


class OfficialSpikformer(nn.Module):
    """``patch_embed``, ``block``, ``head`` (cifar10dvs: also ``pos_embed``, ``norm``)."""

    def __init__(self, spec: Spec, neuron: Neuron = lif):
        super().__init__()
        self.spec = spec
        d = spec.embed_dim
        self.patch_embed = SPS(spec.in_channels, d, POOLS[spec.layout], neuron)
        if spec.layout == CIFAR10DVS:
            self.pos_embed = nn.Parameter(torch.zeros(1, spec.tokens, d))
        self.block = nn.ModuleList(Block(spec.layout, d, spec.num_heads, spec.mlp_ratio, neuron)
                                   for _ in range(spec.depth))
        if spec.layout == CIFAR10DVS:
            self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] (normalised, as the official data loader hands them) or, for
        cifar10dvs, frames [B, T, C, H, W] -> logits [B, classes]."""
        if self.spec.layout == CIFAR10DVS:
            x = x.permute(1, 0, 2, 3, 4)
        else:
            x = x.unsqueeze(0).repeat(self.spec.time_steps, 1, 1, 1, 1)
        x = self.patch_embed(x)                                  # [T, B, C, h, w]
        if self.spec.layout == CIFAR10:
            x = x.flatten(-2).transpose(-1, -2)                  # [T, B, N, C]
        elif self.spec.layout == CIFAR10DVS:
            x = x.flatten(3)                                     # [T, B, C, N]
        for blk in self.block:
            x = blk(x)
        pooled = x.mean(2) if self.spec.layout == CIFAR10 else x.flatten(3).mean(3)
        return self.head(pooled.mean(0))


def official_logits(model: OfficialSpikformer, x: torch.Tensor) -> torch.Tensor:
    """The official forward from fresh membranes (spikingjelly's neurons keep their state
    between calls until ``functional.reset_net``, as the official loops reset them)."""
    _, functional = spikingjelly()
    functional.reset_net(model)
    with torch.no_grad():
        out = model(x)
    functional.reset_net(model)
    return out


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """What the official data loaders hand the model: (x - mean) / std per channel."""
    return (images - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


# -- random weights ------------------------------------------------------------------------

def _grid(shape, generator, bound: float, bits: int) -> torch.Tensor:
    """Uniform in [-bound, bound] on multiples of 2^-bits."""
    steps = max(1, int(bound * 2 ** bits))
    k = torch.randint(-steps, steps + 1, shape, generator=generator)
    return k.float() / 2 ** bits


def _variance_of_power_of_four(exponent: int, eps: float) -> float:
    """A float32 running_var whose var + eps rounds to exactly 4^exponent, so that BatchNorm's
    1/sqrt(var + eps) is the power of two 2^-exponent."""
    target = torch.tensor(4.0 ** exponent)
    var = target - torch.tensor(eps)
    while (var + torch.tensor(eps)) != target:
        var = torch.nextafter(var, target if var + eps < target else -target)
    return float(var)


def randomize(model: nn.Module, seed: int, rate_bias: float = 1.0) -> nn.Module:
    """Random weights and BatchNorm statistics that make every LIF fire (sometimes, not
    always), on the dyadic grid of the module doc; eval mode. ``rate_bias`` shifts the BN
    biases (more firing when larger)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(_grid(m.weight.shape, gen, 1.5 / fan_in ** 0.5, 8))
                if m.bias is not None:
                    m.bias.copy_(_grid(m.bias.shape, gen, 0.25, 8))
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                exponents = torch.randint(-1, 2, (c,), generator=gen)
                m.running_var.copy_(torch.tensor([_variance_of_power_of_four(int(e), m.eps)
                                                  for e in exponents]))
                m.running_mean.copy_(_grid((c,), gen, 0.5, 4))
                m.weight.copy_(0.5 + _grid((c,), gen, 1.0, 4).abs() * 2)
                m.bias.copy_(rate_bias * (0.25 + _grid((c,), gen, 1.0, 4).abs()))
                m.num_batches_tracked.fill_(1000)
            elif isinstance(m, nn.LayerNorm):   # unused by the forward; random all the same
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen))
        for name, p in model.named_parameters():
            if name == "pos_embed":
                p.copy_(torch.randn(p.shape, generator=gen))
    return model.eval()


def build_official(spec: Spec, seed: int = 0, neuron: Neuron = lif) -> OfficialSpikformer:
    """Random weights (:func:`randomize`); ``neuron=no_neuron`` for the weights only."""
    return randomize(OfficialSpikformer(spec, neuron), seed)


# -- spikes per layer ------------------------------------------------------------------------

def official_spikes(model: OfficialSpikformer, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Every LIF's spikes of the official forward, under our layer names and in our layout
    ([T, B, C, H, W] in the stem, [T, B, N, D] in the blocks)."""
    neuron, _ = spikingjelly()
    names = {}
    for name, m in model.named_modules():
        if isinstance(m, neuron.MultiStepLIFNode) and not name.endswith("res_lif"):
            names[m] = _our_lif_name(name)
    return _record(model, names, lambda: official_logits(model, x),
                   lambda name, s: _to_tokens(model.spec.layout, name, s))


def our_spikes(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Every LIF's spikes of a spikformer_neuro model (names without '.lif' suffix for the
    layers, as :func:`official_spikes` names them)."""
    from spikformer_neuro.neuron import MultiStepLIF

    names = {m: name for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}

    def run():
        with torch.no_grad():
            return model(x)

    return _record(model, names, run, lambda name, s: s)


def _record(model, names, run: Callable, arrange: Callable) -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, res, n=n: out.__setitem__(n, arrange(n, res.detach().clone())))
        for m, n in names.items()]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return out


def _our_lif_name(official: str) -> str:
    """patch_embed.proj_lif2 -> sps.stages.2.lif, block.0.attn.q_lif -> blocks.0.attn.q.lif."""
    parts = official.split(".")
    if parts[0] == "patch_embed":
        leaf = parts[1]
        if leaf == "rpe_lif":
            return "sps.rpe.lif"
        return f"sps.stages.{leaf[len('proj_lif'):] or 0}.lif"
    _, j, sub, leaf = parts
    if leaf == "attn_lif":
        return f"blocks.{j}.attn.attn_lif"
    return f"blocks.{j}.{sub}.{leaf[:-len('_lif')]}.lif"


def _to_tokens(layout: str, name: str, spikes: torch.Tensor) -> torch.Tensor:
    if name.startswith("sps.") or layout == CIFAR10:
        return spikes
    return spikes.flatten(3).transpose(2, 3)   # [T, B, C, N] or [T, B, C, H, W] -> [T, B, N, C]


# -- the files the official train.py scripts write --------------------------------------------

def train_args(spec: Spec, **changes) -> argparse.Namespace:
    """The Namespace an official train.py stores (the fields the converter may read, with
    the names and values upstream's argparse and .yml give them, plus a few others)."""
    if spec.layout == CIFAR10DVS:
        fields = dict(model="spikformer", dataset="cifar10dvs", num_classes=spec.num_classes,
                      T=spec.time_steps, T_train=None, lr=1e-3, epochs=96, device="cuda:1",
                      amp=True, distributed=False)
    elif spec.layout == IMAGENET:
        fields = dict(model="spikformer", dataset="imagenet", num_classes=spec.num_classes,
                      img_size=spec.img_size, input_size=None, mean=[0.485, 0.456, 0.406],
                      std=[0.229, 0.224, 0.225], lr=5e-4, opt="adamw", amp=True,
                      model_ema=False, betas=None)
    else:
        fields = dict(model="spikformer", dataset="torch/cifar10", num_classes=spec.num_classes,
                      time_step=spec.time_steps, layer=spec.depth, dim=spec.embed_dim,
                      num_heads=spec.num_heads, patch_size=4, mlp_ratio=spec.mlp_ratio,
                      img_size=spec.img_size, input_size=None, mean=[0.4914, 0.4822, 0.4465],
                      std=[0.2470, 0.2435, 0.2616], lr=5e-4, opt="adamw", amp=True,
                      scale=[1.0, 1.0], model_ema=False)
    fields.update(changes)
    return argparse.Namespace(**fields)


def _optimizer_state(model: nn.Module) -> dict:
    """A real AdamW state after one step (tensors per parameter, param_groups with tuples)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in model.parameters():
        p.grad = None
    return opt.state_dict()


def _prefixed(state: dict, ddp: bool) -> dict:
    return {("module." + k if ddp else k): v for k, v in state.items()}


def save_timm(model: OfficialSpikformer, path: Path, args: Optional[argparse.Namespace] = None,
              ema: Optional[OfficialSpikformer] = None, ddp: bool = False) -> Path:
    """timm 0.5.4 CheckpointSaver's dict, as cifar10/ and imagenet/ train.py write it."""
    content = {"epoch": 299, "arch": "spikformer",
               "state_dict": _prefixed(model.state_dict(), ddp),
               "optimizer": _optimizer_state(model), "version": 2,
               "args": args if args is not None else train_args(model.spec),
               "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                              "growth_interval": 2000, "_growth_tracker": 17},
               "metric": 95.19}
    if ema is not None:
        content["state_dict_ema"] = _prefixed(ema.state_dict(), ddp)
    torch.save(content, path)
    return path


def save_dvs(model: OfficialSpikformer, path: Path, args: Optional[argparse.Namespace] = None,
             ddp: bool = False) -> Path:
    """cifar10dvs/train.py's dict."""
    torch.save({"model": _prefixed(model.state_dict(), ddp),
                "optimizer": _optimizer_state(model),
                "lr_scheduler": {"t_initial": 96, "lr_min": 1e-5, "warmup_t": 10,
                                 "base_values": [1e-3], "noise_range_t": None},
                "epoch": 95, "args": args if args is not None else train_args(model.spec),
                "max_test_acc1": 80.9, "test_acc5_at_max_test_acc1": 98.7}, path)
    return path


def save_bare(model: OfficialSpikformer, path: Path, ddp: bool = False) -> Path:
    torch.save(_prefixed(model.state_dict(), ddp), path)
    return path


def event_counts(spec: Spec, batch: int, max_count: int, seed: int = 1) -> torch.Tensor:
    """[B, T, C, H, W] integer event counts 0..max_count (most small, some at the maximum)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, spec.time_steps, spec.in_channels, spec.img_size, spec.img_size)
    counts = torch.floor((max_count + 1) * torch.rand(shape, generator=g) ** 4)
    return counts * (torch.rand(shape, generator=g) < 0.5)
