"""Lowering: a quantized compiler graph -> a plan of Lava processes (``LavaNetwork``).

``lower(graph)`` checks the graph, converts every parameter to Lava's layouts
and integer types, computes each node's lag (:mod:`deploy.lava.timing`) and
inserts the delays that align every join. The result is pure data (a list of
:class:`Stage`); :mod:`deploy.lava.build` turns it into fresh Lava processes
for each run (a Lava process graph runs once: its runtime cannot be restarted
after ``stop``).

Process mapping (one Lava process per stage)::

    input              io.source.RingBuffer (graded int or binary spikes)   lag 0
    conv2d             conv.Conv  (num_message_bits > 0 when graded_input) lag +1
    sumpool2d          conv.Conv  depthwise all-ones kernel, binary input  lag +1
                       (block-diagonal groups=1 kernel above 127 channels: int8 groups)
    loihi_lif          lif.LIFReset (interval T, offset = lag + 1)          lag +0
    threshold          lif.LIF du = dv = 4095, vth = ceil(thr) - 1          lag +0
    spiking_attention  attention.SpikingAttention (custom)                  lag +0
    sum                graded.DelayedSum (early inputs on the delay port)   lag +0
    token_time_sum     io.Readout (custom, + the affine head)              lag +0
    (affine, output)   inside io.Readout

Any other input whose lag is short of its consumer's goes through a
``DelayedSum`` delay line (one per (source, delay), shared by consumers).

:class:`StagePlan` (stages, lags, delay lines, joins) is shared with the
floating-point lowering of float graphs, :mod:`deploy.lava.float_lowering`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from loihi_numerics import fixed_point as fx
from compiler.ir import Graph, IRError, Node

from deploy.lava import timing

LOWERED_OPS = frozenset({"input", "conv2d", "sumpool2d", "loihi_lif", "threshold",
                         "spiking_attention", "sum", "token_time_sum", "affine", "output"})

#: each stage kind's output port name
OUT_PORT = {"source": "s_out", "conv": "a_out", "lif": "s_out", "lif_reset": "s_out",
            "attention": "a_out", "delayed_sum": "s_out", "readout": None}

GRADED_MESSAGE_BITS = 24     # residual stream / graded spikes
DECAY_NONE = 4095            # du/dv = 4095: u has no memory, v keeps 1/4096
MAX_CONV_GROUPS = 127        # Lava's Conv keeps kernel/stride/padding/dilation/groups in int8


class LoweringError(IRError):
    """The graph cannot be lowered; the message names the node."""


def _fail(node: Node, msg: str) -> LoweringError:
    return LoweringError(f"layer '{node.name}' ({node.op}): {msg}")


@dataclass
class Stage:
    """One Lava process of the network."""

    name: str                      # unique; the node's name, or '<src>+<d>' for a delay line
    kind: str                      # key of OUT_PORT
    node: str                      # graph node implemented (the delayed node for delay lines)
    lag: int                       # output at Lava step s*T + t + lag (see deploy.lava.timing)
    params: Dict[str, Any] = field(default_factory=dict)   # process constructor arguments
    inputs: List[Tuple[str, str]] = field(default_factory=list)  # (source stage, in-port)

    @property
    def shape(self) -> Tuple[int, ...]:
        """Output shape in Lava layout."""
        p = self.params
        if self.kind == "conv":
            return tuple(p["output_shape"])
        return tuple(p["shape"])


@dataclass
class LavaNetwork:
    """A lowered graph: the stages in build order, plus what running needs."""

    stages: Dict[str, Stage]
    time_steps: int
    input_shape: Tuple[int, ...]           # (C, H, W), the compiler's layout
    input_encoding: str                    # "graded" | "spikes"
    num_classes: int
    lags: Dict[str, int]                   # node -> lag
    providers: Dict[str, str]              # node -> stage whose output is the node's
    readout: str                           # stage name of the readout
    meta: Dict[str, Any] = field(default_factory=dict)
    numeric: str = "fixed"                 # "fixed" (integer models) | "float" (floating_pt)

    @property
    def max_lag(self) -> int:
        return max(self.lags.values())

    def probe_names(self) -> List[str]:
        """Nodes whose per-step output can be probed (all in-loop nodes)."""
        return [n for n, s in self.providers.items() if self.stages[s].kind != "readout"]

    def summary(self) -> str:
        lines = [f"{'stage':<34} {'process':<12} {'lag':>3}  inputs"]
        for st in self.stages.values():
            ins = ", ".join(f"{s}->{p}" for s, p in st.inputs) or "-"
            lines.append(f"{st.name:<34} {st.kind:<12} {st.lag:>3}  {ins}")
        lines.append(f"{len(self.stages)} Lava processes (+1 Tap per probe), "
                     f"T = {self.time_steps}, pipeline depth = {self.max_lag} steps")
        return "\n".join(lines)


# -- per-op parameter conversion ---------------------------------------------------------------
def lava_shape(shape) -> Tuple[int, int, int]:
    """``(C, H, W)`` -> Lava ``(W, H, C)``."""
    c, h, w = (int(s) for s in shape)
    return (w, h, c)


def _int8_geometry(node: Node, **values) -> None:
    for key, val in values.items():
        if max(val) > 127:
            raise _fail(node, f"{key} {val} exceeds Lava Conv's int8 storage (<= 127)")


def _pair(x) -> Tuple[int, int]:
    if isinstance(x, (int, np.integer)):
        return int(x), int(x)
    a, b = x
    return int(a), int(b)


def ungroup(weight: np.ndarray, groups: int) -> np.ndarray:
    """Grouped weights ``[Cout, Cin/g, kh, kw]`` -> the equivalent ``groups = 1``
    weights ``[Cout, Cin, kh, kw]`` (block diagonal: zeros between groups)."""
    co, cg, kh, kw = weight.shape
    full = np.zeros((co, cg * groups, kh, kw), dtype=weight.dtype)
    og = co // groups
    for g in range(groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = weight[g * og:(g + 1) * og]
    return full


def conv_params(node: Node, in_shape, weight: np.ndarray, stride, padding, groups: int,
                message_bits: int, dilation=(1, 1), weight_dtype=np.int32) -> Dict[str, Any]:
    """``Conv`` constructor arguments; ``weight_dtype`` int32 (fixed_pt) or float64
    (floating_pt models)."""
    w = np.asarray(weight)
    if groups > MAX_CONV_GROUPS:
        # Lava's Conv stores `groups` as int8: a depthwise conv over more than 127
        # channels (the sum pools at D >= 128) becomes one block-diagonal conv.
        w, groups = ungroup(w, groups), 1
    if np.dtype(weight_dtype).kind == "i" and w.size and np.abs(w).max() >= 2 ** 31:
        raise _fail(node, "weights do not fit Lava Conv's int32 weight Var")
    lw = fx.to_lava_conv_weight(w).astype(weight_dtype)
    stride, padding, dilation = (fx.to_lava_xy(_pair(v)) for v in (stride, padding, dilation))
    _int8_geometry(node, kernel=lw.shape[1:3], stride=stride, padding=padding,
                   dilation=dilation, groups=(groups,))
    h_out, w_out = fx.conv_output_hw(tuple(in_shape[1:]), w.shape[2:],
                                     stride[::-1], padding[::-1], dilation[::-1])
    out = (w_out, h_out, int(w.shape[0]))
    if out != lava_shape(node.shape):
        raise _fail(node, f"Lava output shape {out} does not match the node's shape {node.shape}")
    return dict(weight=lw, input_shape=lava_shape(in_shape), padding=padding, stride=stride,
                dilation=dilation, groups=int(groups), num_message_bits=int(message_bits),
                output_shape=out)


def _scalar(node: Node, key: str) -> int:
    a = np.asarray(node.params[key])
    if a.size != 1:
        raise _fail(node, f"'{key}' must be one value per layer (Lava's LIF has a scalar "
                          f"{key}); got shape {a.shape}")
    return int(a.reshape(-1)[0])


def _per_neuron(node: Node, key: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(node.params[key], dtype=np.int64), tuple(node.shape))
    return fx.to_lava_layout(a).astype(np.int32)


def _lif_params(node: Node, lag: int, time_steps: int) -> Dict[str, Any]:
    fx.LifParams(**{k: node.params[k] for k in ("du", "dv", "vth", "bias_mant", "bias_exp")})
    return dict(shape=lava_shape(node.shape), du=_scalar(node, "du"), dv=_scalar(node, "dv"),
                vth=_scalar(node, "vth"), bias_mant=_per_neuron(node, "bias_mant"),
                bias_exp=_per_neuron(node, "bias_exp"), reset_interval=int(time_steps),
                reset_offset=timing.reset_offset(lag, time_steps))


def _threshold_params(node: Node, src: Node) -> Dict[str, Any]:
    """``1 where count >= thr`` as a memoryless LIF.

    du = 4095: u = count << 6 each step. dv = 4095: v keeps |v| >> 12 of its
    previous value, which is 0 because a non-spiking v = 64 * count <= 64 * vth
    < 4096 (vth <= 63) and a spiking one was reset to 0. So v = 64 * count and
    the LIF spikes iff 64 * count > 64 * vth, i.e. count >= vth + 1 = ceil(thr)
    for the integer counts of a sum pool.
    """
    if src.op != "sumpool2d" or len(node.inputs) != 1:
        raise _fail(node, "only a threshold after one sumpool2d (the max-pool rewrite) is supported")
    thr = float(node.attrs["threshold"])
    vth = math.ceil(thr) - 1
    if not 0 <= vth <= 63:
        raise _fail(node, f"threshold {thr} needs vth {vth}; a memoryless LIF needs 0..63")
    return dict(shape=lava_shape(node.shape), du=DECAY_NONE, dv=DECAY_NONE, vth=vth,
                bias_mant=0, bias_exp=0)


def readout_params(graph: Graph, node: Node, in_node: Node, dtype=np.int64) -> Dict[str, Any]:
    """``Readout`` arguments for a readout node and its affine head (``dtype``: int64 for
    the integer head, float64 for the floating-point one)."""
    heads = graph.consumers(node.name)
    if len(heads) != 1 or heads[0].op != "affine" or len(heads[0].inputs) != 1:
        raise _fail(node, "must feed exactly one affine head (and nothing else)")
    head = heads[0]
    outs = graph.consumers(head.name)
    if len(outs) != 1 or outs[0].op != "output" or outs[0] is not graph.output_node \
            or len(outs[0].inputs) != 1:
        raise _fail(head, "must feed the graph's output node (and nothing else)")
    if len(in_node.shape) != 3:
        raise _fail(node, f"expects a [C, H, W] token map; got {in_node.shape}")
    w = np.asarray(head.params["weight"], dtype=dtype)
    b = np.asarray(head.params.get("bias", np.zeros(w.shape[0])), dtype=dtype)
    return dict(shape=lava_shape(in_node.shape), weight=w, bias=b)


# -- the shared plan builder -----------------------------------------------------------------
class StagePlan:
    """Stages under construction, with the lag bookkeeping and delay lines shared by the
    fixed-point :func:`lower` and the floating-point
    :func:`deploy.lava.float_lowering.lower_float`."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.lags = timing.node_lags(graph)
        self.stages: Dict[str, Stage] = {}
        self.providers: Dict[str, str] = {}          # node -> stage carrying its output
        self._delay_lines: Dict[Tuple[str, int], str] = {}

    def add(self, stage: Stage) -> Stage:
        if stage.name in self.stages:
            raise LoweringError(f"duplicate stage name '{stage.name}'")
        self.stages[stage.name] = stage
        return stage

    def provide(self, node: Node, stage: Stage) -> Stage:
        """Add ``stage`` as the process whose output is ``node``'s."""
        self.add(stage)
        self.providers[node.name] = stage.name
        return stage

    def delayed(self, src: str, d: int) -> str:
        """Stage carrying node ``src``'s output delayed by ``d`` more steps."""
        if d == 0:
            return self.providers[src]
        key = (src, d)
        if key not in self._delay_lines:
            s = self.stages[self.providers[src]]
            st = self.add(Stage(f"{src}+{d}", "delayed_sum", src, self.lags[src] + d,
                                dict(shape=s.shape, delay=d), [(s.name, "a_delayed")]))
            self._delay_lines[key] = st.name
        return self._delay_lines[key]

    def aligned_inputs(self, node: Node, port: str) -> List[Tuple[str, str]]:
        """``node``'s inputs, each delayed to the latest one, all into ``port``."""
        return [(self.delayed(i, d), port) for i, d in timing.deficits(node, self.lags).items()]

    def sum_stage(self, node: Node) -> Stage:
        """A residual join: inputs on time go to ``a_in``; the most common positive
        deficit rides the process's own delay line (``a_delayed``); any other
        deficit gets a separate delay line into ``a_in``."""
        defs = timing.deficits(node, self.lags)
        late = Counter(d for d in defs.values() if d > 0)
        own = max(late, key=lambda d: (late[d], d)) if late else 0
        inputs = []
        for i, d in defs.items():
            if own and d == own:
                inputs.append((self.providers[i], "a_delayed"))
            else:
                inputs.append((self.delayed(i, d), "a_in"))
        return Stage(node.name, "delayed_sum", node.name, self.lags[node.name],
                     dict(shape=lava_shape(node.shape), delay=own), inputs)

    def network(self, readout: Optional[str], numeric: str) -> LavaNetwork:
        if readout is None:
            raise LoweringError("the graph has no token_time_sum / token_time_mean readout")
        g = self.graph
        inp = g.input_node
        return LavaNetwork(stages=self.stages, time_steps=int(g.meta["time_steps"]),
                           input_shape=tuple(inp.shape), input_encoding=inp.attrs["encoding"],
                           num_classes=int(g.output_node.shape[0]), lags=self.lags,
                           providers=self.providers, readout=readout,
                           meta={"model": g.meta.get("model"), "config": g.meta.get("config")},
                           numeric=numeric)


