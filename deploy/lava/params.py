"""Parameter strategies: how a graph's numbers become Lava process parameters.

:class:`~deploy.lava.lowering.Lowering` builds the same plan (stages, lags, delay lines)
for both numeric kinds and asks a strategy for every number:

* :class:`FixedPointParams` (``lower``, quantized graphs, Lava's ``fixed_pt`` models):
  the quantizer's integers as they are -- int32 conv weights (``weight_exp`` must be 0:
  Lava's Conv ignores it), scalar ``du``/``dv``/``vth`` and per-neuron bias of
  ``loihi_lif``, the integer attention gain, an int64 head.
* :class:`FloatParams` (``lower_float``, float graphs after ``compiler.passes.float_passes``,
  Lava's ``floating_pt`` models): float64 weights, the IR's generalised LIF mapped onto
  Lava's float LIF with its input gain ``r / tau`` folded into the convs (or the attention
  gain) that feed it and the conv biases moved into the LIF, a float64 head.

Both also give the memoryless ``LIF`` of a ``threshold`` (over the sum of one or several sum
pools) and of a stock delay relay (``relay``: fires wherever its identity Conv delivers a
spike; see :mod:`deploy.lava.timing`).

The float LIF mapping. Lava's float LIF (``PyLifModelFloat`` / ``PyLifResetModelFloat``)
computes per step

    u = u (1 - du) + a_in;   v = v (1 - dv) + u + bias_mant;   s = v > vth;   v = 0 where s

The IR's ``lif`` (docs/nir.md, ``compiler.float_exec``) is ``H = V + (r X - V) / tau``,
fire on ``spike_if`` (">=" or ">"), reset to 0, X the sum of the input convs' outputs
``W x + b``. With ``du = 1`` (``u = a_in``, no current memory) and ``dv = 1 / tau`` it is
Lava's LIF with

* the gain ``r / tau`` folded into the weights of every conv feeding the LIF (a Lava Conv
  has no bias) and ``bias_mant = (r / tau) * sum(b)`` per neuron (after spiking attention:
  into the attention process's gain, ``scale * r / tau``);
* ``vth = theta`` for ">" and ``vth = nextafter(theta, -inf)`` for ">=": for floats
  ``v > nextafter(theta, -inf)`` is exactly ``v >= theta``.

An snntorch ``Leaky(beta)`` imported as ``tau = 1 / (1 - beta)``, ``r = tau`` has gain
``tau / tau = 1`` exactly, and decay ``1 - dv = 1 - 1/tau``, which equals ``beta`` whenever
``1/tau`` rounds back to ``1 - beta`` (checked per layer by the tests); Lava then computes
``beta * V + (W x) + b`` in float64 where snntorch computes ``beta * V + (W x + b)``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

from compiler import ops
from compiler.ir import Graph, Node, lif_attrs
from compiler.layout import pair
from compiler.ops import FLOAT, OPS, QUANTIZED, Level
from loihi_numerics import fixed_point as fx

from deploy.lava import timing
from deploy.lava.stages import SourceEncoding, fail

GRADED_MESSAGE_BITS = 24     # residual stream / graded spikes
DECAY_NONE = 4095            # du/dv = 4095: u has no memory, v keeps 1/4096
MAX_THRESHOLD_VTH = 63       # memoryless LIF: a non-spiking v = 64 * count < 4096 decays to 0
MAX_THRESHOLD_COUNT = (2 ** 23 - 1) // 64   # u = count << 6 must fit the 24-bit state
MAX_CONV_GROUPS = 127        # Lava's Conv keeps kernel/stride/padding/dilation/groups in int8


# -- conversions shared by both strategies -------------------------------------------------
def ungroup(weight: np.ndarray, groups: int) -> np.ndarray:
    """Grouped weights ``[Cout, Cin/g, kh, kw]`` -> the equivalent ``groups = 1``
    weights ``[Cout, Cin, kh, kw]`` (block diagonal: zeros between groups)."""
    co, cg, kh, kw = weight.shape
    full = np.zeros((co, cg * groups, kh, kw), dtype=weight.dtype)
    og = co // groups
    for g in range(groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = weight[g * og:(g + 1) * og]
    return full


def _int8_geometry(node: Node, **values) -> None:
    for key, val in values.items():
        if max(val) > 127:
            raise fail(node, f"{key} {val} exceeds Lava Conv's int8 storage (<= 127)")


def conv_params(node: Node, in_shape, weight: np.ndarray, stride, padding, groups: int,
                message_bits: int, dilation=(1, 1), weight_dtype=np.int32) -> Dict[str, Any]:
    """``Conv`` constructor arguments (+ the plan's ``output_shape``); ``weight_dtype``
    int32 (fixed_pt) or float64 (floating_pt models)."""
    w = np.asarray(weight)
    if groups > MAX_CONV_GROUPS:
        # Lava's Conv stores `groups` as int8: a depthwise conv over more than 127
        # channels (the sum pools at D >= 128) becomes one block-diagonal conv.
        w, groups = ungroup(w, groups), 1
    if np.dtype(weight_dtype).kind == "i" and w.size and np.abs(w).max() >= 2 ** 31:
        raise fail(node, "weights do not fit Lava Conv's int32 weight Var")
    lw = fx.to_lava_conv_weight(w).astype(weight_dtype)
    where = f"node '{node.name}' ({node.op})"
    stride, padding, dilation = (fx.to_lava_xy(pair(v, where, key))
                                 for key, v in (("stride", stride), ("padding", padding),
                                                ("dilation", dilation)))
    _int8_geometry(node, kernel=lw.shape[1:3], stride=stride, padding=padding,
                   dilation=dilation, groups=(groups,))
    h_out, w_out = fx.conv_output_hw(tuple(in_shape[1:]), w.shape[2:],
                                     stride[::-1], padding[::-1], dilation[::-1])
    out = (w_out, h_out, int(w.shape[0]))
    if out != fx.lava_shape(node.shape):
        raise fail(node, f"Lava output shape {out} does not match the node's shape {node.shape}")
    return dict(weight=lw, input_shape=fx.lava_shape(in_shape), padding=padding, stride=stride,
                dilation=dilation, groups=int(groups), num_message_bits=int(message_bits),
                output_shape=out)


def sumpool_params(node: Node, src: Node, message_bits: int, weight_dtype) -> Dict[str, Any]:
    """A sum pool as a depthwise all-ones ``Conv``."""
    a, c = node.attrs, int(node.shape[0])
    kh, kw = pair(a["kernel"], f"node '{node.name}' ({node.op})", "kernel")
    ones = np.ones((c, 1, kh, kw), dtype=np.int64)
    return conv_params(node, src.shape, ones, a["stride"], a["padding"], c, message_bits,
                       weight_dtype=weight_dtype)


# -- the strategies -----------------------------------------------------------------------------
class ParameterStrategy:
    """The numbers of one numeric kind. Subclasses set the class attributes and implement
    the per-op conversions; :class:`~deploy.lava.lowering.Lowering` does the rest."""

    level: Level                                   # the graphs this kind lowers
    numeric: str                                   # LavaNetwork.numeric: "fixed" | "float"
    weight_dtype: type                             # Conv weight Var dtype
    head_dtype: type                               # Readout weight / bias dtype
    pool_message_bits: int                         # sum-pool Conv input: binary (0) / graded
    source_encodings: Mapping[str, SourceEncoding]  # IR input encoding -> source encoding

    @property
    def ops(self) -> Tuple[str, ...]:
        """The ops this kind lowers: the registry's ops of ``level`` after the passes."""
        return ops.ops_at(self.level, after_passes=True)

    def unsupported(self, op: str) -> str:
        """Why a graph with ``op`` cannot be lowered by this kind."""
        raise NotImplementedError

    def prepare(self, graph: Graph) -> None:
        """Whole-graph analysis before the first stage (default: none)."""

    def source_encoding(self, node: Node) -> SourceEncoding:
        enc = node.attrs["encoding"]
        if enc not in self.source_encodings:
            raise fail(node, self.bad_encoding(enc))
        return self.source_encodings[enc]

    def bad_encoding(self, enc: str) -> str:
        raise NotImplementedError

    def conv(self, node: Node, src: Node) -> Tuple[np.ndarray, int]:
        """(weight ``[Cout, Cin/g, kh, kw]`` in the Lava model's number type, Conv
        ``num_message_bits``) of a ``conv2d`` whose first input is ``src``."""
        raise NotImplementedError

    def lif(self, node: Node, lag: int, time_steps: int) -> Dict[str, Any]:
        """``LIFReset`` arguments of a neuron layer (``loihi_lif`` / ``lif``) with this lag."""
        raise NotImplementedError

    def threshold(self, node: Node, inputs: Sequence[Node]) -> Dict[str, Any]:
        """``LIF`` arguments of a memoryless ``threshold`` fed by ``inputs`` (their outputs
        are summed on the LIF's ``a_in``)."""
        raise NotImplementedError

    def relay(self, src: Node) -> Dict[str, Any]:
        """``LIF`` arguments of a stock delay relay's neuron for ``src``'s spike map: a
        memoryless LIF that fires where its identity Conv delivers a spike."""
        raise NotImplementedError

    def attention_gain(self, node: Node):
        """The ``SpikingAttention`` gain of a ``spiking_attention`` node."""
        raise NotImplementedError


class FixedPointParams(ParameterStrategy):
    """Quantized graphs -> integer parameters of Lava's fixed_pt (bit-accurate) models."""

    level = QUANTIZED
    numeric = "fixed"
    weight_dtype = np.int32
    head_dtype = np.int64
    pool_message_bits = 0                          # binary spikes into the pool
    source_encodings = {"graded": SourceEncoding.GRADED, "counts": SourceEncoding.GRADED,
                        "spikes": SourceEncoding.SPIKES}

    def unsupported(self, op: str) -> str:
        return "op not supported by the Lava backend (quantize the graph first)"

    def bad_encoding(self, enc: str) -> str:
        return (f"encoding '{enc}' is not a quantized input encoding "
                f"({' or '.join(map(repr, self.source_encodings))})")

    def conv(self, node: Node, src: Node) -> Tuple[np.ndarray, int]:
        if ops.attr(node, "weight_exp") != 0:
            raise fail(node, "weight_exp != 0: Lava's Conv model ignores it; pre-shift the "
                             "weights")
        bits = 0
        if ops.attr(node, "graded_input"):
            bits = GRADED_MESSAGE_BITS
            if src.op == "input":
                bits = int(src.attrs.get("bits", GRADED_MESSAGE_BITS))
        return node.params["weight"], bits

    def lif(self, node: Node, lag: int, time_steps: int) -> Dict[str, Any]:
        fx.LifParams(**{k: node.params[k] for k in ("du", "dv", "vth", "bias_mant", "bias_exp")})
        return dict(shape=fx.lava_shape(node.shape), du=_scalar(node, "du"),
                    dv=_scalar(node, "dv"), vth=_scalar(node, "vth"),
                    bias_mant=_per_neuron(node, "bias_mant"),
                    bias_exp=_per_neuron(node, "bias_exp"), reset_interval=int(time_steps),
                    reset_offset=timing.reset_offset(lag, time_steps))

    def threshold(self, node: Node, inputs: Sequence[Node]) -> Dict[str, Any]:
        """``1 where count >= thr`` as a memoryless LIF; ``count`` is the sum of the
        sum pools' window counts (one pool: the max-pool rewrite; two 1x1 pools and
        threshold 2: the AND of two spike maps; whole-map pools: token counts up to H*W).

        du = 4095: u = count << 6 each step, exact while 64 * count < 2**23 (the
        24-bit state: counts up to 131071; the pools' kernel areas bound the count).
        dv = 4095: v keeps |v| >> 12 of its previous value, which is 0 because a
        non-spiking v = 64 * count <= 64 * vth < 4096 (vth <= 63) and a spiking one was
        reset to 0 -- however large the counts that fire. So v = 64 * count and the LIF
        spikes iff 64 * count > 64 * vth, i.e. count >= vth + 1 = ceil(thr) for integer
        counts.
        """
        if not inputs or any(src.op != "sumpool2d" for src in inputs):
            raise fail(node, "only a threshold over sumpool2d inputs (max-pool rewrite, "
                             "spike counts) is supported")
        thr = float(node.attrs["threshold"])
        vth = math.ceil(thr) - 1
        if not 0 <= vth <= MAX_THRESHOLD_VTH:
            raise fail(node, f"threshold {thr} needs vth {vth}; a memoryless LIF needs "
                             f"0..{MAX_THRESHOLD_VTH}")
        most = sum(_kernel_area(src) for src in inputs)   # binary inputs: <= 1 per tap
        if most > MAX_THRESHOLD_COUNT:
            raise fail(node, f"counts up to {most} exceed the memoryless LIF's 24-bit "
                             f"current (<= {MAX_THRESHOLD_COUNT})")
        return _memoryless_lif(node.shape, vth)

    def relay(self, src: Node) -> Dict[str, Any]:
        # count 0 or 1 from the identity Conv: vth 0 fires iff count >= 1 (threshold above)
        return _memoryless_lif(src.shape, 0)

    def attention_gain(self, node: Node) -> int:
        return int(ops.attr(node, "gain"))


def _memoryless_lif(shape, vth: int) -> Dict[str, Any]:
    """Fixed-point ``LIF`` arguments: spike iff this step's input count > ``vth``."""
    return dict(shape=fx.lava_shape(shape), du=DECAY_NONE, dv=DECAY_NONE, vth=int(vth),
                bias_mant=0, bias_exp=0)


def _kernel_area(pool: Node) -> int:
    kh, kw = pair(pool.attrs["kernel"], f"node '{pool.name}' ({pool.op})", "kernel")
    return kh * kw


def _scalar(node: Node, key: str) -> int:
    a = np.asarray(node.params[key])
    if a.size != 1:
        raise fail(node, f"'{key}' must be one value per layer (Lava's LIF has a scalar "
                         f"{key}); got shape {a.shape}")
    return int(a.reshape(-1)[0])


def _per_neuron(node: Node, key: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(node.params[key], dtype=np.int64), tuple(node.shape))
    return fx.to_lava_layout(a).astype(np.int32)


def lif_lava_params(node: Node) -> Tuple[float, float, float]:
    """``(dv, gain, vth)`` of Lava's float LIF for an IR ``lif`` node (module docstring)."""
    tau, theta, r, rule = lif_attrs(node, lambda msg: fail(node, msg))
    vth = theta if rule == ">" else float(np.nextafter(theta, -np.inf))
    return 1.0 / tau, r / tau, vth


def _float_memoryless_lif(shape, thr: float) -> Dict[str, Any]:
    """Floating-point ``LIF`` arguments: spike iff this step's input >= ``thr``."""
    return dict(shape=fx.lava_shape(shape), du=1.0, dv=1.0,
                vth=float(np.nextafter(thr, -np.inf)), bias_mant=0.0, bias_exp=0.0)


#: why a float op that the float passes rewrite away cannot be lowered
REMOVED_WHY = {
    "batchnorm": "run compiler.passes.float_passes first (BatchNorm folds into the conv)",
    "maxpool2d": "run compiler.passes.float_passes first (max-pool becomes sum-pool + "
                 "threshold)",
}

#: ops whose output can carry the input gain r/tau (and the bias) of the LIF they feed
GAIN_CARRIERS = ("conv2d", "spiking_attention")


class FloatParams(ParameterStrategy):
    """Float graphs (after the float passes) -> float64 parameters of Lava's floating_pt
    models, with the generalised-LIF mapping (module docstring)."""

    level = FLOAT
    numeric = "float"
    weight_dtype = np.float64
    head_dtype = np.float64
    # graded: float payloads pass unchanged, and several inputs are summed (the IR's
    # fan-in) where binary mode would OR them
    pool_message_bits = GRADED_MESSAGE_BITS
    source_encodings = {"analog": SourceEncoding.GRADED, "counts": SourceEncoding.GRADED,
                        "spikes": SourceEncoding.SPIKES}

    def __init__(self) -> None:
        self.graph: Graph = None  # type: ignore[assignment]
        self.gains: Dict[str, float] = {}

    def unsupported(self, op: str) -> str:
        spec = OPS[op]
        if spec.removed_by:
            return REMOVED_WHY.get(op, f"run compiler.passes.float_passes first "
                                       f"({spec.removed_by} rewrites it away)")
        return (f"op not supported by the floating-point Lava target (supported: "
                f"{sorted(self.ops)})")

    def bad_encoding(self, enc: str) -> str:
        return (f"encoding '{enc}' is not a float input encoding "
                f"({' or '.join(map(repr, self.source_encodings))})")

    def prepare(self, graph: Graph) -> None:
        """conv2d / spiking_attention node -> the factor its output is scaled by in Lava:
        the input gain ``r / tau`` of the LIF it feeds (1.0 when it feeds no LIF). Checks
        that every LIF is fed by such nodes only and that every conv bias has a LIF to
        carry it."""
        self.graph = graph
        gains: Dict[str, float] = {}
        for node in graph.by_op("lif"):
            _, gain, _ = lif_lava_params(node)
            for i in node.inputs:
                src = graph[i]
                if src.op not in GAIN_CARRIERS:
                    raise fail(node, f"input '{i}' is a {src.op}; the floating-point Lava LIF "
                                     "takes conv2d or spiking_attention inputs only (the gain "
                                     "r/tau and the bias fold into them)")
                lifs = graph.consumers(i)
                if len(lifs) != 1:
                    raise fail(src, f"feeds {[n.name for n in lifs]}; a node whose output "
                                    "goes to a LIF must feed only that LIF (it carries the "
                                    "LIF's gain)")
                gains[i] = gain
        for node in graph.by_op(*GAIN_CARRIERS):
            if node.name in gains:
                continue
            b = node.params.get("bias")
            if b is not None and np.any(np.asarray(b) != 0):
                raise fail(node, "has a bias but feeds no LIF (Lava's Conv has no bias; the "
                                 "float backend moves it into the LIF it feeds)")
            gains[node.name] = 1.0
        self.gains = gains

    def conv(self, node: Node, src: Node) -> Tuple[np.ndarray, int]:
        w = np.asarray(node.params["weight"], dtype=np.float64) * self.gains[node.name]
        return w, GRADED_MESSAGE_BITS

    def lif(self, node: Node, lag: int, time_steps: int) -> Dict[str, Any]:
        dv, _, vth = lif_lava_params(node)
        gain = self.gains[node.inputs[0]]
        bias = np.zeros(tuple(node.shape), dtype=np.float64)
        for i in node.inputs:
            b = self.graph[i].params.get("bias")
            if b is not None:
                bias = bias + gain * np.asarray(b, dtype=np.float64).reshape(-1, 1, 1)
        return dict(shape=fx.lava_shape(node.shape), du=1.0, dv=dv, vth=vth,
                    bias_mant=fx.to_lava_layout(bias), bias_exp=0.0,
                    reset_interval=int(time_steps),
                    reset_offset=timing.reset_offset(lag, time_steps))

    def threshold(self, node: Node, inputs: Sequence[Node]) -> Dict[str, Any]:
        """``1 where x >= thr`` as a memoryless float LIF: ``du = dv = 1`` make
        ``v = 0 * v + a_in`` (``a_in``: the sum of the inputs, graded ports add), and
        ``v > nextafter(thr, -inf)`` is ``v >= thr``."""
        thr = float(node.attrs["threshold"])
        if not np.isfinite(thr):
            raise fail(node, f"threshold {thr} must be finite")
        return _float_memoryless_lif(node.shape, thr)

    def relay(self, src: Node) -> Dict[str, Any]:
        return _float_memoryless_lif(src.shape, 1.0)     # spikes are exactly 0.0 / 1.0

    def attention_gain(self, node: Node) -> float:
        # binary q, k, v: the float64 counts are exact integers; the scale and the
        # attention LIF's input gain ride on the process's gain
        return float(node.attrs["scale"]) * self.gains[node.name]


__all__ = ["DECAY_NONE", "FixedPointParams", "FloatParams", "GRADED_MESSAGE_BITS",
           "MAX_CONV_GROUPS", "MAX_THRESHOLD_COUNT", "MAX_THRESHOLD_VTH", "ParameterStrategy",
           "conv_params", "lif_lava_params", "sumpool_params", "ungroup"]
