"""Quantization-aware training of the spike-driven family on the grids the compiler derives.

What the compiler does with a Spike-driven Transformer (compiler/passes/distribute_membrane.py,
compiler/passes/quantize.py) and what this module trains on, layer for layer:

- conv-BN-LIF layers with one conv (SPS stages 0..2, Q, K, V, the MLP's hidden layer): the
  Spikformer's per-layer grid (:class:`spikformer_neuro.qat._FakeQuantLayer` arithmetic);
- the membrane stream's readers (``sps.rpe_lif``, every ``shortcut_lif`` and ``fc1_lif``):
  each integrates its own integer sum of the stream's terms (the convs of the embedding, the
  RPE and every branch). Their weights are shared by all readers, so all readers share ONE
  grid (the tightest of their constraints: ``stream_grid``); each term's weights and bias are
  rounded once (biases to whole steps: every reader's sum stays on the grid), and each
  reader's sum passes the compiler's 13-bit mantissa / 3-bit exponent rounding;
- ``head_lif`` reads the token mean of the stream: each term's conv composed with the mean
  (a kernel covering the map) on the head's own grid, rounded along the positions as the
  compiler rounds it (``loihi_numerics.grid.round_along_positions``).

``snap_to_grid`` writes the rounded weights of single layers and stream terms back into the
checkpoint (so the compiler, given the hints, re-derives exactly these integers) and returns
the hints: one threshold per LIF. The head's composed kernels are re-composed by the compiler
from the snapped weights in float64 (here in float64 from the float32 weights): a rounding
can differ only where a prefix sum of composed weights lies within float error of a half step.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from loihi_numerics.grid import (LayerGrid, bias_exponent, input_span, layer_grid,
                                 round_along_positions)
from .qat import _FakeQuantHead, _FakeQuantLayer, _ste_round
from .spike_driven import ConvBN, SpikeDrivenTransformer


def _folded(conv_bn: ConvBN) -> Tuple[torch.Tensor, torch.Tensor]:
    bn, conv = conv_bn.bn, conv_bn.conv
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * inv.reshape(-1, 1, 1, 1), (b0 - bn.running_mean) * inv + bn.bias


def _rows(w: torch.Tensor) -> torch.Tensor:
    return w.detach().abs().reshape(w.shape[0], -1).double()


def _bias_on_grid(b: torch.Tensor, step: float) -> torch.Tensor:
    """The compiler's bias: round(b / step) as a 13-bit mantissa << 3-bit exponent."""
    with torch.no_grad():
        exp = torch.tensor([bias_exponent(abs(v)) for v in torch.round(b / step).tolist()],
                           dtype=b.dtype, device=b.device)
    unit = step * torch.pow(2.0, exp)
    return _ste_round(b / unit) * unit


def _joint_grid(name: str, weights: List[torch.Tensor], bias: torch.Tensor, lif,
                rounding_slack: float = 0.5) -> LayerGrid:
    rows = torch.cat([_rows(w) for w in weights], dim=1)
    return layer_grid(name, w_abs_max=float(rows.max()), w_row_abs_sum_max=float(rows.sum(1).max()),
                      b_abs_max=float(bias.detach().abs().max()), fan_in=rows.shape[1],
                      x_max=1.0, tau=lif.tau, v_threshold=lif.v_threshold, input_levels=1.0,
                      rounding_slack=rounding_slack)


def _head_grid(kernels: List[torch.Tensor], bias: torch.Tensor, lif) -> LayerGrid:
    """The head's grid: its token-mean kernels are rounded along their positions (one step
    of slack per weight, as compiler.passes.quantize.WeightRounding counts it)."""
    return _joint_grid("head_lif", kernels, bias, lif, rounding_slack=1.0)


def _round_head_kernel(k: torch.Tensor, k64: torch.Tensor, step: float) -> torch.Tensor:
    """``k`` on the head's grid as the compiler rounds it: along the positions, from the
    float64 composition ``k64`` (the compiler's), with a straight-through gradient."""
    scaled = (k64 / step).cpu().numpy()
    ints = round_along_positions(scaled.reshape(*scaled.shape[:2], -1)).reshape(scaled.shape)
    k_q = torch.from_numpy(ints * step).to(dtype=k.dtype, device=k.device)
    return k + (k_q - k).detach()


class _FakeQuantConvBN:
    """A ConvBN that feeds one LIF: conv + BN folded onto that LIF's grid (one term)."""

    def __init__(self, name: str, conv_bn: ConvBN, lif):
        self.name, self.conv_bn, self.lif = name, conv_bn, lif

    def quantized(self):
        w_f, b_f = _folded(self.conv_bn)
        grid = _joint_grid(self.name, [w_f], b_f, self.lif)
        step = grid.weight_step(self.lif.tau)
        return _ste_round(w_f / step) * step, _bias_on_grid(b_f, grid.bias_step(self.lif.tau)), grid

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        w_q, b_q, _ = self.quantized()
        conv = self.conv_bn.conv
        t = x.shape[0]
        y = F.conv2d(x.flatten(0, 1), w_q, b_q, conv.stride, conv.padding)
        return y.reshape(t, -1, *y.shape[1:])

    @torch.no_grad()
    def snap(self) -> int:
        w_q, b_q, grid = self.quantized()
        _write_back(self.conv_bn, w_q, b_q)
        return grid.vth