# -- the pass -----------------------------------------------------------------------------------
def lower(graph: Graph) -> LavaNetwork:
    """Lower a quantized graph (``compiler.passes.quantize.quantize``) to a Lava plan."""
    graph.validate()
    bad = [n for n in graph if n.op not in LOWERED_OPS]
    if bad:
        raise _fail(bad[0], "op not supported by the Lava backend (quantize the graph first)")
    T = int(graph.meta["time_steps"])
    plan = StagePlan(graph)
    lags = plan.lags
    readout = None
    for node in graph:
        op, lag = node.op, lags.get(node.name)
        src = graph[node.inputs[0]] if node.inputs else None
        if op == "input":
            enc = node.attrs["encoding"]
            if enc not in ("graded", "spikes"):
                raise _fail(node, f"encoding '{enc}' is not a quantized input encoding")
            st = Stage(node.name, "source", node.name, lag,
                       dict(shape=lava_shape(node.shape), encoding=enc))
        elif op == "conv2d":
            a = node.attrs
            if a.get("weight_exp", 0) != 0:
                raise _fail(node, "weight_exp != 0: Lava's Conv model ignores it; pre-shift the weights")
            graded = bool(a.get("graded_input"))
            bits = (int(src.attrs.get("bits", GRADED_MESSAGE_BITS)) if src.op == "input"
                    else GRADED_MESSAGE_BITS) if graded else 0
            st = Stage(node.name, "conv", node.name, lag, conv_params(
                node, src.shape, node.params["weight"], a["stride"], a["padding"],
                int(a["groups"]), bits, a.get("dilation", 1)), plan.aligned_inputs(node, "s_in"))
        elif op == "sumpool2d":
            st = Stage(node.name, "conv", node.name, lag,
                       sumpool_params(node, src, 0, np.int32), plan.aligned_inputs(node, "s_in"))
        elif op == "loihi_lif":
            st = Stage(node.name, "lif_reset", node.name, lag, _lif_params(node, lag, T),
                       plan.aligned_inputs(node, "a_in"))
        elif op == "threshold":
            st = Stage(node.name, "lif", node.name, lag, _threshold_params(node, src),
                       plan.aligned_inputs(node, "a_in"))
        elif op == "spiking_attention":
            heads = int(node.attrs["num_heads"])
            ins = [(plan.delayed(i, d), role) for (i, d), role in
                   zip(timing.deficits(node, lags).items(), ("q", "k", "v"))]
            st = Stage(node.name, "attention", node.name, lag,
                       dict(shape=lava_shape(node.shape), num_heads=heads,
                            gain=int(node.attrs.get("gain", 1))), ins)
        elif op == "sum":
            st = plan.sum_stage(node)
        elif op == "token_time_sum":
            in_node = graph[node.inputs[0]]
            st = Stage(node.name, "readout", node.name, lag,
                       {**readout_params(graph, node, in_node, np.int64), "time_steps": T,
                        "lag": lag}, plan.aligned_inputs(node, "a_in"))
            readout = st.name
        else:  # affine / output: folded into the readout
            continue
        plan.provide(node, st)
    return plan.network(readout, "fixed")


def sumpool_params(node: Node, src: Node, message_bits: int, weight_dtype) -> Dict[str, Any]:
    """A sum pool as a depthwise all-ones ``Conv``."""
    a, c = node.attrs, int(node.shape[0])
    kh, kw = _pair(a["kernel"])
    ones = np.ones((c, 1, kh, kw), dtype=np.int64)
    return conv_params(node, src.shape, ones, a["stride"], a["padding"], c, message_bits,
                       weight_dtype=weight_dtype)
