"""Random networks that actually spike, for tests and random-weight benchmarks.

PyTorch's default initialisation with identity BatchNorm statistics leaves most Spikformer
layers silent, so nothing downstream would be exercised. These helpers widen the stem and draw
eval-mode BatchNorm statistics such that every LIF population fires sometimes, not always.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import SpikformerConfig
from .model import Spikformer, build_model
from .zoo import get_config


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial eval-mode statistics and affine parameters for every BatchNorm."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.25)
                m.weight.copy_(torch.rand(c, generator=gen) * 2.0 + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) * 2.0)
    return model


def firing_model(name: str, seed: int = 0, bn_seed: Optional[int] = None,
                 **overrides) -> Spikformer:
    """Zoo configuration ``name`` (with ``overrides``), random weights, eval mode, spiking."""
    cfg = get_config(name)
    if overrides:
        cfg = cfg.replace(**overrides)
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # the stem sees only 9 * C_in inputs: widen its default init
        model.sps.stages[0].conv.weight.mul_(4.0)
    return randomize_batchnorm(model, seed + 100 if bn_seed is None else bn_seed).eval()


def densely_firing_model(cfg: SpikformerConfig, seed: int = 0) -> Spikformer:
    """Random weights and BN statistics drawn so that every LIF fires often (rates ~0.4-0.7 on
    CIFAR 4-384): the recipe of the Lava backend tests and benchmarks/lava_speed.py."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.2, 1.0)
                mod.weight.uniform_(1.0, 3.0)
                mod.bias.uniform_(0.5, 2.5)
    return model


def random_input(cfg: SpikformerConfig, batch: int, seed: int = 1) -> torch.Tensor:
    """Uniform images in [0, 1] (binary event frames at rate 0.3 for event configurations;
    for event counts, counts 0..event_max_count at rate 0.3 per pixel and bin, the larger
    ones rarer): the inputs of the Lava tests and benchmarks, so both see the same draws."""
    g = torch.Generator().manual_seed(seed)
    if cfg.event_input:
        shape = (batch, cfg.time_steps, cfg.in_channels, cfg.img_size, cfg.img_size)
        events = (torch.rand(shape, generator=g) < 0.3).float()
        if cfg.event_max_count is None:
            return events
        # geometric-like counts: 1 + floor(max * u^3) keeps most counts small, some at max
        extra = torch.floor(cfg.event_max_count * torch.rand(shape, generator=g) ** 3)
        return events * torch.clamp(1 + extra, max=cfg.event_max_count)
    return torch.rand((batch, cfg.in_channels, cfg.img_size, cfg.img_size), generator=g)