@torch.no_grad()
def _write_back(conv_bn: ConvBN, w_q: torch.Tensor, b_q: torch.Tensor) -> None:
    """Parameters whose fold is (w_q, b_q)."""
    bn, conv = conv_bn.bn, conv_bn.conv
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    if (inv == 0).any():
        raise ValueError("a BatchNorm scale is 0; cannot snap its conv to the grid")
    conv.weight.copy_(w_q / inv.reshape(-1, 1, 1, 1))
    b0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    bn.bias.copy_(b_q - (b0 - bn.running_mean) * inv)


def token_mean_kernel(w: torch.Tensor, conv: torch.nn.Conv2d, in_hw: Tuple[int, int],
                      out_hw: Tuple[int, int]) -> torch.Tensor:
    """The full-map kernel of ``mean over tokens (conv(x))`` (the compiler's
    ``distribute_membrane.token_mean_weight``, in torch so that gradients pass): the kernel
    added at every output position's window, one transposed convolution of a map of ones."""
    d, c, kh, kw = w.shape
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    (h, wd), (ho, wo) = in_hw, out_hw
    windows = F.conv_transpose2d(w.new_ones(1, 1, ho, wo), w.reshape(1, d * c, kh, kw),
                                 stride=(sh, sw))[0]
    canvas = F.pad(windows, (0, max(0, wd + 2 * pw - windows.shape[-1]),
                             0, max(0, h + 2 * ph - windows.shape[-2])))
    return canvas[:, ph:ph + h, pw:pw + wd].reshape(d, c, h, wd) / (ho * wo)


class _FakeQuantStream:
    """Every reader's input from the stream's terms (module docstring). ``readers`` maps a
    reader's name to the number of terms it reads (a prefix of the stream)."""

    def __init__(self, model: SpikeDrivenTransformer, readers: Dict[str, int]):
        self.model, self.readers = model, readers
        self.terms: List[ConvBN] = [model.sps.proj, model.sps.rpe]
        for block in model.blocks:
            self.terms += [block.attn.proj, block.mlp.fc2]
        self.lif = model.sps.rpe_lif   # every reader has the paper's tau and V_th

    def stream_grid(self, folded) -> LayerGrid:
        """One grid for all readers: the largest weight, the largest reader's row sums and
        bias sum (so that each reader's own bound holds)."""
        rows = [_rows(w) for w, _ in folded]
        worst_rows = max(float(torch.cat(rows[:n], 1).sum(1).max()) for n in self.readers.values())
        worst_bias = max(float(sum(b for _, b in folded[:n]).detach().abs().max())
                         for n in self.readers.values())
        fan_in = max(sum(r.shape[1] for r in rows[:n]) for n in self.readers.values())
        return layer_grid("membrane stream", w_abs_max=float(max(float(r.max()) for r in rows)),
                          w_row_abs_sum_max=worst_rows, b_abs_max=worst_bias, fan_in=fan_in,
                          x_max=1.0, tau=self.lif.tau, v_threshold=self.lif.v_threshold,
                          input_levels=1.0)

    def quantized_terms(self):
        """Each term's folded weight and bias on the stream grid (biases in whole steps, so
        that every reader's sum of them is an integer the compiler keeps as it is)."""
        folded = [_folded(m) for m in self.terms]
        grid = self.stream_grid(folded)
        step, b_step = grid.weight_step(self.lif.tau), grid.bias_step(self.lif.tau)
        return [(_ste_round(w / step) * step, _ste_round(b / b_step) * b_step)
                for w, b in folded], grid

    def __call__(self, name: str, terms: list, pooled: bool) -> torch.Tensor:
        quantized, grid = self.quantized_terms()
        if pooled:
            return self._head(terms, quantized)
        n = self.readers[name]
        if len(terms) != n:
            raise RuntimeError(f"QAT: reader {name} sees {len(terms)} terms, expected {n}")
        acc = None
        for (module, spikes), (w_q, _) in zip(terms, quantized):
            t = spikes.shape[0]
            y = F.conv2d(spikes.flatten(0, 1), w_q, None, module.conv.stride, module.conv.padding)
            y = y.reshape(t, -1, *y.shape[1:])
            acc = y if acc is None else acc + y
        bias = _bias_on_grid(sum(b for _, b in quantized[:n]), grid.bias_step(self.lif.tau))
        return acc + bias.reshape(1, 1, -1, 1, 1)

    def _head(self, terms: list, quantized) -> torch.Tensor:
        kernels, exact, lif = [], [], self.model.head_lif
        for (module, spikes), (w_q, _) in zip(terms, quantized):
            side = tuple(spikes.shape[-2:])
            kernels.append(token_mean_kernel(w_q, module.conv, side, side))
            with torch.no_grad():   # the compiler's float64 composition picks the integers
                exact.append(token_mean_kernel(w_q.double(), module.conv, side, side))
        bias = sum(b for _, b in quantized[:len(terms)])
        grid = _head_grid(exact, bias, lif)
        step = grid.weight_step(lif.tau)
        acc = None
        for (module, spikes), k, k64 in zip(terms, kernels, exact):
            t = spikes.shape[0]
            y = F.conv2d(spikes.flatten(0, 1), _round_head_kernel(k, k64, step))
            y = y.reshape(t, -1, *y.shape[1:])
            acc = y if acc is None else acc + y
        return acc + _bias_on_grid(bias, grid.bias_step(lif.tau)).reshape(1, 1, -1, 1, 1)

    @torch.no_grad()
    def snap(self) -> Dict[str, int]:
        quantized, grid = self.quantized_terms()
        for module, (w_q, b_q) in zip(self.terms, quantized):
            _write_back(module, w_q, b_q)
        return {name: grid.vth for name in self.readers}

    @torch.no_grad()
    def head_vth(self, x_shape_hw: Tuple[int, int]) -> int:
        quantized, _ = self.quantized_terms()
        kernels = [token_mean_kernel(w.double(), m.conv, x_shape_hw, x_shape_hw)
                   for m, (w, _) in zip(self.terms, quantized)]
        bias = sum(b for _, b in quantized)
        return _head_grid(kernels, bias, self.model.head_lif).vth


