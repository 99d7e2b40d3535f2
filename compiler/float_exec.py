"""Reference executor for FLOAT-level graphs: the float contract every later stage is held to.

``run_float(graph, x)`` runs a float-level :class:`~compiler.ir.Graph` on a batch exactly as
the Spikformer takes it and returns the logits plus, on request, every node's output.

Input batch
    ``[B, C, H, W]`` static images, repeated over ``graph.time_steps`` steps, or
    ``[B, T, C, H, W]`` event frames when the input node's ``attrs["encoding"]`` is
    ``"spikes"`` (binary) or ``"counts"`` (event counts)
    (checked by :func:`compiler.encoding.check_batch`, the message every executor gives);
    ``[B, K]`` / ``[B, T, K]`` for a network whose input is a vector (``compiler.encoding``).

Recorded outputs
    ``FloatResult.outputs[name]`` is ``[T, B, *node.shape]`` (time first, map layout: a token
    grid node is ``[T, B, D, H, W]``). Nodes after ``token_time_mean`` have no time dimension:
    ``[B, *node.shape]``. ``FloatResult.logits`` is the output node's value, ``[B, K]``.

Semantics per op (per time step unless stated; ``[B, C, H, W]`` maps, channels = dim 1)
    ``input``            ``(x - mean) / std`` with per-channel ``attrs["mean"]``/``["std"]``
                         (absent: 0 / 1).
    ``conv2d``           ``torch.nn.functional.conv2d`` with ``stride``/``padding``/``groups``
                         and the optional ``bias``. An unpadded, ungrouped kernel covering the
                         whole (H, W) map (NIR's Flatten + Affine) runs as ``F.linear`` on the
                         row-major flattening, as the torch network that wrote it does.
    ``batchnorm``        eval-mode BN per channel: ``(x - mean) / sqrt(var + eps) * gamma + beta``.
    ``lif``              a LIF over time from V = 0 with input gain ``r`` (attr, default 1)
                         and spike rule ``spike_if`` (">=" default, or ">"): hard reset to 0.
                         r = 1: ``H = V + (X - V) / tau``, the paper's operation order
                         (:func:`spikformer_neuro.neuron.lif_multistep` when ">=").
                         r != 1: ``H = decay * V + gain * X`` with ``decay = 1 - 1/tau`` and
                         ``gain = r / tau`` rounded once to the compute dtype: snntorch's
                         ``beta * mem + input`` when r = tau (gain exactly 1).
    ``maxpool2d``        ``max_pool2d(kernel, stride, padding)`` (padding never wins the max).
    ``sumpool2d``        sum over each ``kernel`` window, with ``stride`` and ZERO padding.
    ``threshold``        1.0 where ``x >= attrs["threshold"]``, else 0.0.
    ``spiking_attention`` inputs ``(q, k, v)``, maps ``[D, H, W]`` read as tokens
                         ``N = H * W`` (row-major) x ``D`` features; per head ``h`` of
                         ``D / num_heads`` consecutive channels:
                         ``out_h = (Q_h K_h^T) V_h * scale``, written back to map layout.
                         Equal to :meth:`spikformer_neuro.model.SSA.attention`.
    ``sum``              the sum of its inputs (in input order).
    ``token_mean``       mean over H, W per step: ``[T, B, D, H, W] -> [T, B, D, 1, 1]`` on the
                         contiguous map, as ``SpikeDrivenTransformer.forward`` pools.
    ``token_time_mean``  mean over time and over H, W: ``[T, B, D, H, W] -> [B, D]``.
    ``affine``           ``x @ weight.T + bias`` (bias optional).
    ``output``           identity; its value is the logits.
    Any other op with several inputs first sums them (NIR's convention:
    :meth:`FloatExecutor.fan_in`). Quantized-level ops (``loihi_lif``, ``token_time_sum``)
    have no handler here: they raise :class:`IRError` (the reference executor runs them).

Structure
    :class:`FloatExecutor` is a :class:`compiler.interpreter.Interpreter` with one ``op_<name>``
    handler per FLOAT-level op of the registry (``compiler.ops.ops_at(FLOAT)``); the driver
    loop, the recording and the freeing of dead values are the interpreter's.

Bit-identity with the PyTorch model
    In float32 (and float64 against ``model.double()``) the executor reproduces the model's
    spikes and logits bit for bit, because it issues the same kernels on the same layouts:
    ``conv2d`` runs on the ``[T*B, C, H, W]`` flattening the model uses; a 1x1, stride-1,
    unpadded, ungrouped ``conv2d`` (what the frontend makes of a token-wise ``nn.Linear``)
    runs as ``F.linear`` on contiguous tokens ``[T, B, N, D]`` - oneDNN's 1x1 convolution
    and the BLAS GEMM behind ``nn.Linear`` sum in different orders and differ in the last
    bits; a ``batchnorm`` runs in the layout its input was computed in (``[T*B*N, D]`` after
    a token-wise linear, like ``BatchNorm1d``); ``token_time_mean`` is ``mean(dim=(0, 2))``
    over contiguous tokens as in ``Spikformer.forward``. Elementwise ops (LIF, sums,
    thresholds, normalisation) round identically in any layout. (On the CPU; see
    :func:`run_float` for CUDA.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from spikformer_neuro.neuron import lif_multistep

from .encoding import SEQUENCE_ENCODINGS, as_maps, check_batch, normalisation
from .exact.device import DeviceLike, exact_float_math, resolve_device
from .interpreter import Interpreter, where
from .ir import Graph, IRError, Node, lif_attrs
from .layout import map_to_tokens, merge_heads, pair, split_heads, tokens_to_map
from .ops import attr

__all__ = ["FloatResult", "FloatExecutor", "run_float"]


@dataclass
class FloatResult:
    logits: torch.Tensor                                   # [B, K]
    outputs: Dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Value:
    """A node's value. ``layout``: "map" ([T, B, C, H, W] or [B, C, H, W] when not timed),
    "tokens" ([T, B, N, D], N = H*W row-major) or "flat" ([T, B, *shape] / [B, *shape])."""

    data: torch.Tensor
    layout: str
    timed: bool
    shape: Tuple[int, ...]

    def as_map(self) -> torch.Tensor:
        if self.layout != "tokens":
            return self.data
        return tokens_to_map(self.data, self.shape)

    def as_tokens(self, where: str) -> torch.Tensor:
        if self.layout == "tokens":
            return self.data.contiguous()
        if len(self.shape) != 3:
            raise IRError(f"{where}: needs a [D, H, W] token grid, got shape {self.shape}")
        return map_to_tokens(self.data).contiguous()


class FloatExecutor(Interpreter):
    """Runs a float-level graph in torch (``dtype``: float32 or float64, on ``device``); values
    are :class:`_Value`. The source passed to :meth:`run` is the batch as the model takes it."""

    name = "float executor"

    def __init__(self, graph: Graph, dtype: torch.dtype = torch.float32,
                 device: torch.device = torch.device("cpu")):
        super().__init__(graph)
        self.dtype = dtype
        self.device = device
        self.batch: Optional[int] = None

    def param(self, node: Node, key: str) -> Optional[torch.Tensor]:
        arr = node.params.get(key)
        if arr is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.dtype).to(self.device)

    # -- the interpreter's hooks ------------------------------------------------------------
    def unsupported(self, node: Node) -> IRError:
        return IRError(f"{where(node)}: not a float-level op; the float executor runs float "
                       "graphs (quantized graphs need the reference executor, "
                       "compiler.reference.run_reference)")

    def fan_in(self, node: Node, inputs: List[_Value]) -> _Value:
        """Several inputs are summed in input order: in token layout when all are tokens,
        else in map layout (``flat`` when the first input is)."""
        if len(inputs) == 1:
            return inputs[0]
        first = inputs[0]
        for other in inputs[1:]:
            if other.shape != first.shape or other.timed != first.timed:
                raise IRError(f"{where(node)}: cannot sum inputs of shapes "
                              f"{[x.shape for x in inputs]}")
        if all(x.layout == "tokens" for x in inputs):
            acc = inputs[0].data
            for x in inputs[1:]:
                acc = acc + x.data
            return _Value(acc, "tokens", first.timed, first.shape)
        acc = inputs[0].as_map()
        for x in inputs[1:]:
            acc = acc + x.as_map()
        return _Value(acc, "flat" if first.layout == "flat" else "map", first.timed, first.shape)

    def recorded(self, node: Node, value: _Value) -> torch.Tensor:
        return value.as_map()

    def call(self, node: Node, source: Any = None) -> _Value:
        value = super().call(node, source)
        self.check_shape(node, value)
        return value

    def check_shape(self, node: Node, val: _Value) -> None:
        got = tuple(val.as_map().shape) if val.layout == "tokens" else tuple(val.data.shape)
        t = val.data.shape[0] if val.timed else None
        want = ((t,) if val.timed else ()) + (self.batch,) + tuple(node.shape)
        if got != want:
            raise IRError(f"{where(node)}: computes a value of shape {list(got)}, but the graph "
                          f"says {list(node.shape)} per sample (full {list(want)})")

    # -- ops --------------------------------------------------------------------------------
    def op_input(self, node: Node, x: torch.Tensor) -> _Value:
        enc = check_batch(self.graph, tuple(x.shape))
        if enc not in (*SEQUENCE_ENCODINGS, "analog"):
            raise IRError(f"{where(node)}: encoding {enc!r} belongs to quantized graphs (the "
                          "reference executor runs them); a float graph's input is 'analog', "
                          "'spikes' or 'counts'")
        self.batch = int(x.shape[0])
        x = as_maps(self.graph, x)   # a vector batch [B, K] is the map [B, K, 1, 1]
        if enc in SEQUENCE_ENCODINGS:
            x = x.transpose(0, 1)
        else:
            x = x.unsqueeze(0).expand(self.graph.time_steps, *x.shape)
        x = x.to(self.dtype).to(self.device)
        stats = normalisation(node)
        if stats is not None:   # in the compute dtype, as the model normalises
            mean, std = (torch.from_numpy(s).to(self.dtype).to(self.device) for s in stats)
            x = (x - mean) / std
        return _Value(x, "map", True, tuple(node.shape))

    def op_conv2d(self, node: Node, v: _Value) -> _Value:
        here = where(node)
        if len(v.shape) != 3:
            raise IRError(f"{here}: input must be a [C, H, W] map, got shape {v.shape}")
        w = self.param(node, "weight")
        b = self.param(node, "bias")
        stride = pair(attr(node, "stride"), here, "stride")
        padding = pair(attr(node, "padding"), here, "padding")
        groups = int(attr(node, "groups"))
        if w.dim() != 4:
            raise IRError(f"{here}: weight must be [out, in/groups, kh, kw], got {list(w.shape)}")
        if w.shape[1] * groups != v.shape[0]:
            raise IRError(f"{here}: weight {list(w.shape)} with groups={groups} does not take "
                          f"{v.shape[0]} input channels")
        if tuple(w.shape[2:]) == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1:
            # Token-wise linear, computed as the model's nn.Linear computes it.
            y = F.linear(v.as_tokens(here), w[:, :, 0, 0].contiguous(), b)
            return _Value(y, "tokens", v.timed, tuple(node.shape))
        x = v.as_map()
        lead = x.shape[:-3]
        if tuple(w.shape[2:]) == tuple(v.shape[1:]) and padding == (0, 0) and groups == 1:
            # A kernel covering the whole map is Flatten + Linear (how a NIR graph says it):
            # computed as nn.Linear on the row-major flattening, like the network that wrote it.
            y = F.linear(x.reshape(*lead, -1), w.reshape(w.shape[0], -1), b)
            return _Value(y.reshape(*lead, w.shape[0], 1, 1), "map", v.timed, tuple(node.shape))
        y = F.conv2d(x.reshape(-1, *x.shape[-3:]).contiguous(), w, b, stride, padding, 1, groups)
        return _Value(y.reshape(*lead, *y.shape[1:]), "map", v.timed, tuple(node.shape))

    def op_batchnorm(self, node: Node, v: _Value) -> _Value:
        c = v.shape[0]
        p = {k: self.param(node, k) for k in ("gamma", "beta", "mean", "var")}
        for k, t in p.items():
            if t.shape != (c,):
                raise IRError(f"{where(node)}: parameter '{k}' has shape {list(t.shape)}, "
                              f"expected [{c}] (one per channel)")
        eps = float(attr(node, "eps"))

        def bn(x2: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(x2, p["mean"], p["var"], p["gamma"], p["beta"], False, 0.0, eps)

        x = v.data
        if v.layout == "tokens":   # BatchNorm1d over [T*B*N, D], as LinearBNLIF runs it
            y = bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        else:                      # channels at dim 1 of [T*B, C, ...]
            nd = len(v.shape)
            lead = x.shape[:-nd]
            y = bn(x.reshape(-1, *x.shape[-nd:])).reshape(*lead, *x.shape[-nd:])
        return _Value(y, v.layout, v.timed, tuple(node.shape))

    def op_lif(self, node: Node, v: _Value) -> _Value:
        if not v.timed:
            raise IRError(f"{where(node)}: a LIF needs a per-time-step input (it comes after "
                          "token_time_mean)")
        tau, theta, r, rule = lif_attrs(node)
        if r == 1.0 and rule == ">=":  # the paper's LIF: the model's own kernel
            s = lif_multistep(v.data, tau, theta)
        else:
            s = self._lif_general(v.data, tau, theta, r, rule)
        return _Value(s, v.layout, True, tuple(node.shape))

    def _lif_general(self, x: torch.Tensor, tau: float, theta: float, r: float,
                     rule: str) -> torch.Tensor:
        """The generalised LIF (see the module docstring), one step at a time."""
        decay = torch.tensor(1.0 - 1.0 / tau, dtype=self.dtype, device=self.device)
        gain = torch.tensor(r / tau, dtype=self.dtype, device=self.device)
        fire = torch.gt if rule == ">" else torch.ge
        v = torch.zeros_like(x[0])
        spikes = torch.empty_like(x)
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / tau if r == 1.0 else decay * v + gain * x[t]
            s = fire(h, theta).to(x.dtype)
            spikes[t] = s
            v = h * (1.0 - s)
        return spikes

    def _pool(self, node: Node, v: _Value, fn) -> _Value:
        here = where(node)
        if len(v.shape) != 3:
            raise IRError(f"{here}: input must be a [C, H, W] map, got shape {v.shape}")
        k = pair(attr(node, "kernel"), here, "kernel")
        s = pair(attr(node, "stride"), here, "stride")
        p = pair(attr(node, "padding"), here, "padding")
        x = v.as_map()
        lead = x.shape[:-3]
        y = fn(x.reshape(-1, *x.shape[-3:]), k, s, p)
        return _Value(y.reshape(*lead, *y.shape[1:]), "map", v.timed, tuple(node.shape))

    def op_maxpool2d(self, node: Node, v: _Value) -> _Value:
        return self._pool(node, v, lambda x, k, s, p: F.max_pool2d(x, k, s, p))

    def op_sumpool2d(self, node: Node, v: _Value) -> _Value:
        return self._pool(node, v, _sum_pool)

    def op_threshold(self, node: Node, v: _Value) -> _Value:
        th = float(attr(node, "threshold"))
        return _Value((v.data >= th).to(self.dtype), v.layout, v.timed, tuple(node.shape))

    def op_spiking_attention(self, node: Node, q: _Value, k: _Value, v: _Value) -> _Value:
        here = where(node)
        heads = int(attr(node, "num_heads"))
        scale = float(attr(node, "scale"))
        if not (q.shape == k.shape == v.shape):
            raise IRError(f"{here}: q, k, v shapes differ: {q.shape}, {k.shape}, {v.shape}")
        if not (q.timed and k.timed and v.timed):
            raise IRError(f"{here}: q, k, v must be per-time-step token grids")
        d = q.shape[0]
        if heads < 1 or d % heads:
            raise IRError(f"{here}: {d} channels do not split into {heads} heads")
        qh, kh, vh = (split_heads(val.as_tokens(here), heads) for val in (q, k, v))
        out = (qh @ kh.transpose(-2, -1)) @ vh * scale        # [T, B, heads, N, D / heads]
        return _Value(merge_heads(out), "tokens", True, tuple(node.shape))

    def op_sum(self, node: Node, v: _Value) -> _Value:
        return _Value(v.data, v.layout, v.timed, tuple(node.shape))  # fan_in did the sum

    def op_token_mean(self, node: Node, v: _Value) -> _Value:
        if not v.timed:
            raise IRError(f"{where(node)}: input has no time dimension")
        y = v.as_map().contiguous().mean(dim=(-2, -1), keepdim=True)  # as the model pools
        return _Value(y, "map", True, tuple(node.shape))

    def op_token_time_mean(self, node: Node, v: _Value) -> _Value:
        if not v.timed:
            raise IRError(f"{where(node)}: input has no time dimension")
        y = v.as_tokens(where(node)).mean(dim=(0, 2))
        return _Value(y, "flat", False, tuple(node.shape))

    def op_affine(self, node: Node, v: _Value) -> _Value:
        w = self.param(node, "weight")
        if w.dim() != 2 or v.shape != (w.shape[1],):
            raise IRError(f"{where(node)}: weight {list(w.shape)} does not take an input of "
                          f"shape {v.shape}")
        return _Value(F.linear(v.data, w, self.param(node, "bias")), "flat", v.timed,
                      tuple(node.shape))

    def op_output(self, node: Node, v: _Value) -> _Value:
        if v.timed:
            raise IRError(f"{where(node)}: receives a per-time-step value; the logits must be "
                          "[B, K] (is token_time_mean missing?)")
        return _Value(v.data, v.layout, v.timed, v.shape)


def _sum_pool(x: torch.Tensor, k, s, p) -> torch.Tensor:
    """Window sums with zero padding. ``avg_pool2d`` (un-divided) where torch allows the
    padding (at most half the kernel); a wider one (the spike-driven attention's broadcast of a
    (D, 1, 1) map over the token grid) runs as a depthwise all-ones convolution."""
    if p[0] <= k[0] // 2 and p[1] <= k[1] // 2:
        return F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True,
                            divisor_override=1)
    ones = x.new_ones(x.shape[1], 1, *k)
    return F.conv2d(x.contiguous(), ones, None, s, p, 1, x.shape[1])


def run_float(graph: Graph, x, *, record: Union[bool, Iterable[str]] = False,
              dtype: torch.dtype = torch.float32, device: DeviceLike = "cpu") -> FloatResult:
    """Run a float-level graph on a batch ``x``; see the module docstring for the contract.

    ``record``: True for every node, an iterable of node names, or False for logits only.
    ``dtype``: float32 (the model's arithmetic) or float64 (parameters are cast once).
    ``device``: "cpu" (default) or "cuda" (an :class:`compiler.ir.OptionError` naming
    ``device`` without CUDA); the results stay on it. On CUDA, TF32 is off while it runs (true
    float32 products, as on the CPU), but cuDNN's and cuBLAS's summation orders differ from
    the CPU's: the last bits of a float result, and so a spike on a threshold's edge, may.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"run_float computes in float32 or float64, not {dtype}")
    dev = resolve_device(device)
    x = torch.as_tensor(x)
    graph.validate()
    executor = FloatExecutor(graph, dtype, dev)
    with torch.no_grad(), exact_float_math():
        outputs = executor.run(x, record=record)
    return FloatResult(executor.values[graph.output_node.name].data, outputs)
