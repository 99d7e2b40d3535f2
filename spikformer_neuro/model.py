"""Spikformer (Zhou et al., ICLR 2023): SPS stem, spiking self-attention blocks, linear head.

Tensor layout: time first. The SPS works on [T, B, C, H, W]; the transformer on tokens
[T, B, N, D]. Every Conv/Linear + BatchNorm runs on all time steps at once (T and B are
flattened); only the LIF loops over time. Module names are stable: the compiler frontend
walks them (``sps.stages[i].conv``, ``blocks[j].attn.q.linear`` ...).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import SpikformerConfig
from .neuron import MultiStepLIF


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _unflat(x: torch.Tensor, t: int) -> torch.Tensor:
    return x.reshape(t, -1, *x.shape[1:])


def to_time_major(cfg: SpikformerConfig, x: torch.Tensor, mean: torch.Tensor,
                  std: torch.Tensor) -> torch.Tensor:
    """Batch [B, C, H, W] (static) or [B, T, C, H, W] (events) -> normalised [T, B, C, H, W]
    (every model family takes its input this way)."""
    expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if cfg.event_input:
        if x.dim() != 5 or tuple(x.shape[1:]) != (cfg.time_steps,) + expected:
            raise ValueError(f"{cfg.name}: expected event input [B, {cfg.time_steps}, "
                             f"{', '.join(map(str, expected))}], got {list(x.shape)}")
        x = x.transpose(0, 1)
    else:
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{cfg.name}: expected image input [B, "
                             f"{', '.join(map(str, expected))}], got {list(x.shape)}")
        x = x.unsqueeze(0).expand(cfg.time_steps, *x.shape)
    return (x - mean) / std


def attach_input(model: nn.Module, cfg: SpikformerConfig) -> None:
    """``model.cfg`` and the input normalisation buffers ``input_mean``/``input_std`` [C, 1, 1]
    (not saved: the configuration holds them), as every model family keeps them."""
    model.cfg = cfg
    mean = cfg.input_mean or (0.0,) * cfg.in_channels
    std = cfg.input_std or (1.0,) * cfg.in_channels
    model.register_buffer("input_mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
    model.register_buffer("input_std", torch.tensor(std).view(-1, 1, 1), persistent=False)


class ConvBNLIF(nn.Module):
    """conv3x3 (no bias) -> BatchNorm2d -> LIF on [T, B, C, H, W]."""

    fake_quant = None  # set by spikformer_neuro.qat: folded, Loihi-grid conv + BN

    def __init__(self, c_in: int, c_out: int, cfg: SpikformerConfig):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.lif = MultiStepLIF(cfg.tau, cfg.v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, x = x.shape[0], _flat(x)
        y = self.bn(self.conv(x)) if self.fake_quant is None else self.fake_quant(x)
        return self.lif(_unflat(y, t))


class LinearBNLIF(nn.Module):
    """Linear -> BatchNorm1d (over features) -> LIF on tokens [T, B, N, D]."""

    fake_quant = None  # set by spikformer_neuro.qat: folded, Loihi-grid linear + BN

    def __init__(self, d_in: int, d_out: int, cfg: SpikformerConfig):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.lif = MultiStepLIF(cfg.tau, cfg.v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fake_quant is not None:
            return self.lif(self.fake_quant(x))
        y = self.linear(x)
        y = self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        return self.lif(y)


class SPS(nn.Module):
    """Spiking Patch Splitting: four ConvBNLIF stages with max-pools, plus the RPE conv."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        chans = (cfg.in_channels,) + cfg.stage_channels
        self.stages = nn.ModuleList(ConvBNLIF(chans[i], chans[i + 1], cfg) for i in range(4))
        self.pool_stages = tuple(cfg.pool_stages)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe = ConvBNLIF(cfg.embed_dim, cfg.embed_dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.pool_stages:
                x = _unflat(self.pool(_flat(x)), t)  # max over binary spikes
        x = x + self.rpe(x)  # relative position embedding, added to its input
        return x.flatten(3).transpose(2, 3).contiguous()  # [T, B, N, D]


class SSA(nn.Module):
    """Spiking self-attention: per head Q.K^T.V.s with binary Q, K, V; no softmax."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.scale = cfg.attn_scale
        self.q = LinearBNLIF(d, d, cfg)
        self.k = LinearBNLIF(d, d, cfg)
        self.v = LinearBNLIF(d, d, cfg)
        self.attn_lif = MultiStepLIF(cfg.tau, cfg.attn_v_threshold)
        self.proj = LinearBNLIF(d, d, cfg)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        t, b, n, d = x.shape
        return x.reshape(t, b, n, self.num_heads, d // self.num_heads).transpose(2, 3)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Q.K^T.V.s on [T, B, N, D] spike tensors; returns the pre-LIF input [T, B, N, D]."""
        qh, kh, vh = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        out = (qh @ kh.transpose(-2, -1)) @ vh * self.scale
        return out.transpose(2, 3).reshape(q.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn_lif(self.attention(self.q(x), self.k(x), self.v(x)))
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        hidden = cfg.embed_dim * cfg.mlp_ratio
        self.fc1 = LinearBNLIF(cfg.embed_dim, hidden, cfg)
        self.fc2 = LinearBNLIF(hidden, cfg.embed_dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    """x = x + SSA(x); x = x + MLP(x). The residual stream carries small integers."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = SSA(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    fake_quant_head = None  # set by spikformer_neuro.qat: the 8-bit integer head

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        attach_input(self, cfg)
        self.sps = SPS(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        return to_time_major(self.cfg, x, self.input_mean, self.input_std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token stream [T, B, N, D] after the last block."""
        x = self.sps(self.to_time_major(x))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.forward_features(x).mean(dim=(0, 2))
        return self.head(pooled) if self.fake_quant_head is None else self.fake_quant_head(pooled)


def build_model(cfg: SpikformerConfig) -> nn.Module:
    """The network of ``cfg.family``: a :class:`Spikformer` or a
    :class:`~spikformer_neuro.spike_driven.SpikeDrivenTransformer`."""
    if cfg.family == "spike-driven":
        from .spike_driven import SpikeDrivenTransformer  # imports this module
        return SpikeDrivenTransformer(cfg)
    return Spikformer(cfg)


def model_classes() -> tuple:
    """Every model class a checkpoint may hold."""
    from .spike_driven import SpikeDrivenTransformer
    return (Spikformer, SpikeDrivenTransformer)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