def _readers(model: SpikeDrivenTransformer) -> Dict[str, int]:
    readers = {"sps.rpe_lif": 1}
    for j in range(len(model.blocks)):
        readers[f"blocks.{j}.attn.shortcut_lif"] = 2 + 2 * j
        readers[f"blocks.{j}.mlp.fc1_lif"] = 3 + 2 * j
    return readers


def enable_qat(model: SpikeDrivenTransformer, input_levels: Optional[float]) -> None:
    cfg = model.cfg
    if 3 in cfg.pool_stages:
        raise ValueError(f"{cfg.name}: QAT needs the membrane stream's terms, which a max-pool "
                         "after SPS stage 3 destroys (the compiler refuses that model too)")
    span = input_span(model.input_mean.flatten().tolist(), model.input_std.flatten().tolist())
    if input_levels is None:
        input_levels = 255 / span
    if cfg.event_input:
        first_x_max, first_levels = float(cfg.event_max_count or 1), 1.0
    else:
        first_x_max, first_levels = math.ceil(input_levels * span), float(input_levels)
    stages = model.sps.stages
    stages[0].fake_quant = _FakeQuantLayer("sps.stages.0.lif", stages[0], first_x_max,
                                           first_levels)
    for i in (1, 2):
        stages[i].fake_quant = _FakeQuantLayer(f"sps.stages.{i}.lif", stages[i], 1.0)
    for j, block in enumerate(model.blocks):
        attn, mlp = block.attn, block.mlp
        for role in ("q", "k", "v"):
            getattr(attn, role).fake_quant = _FakeQuantConvBN(
                f"blocks.{j}.attn.{role}_lif", getattr(attn, role), getattr(attn, f"{role}_lif"))
        mlp.fc1.fake_quant = _FakeQuantConvBN(f"blocks.{j}.mlp.fc2_lif", mlp.fc1, mlp.fc2_lif)
    model.fake_quant_stream = _FakeQuantStream(model, _readers(model))
    model.fake_quant_head = _FakeQuantHead(model.head, cfg.time_steps)
    model.qat_input_levels = input_levels


def disable_qat(model: SpikeDrivenTransformer) -> None:
    for m in model.modules():
        if hasattr(m, "fake_quant"):
            m.fake_quant = None
    model.fake_quant_stream = None
    model.fake_quant_head = None


def snap_to_grid(model: SpikeDrivenTransformer) -> Dict:
    if model.fake_quant_stream is None:
        raise ValueError("snap_to_grid: QAT is not enabled on this model")
    stream = model.fake_quant_stream
    side = model.cfg.token_grid
    vth = {"head_lif": stream.head_vth((side, side))}   # before the stream's weights move
    vth.update(stream.snap())
    for m in model.modules():
        fq = getattr(m, "fake_quant", None)
        if fq is not None:
            vth[fq.name] = fq.snap()
    model.fake_quant_head.snap()
    levels = model.qat_input_levels
    return {"method": "qat", "vth": vth,
            "input_levels": int(levels) if float(levels).is_integer() else None}
