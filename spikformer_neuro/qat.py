"""Quantization-aware fine-tuning for Loihi: train the network on the integer grid it will run on.

While enabled, every Conv/Linear + BatchNorm feeding a LIF computes with its BatchNorm folded
in (running statistics) and weights and bias rounded to the layer's Loihi grid
(``loihi_grid.layer_grid``: the same grid the compiler derives), with straight-through
gradients; the head uses its 8-bit integer weights. ``snap_to_grid`` then writes the rounded
values back into ordinary Conv/Linear/BatchNorm parameters and returns the grid as hints,
so the checkpoint stays a plain Spikformer whose folded weights lie on the grid and the
compiler reproduces them exactly.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from loihi_numerics.grid import WEIGHT_MANT_MAX, LayerGrid, bias_exponent, input_span, layer_grid
from .model import ConvBNLIF, LinearBNLIF, Spikformer


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class _FakeQuantLayer:
    """Replaces ``bn(conv(x))`` / ``bn(linear(x))`` of one layer by its Loihi-grid version."""

    def __init__(self, name: str, layer: nn.Module, x_max: float, input_levels: float = 1.0):
        self.name, self.layer = name, layer
        self.syn = layer.conv if isinstance(layer, ConvBNLIF) else layer.linear
        self.x_max, self.levels = float(x_max), float(input_levels)

    def folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        bn, w = self.layer.bn, self.syn.weight
        inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b0 = self.syn.bias if self.syn.bias is not None else torch.zeros_like(bn.running_mean)
        w_f = w * inv.reshape(-1, *([1] * (w.dim() - 1)))
        return w_f, (b0 - bn.running_mean) * inv + bn.bias

    def grid(self, w_f: torch.Tensor, b_f: torch.Tensor) -> LayerGrid:
        rows = w_f.detach().abs().reshape(w_f.shape[0], -1).double()
        lif = self.layer.lif
        return layer_grid(self.name, w_abs_max=float(rows.max()),
                          w_row_abs_sum_max=float(rows.sum(1).max()),
                          b_abs_max=float(b_f.detach().abs().max()), fan_in=rows.shape[1],
                          x_max=self.x_max, tau=lif.tau, v_threshold=lif.v_threshold,
                          input_levels=self.levels)

    def quantized(self) -> Tuple[torch.Tensor, torch.Tensor, LayerGrid]:
        """Folded weight and bias rounded to the grid (float values, straight-through)."""
        w_f, b_f = self.folded()
        grid = self.grid(w_f, b_f)
        tau = self.layer.lif.tau
        w_step, b_step = grid.weight_step(tau, self.levels), grid.bias_step(tau)
        w_q = _ste_round(w_f / w_step) * w_step
        with torch.no_grad():  # per-neuron bias exponent, as the compiler splits it
            exp = torch.tensor([bias_exponent(abs(v)) for v in torch.round(b_f / b_step).tolist()],
                               dtype=b_f.dtype, device=b_f.device)
        unit = b_step * torch.pow(2.0, exp)
        return w_q, _ste_round(b_f / unit) * unit, grid

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w_q, b_q, _ = self.quantized()
        if isinstance(self.layer, ConvBNLIF):
            conv = self.syn
            return F.conv2d(x, w_q, b_q, conv.stride, conv.padding, conv.dilation, conv.groups)
        return F.linear(x, w_q, b_q)

    @torch.no_grad()
    def snap(self) -> int:
        """Write the grid values back into the parameters; return the layer's vth."""
        w_q, b_q, grid = self.quantized()
        bn = self.layer.bn
        inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if (inv == 0).any():
            raise ValueError(f"layer '{self.name}': a BatchNorm scale is 0; cannot snap")
        b0 = self.syn.bias if self.syn.bias is not None else torch.zeros_like(bn.running_mean)
        self.syn.weight.copy_(w_q / inv.reshape(-1, *([1] * (w_q.dim() - 1))))
        bn.bias.copy_(b_q - (b0 - bn.running_mean) * inv)
        return grid.vth


class _FakeQuantHead:
    """The classification head with 8-bit integer weights and its bias on the T*N grid."""

    def __init__(self, head: nn.Linear, steps_times_tokens: int):
        self.head, self.tn = head, steps_times_tokens

    def quantized(self) -> Tuple[torch.Tensor, torch.Tensor]:
        w, b = self.head.weight, self.head.bias
        s_h = WEIGHT_MANT_MAX / w.detach().abs().max().clamp_min(1e-30)
        return _ste_round(w * s_h) / s_h, _ste_round(b * s_h * self.tn) / (s_h * self.tn)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w_q, b_q = self.quantized()
        return F.linear(x, w_q, b_q)

    @torch.no_grad()
    def snap(self) -> None:
        w_q, b_q = self.quantized()
        self.head.weight.copy_(w_q)
        self.head.bias.copy_(b_q)


def _layers(model: Spikformer, input_levels: float) -> List[_FakeQuantLayer]:
    """Every LIF layer with the largest integer value its input can carry (x_max)."""
    cfg = model.cfg
    span = input_span(model.input_mean.flatten().tolist(), model.input_std.flatten().tolist())
    if cfg.event_input:   # binary frames (1), or integer counts up to event_max_count
        first_x_max, first_levels = float(cfg.event_max_count or 1), 1.0
    else:
        first_x_max, first_levels = math.ceil(input_levels * span), input_levels
    layers = [_FakeQuantLayer("sps.stages.0.lif", model.sps.stages[0], first_x_max,
                              first_levels)]
    layers += [_FakeQuantLayer(f"sps.stages.{i}.lif", model.sps.stages[i], 1.0) for i in (1, 2, 3)]
    layers.append(_FakeQuantLayer("sps.rpe.lif", model.sps.rpe, 1.0))
    stream = 2.0  # residual stream after the SPS: pool/LIF spikes + RPE spikes
    for j, block in enumerate(model.blocks):
        p = f"blocks.{j}"
        for role in ("q", "k", "v"):
            layers.append(_FakeQuantLayer(f"{p}.attn.{role}.lif", getattr(block.attn, role), stream))
        layers.append(_FakeQuantLayer(f"{p}.attn.proj.lif", block.attn.proj, 1.0))
        stream += 1
        layers.append(_FakeQuantLayer(f"{p}.mlp.fc1.lif", block.mlp.fc1, stream))
        layers.append(_FakeQuantLayer(f"{p}.mlp.fc2.lif", block.mlp.fc2, 1.0))
        stream += 1
    return layers


def _spike_driven(model):
    """The spike-driven family's QAT module when ``model`` is one (else None)."""
    from . import qat_spike_driven as sd   # it builds on this module
    return sd if isinstance(model, sd.SpikeDrivenTransformer) else None


def enable_qat(model: Spikformer, input_levels: Optional[int]) -> None:
    """Switch ``model`` to Loihi-grid arithmetic (``input_levels``: see detect_input_levels;
    None means the compiler's default, the full 8-bit range). A Spike-driven Transformer
    trains on its own grids (spikformer_neuro/qat_spike_driven.py)."""
    if _spike_driven(model):
        return _spike_driven(model).enable_qat(model, input_levels)
    cfg = model.cfg
    if input_levels is None:
        span = input_span(model.input_mean.flatten().tolist(), model.input_std.flatten().tolist())
        input_levels = 255 / span
    for layer in _layers(model, float(input_levels)):
        layer.layer.fake_quant = layer
    model.fake_quant_head = _FakeQuantHead(model.head, cfg.time_steps * cfg.num_tokens)
    model.qat_input_levels = input_levels


def disable_qat(model: Spikformer) -> None:
    if _spike_driven(model):
        return _spike_driven(model).disable_qat(model)
    for m in model.modules():
        if isinstance(m, (ConvBNLIF, LinearBNLIF)):
            m.fake_quant = None
    model.fake_quant_head = None


def snap_to_grid(model: Spikformer) -> Dict:
    """Write the QAT model's grid values into its parameters; return the compiler hints.

    Afterwards the plain model (QAT disabled) computes, up to float rounding, what the QAT
    model computed, and its folded weights lie on the grids recorded in the hints.
    """
    if _spike_driven(model):
        return _spike_driven(model).snap_to_grid(model)
    vth = {}
    for m in model.modules():
        if isinstance(m, (ConvBNLIF, LinearBNLIF)) and m.fake_quant is not None:
            vth[m.fake_quant.name] = m.fake_quant.snap()
    if model.fake_quant_head is not None:
        model.fake_quant_head.snap()
    if not vth:
        raise ValueError("snap_to_grid: QAT is not enabled on this model")
    levels = model.qat_input_levels
    return {"method": "qat", "vth": vth,
            "input_levels": int(levels) if float(levels).is_integer() else None}
