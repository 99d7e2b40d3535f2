"""Lowering of a FLOAT graph (after ``compiler.passes.float_passes``) to Lava processes
run by Lava's floating-point ProcessModels (target ``lava-sim-float``).

Same plan, timing, streaming and resets as the fixed-point backend
(:class:`deploy.lava.lowering.StagePlan`, :mod:`deploy.lava.timing`): one Lava
process per node, one step of lag per Conv hop, LIFReset offsets equal to each
layer's lag. Only the parameters differ: float64 weights, and the IR's
generalised LIF mapped onto Lava's float LIF.

Lava's float LIF (``PyLifModelFloat`` / ``PyLifResetModelFloat``) computes per step

    u = u (1 - du) + a_in;   v = v (1 - dv) + u + bias_mant;   s = v > vth;   v = 0 where s

The IR's ``lif`` (docs/nir.md, ``compiler.float_exec``) is
``H = V + (r X - V) / tau``, fire on ``spike_if`` (">=" or ">"), reset to 0, X the
sum of the input convs' outputs ``W x + b``. With ``du = 1`` (``u = a_in``, no
current memory) and ``dv = 1 / tau`` it is Lava's LIF with

* the gain ``r / tau`` folded into the weights of every conv feeding the LIF
  (a Lava Conv has no bias) and ``bias_mant = (r / tau) * sum(b)`` per neuron
  (after spiking attention: into the attention process's gain, ``scale * r / tau``);
* ``vth = theta`` for ">" and ``vth = nextafter(theta, -inf)`` for ">=": for
  floats ``v > nextafter(theta, -inf)`` is exactly ``v >= theta``.

An snntorch ``Leaky(beta)`` imported as ``tau = 1 / (1 - beta)``, ``r = tau`` has
gain ``tau / tau = 1`` exactly, and decay ``1 - dv = 1 - 1/tau``, which equals
``beta`` whenever ``1/tau`` rounds back to ``1 - beta`` (checked per layer by the
tests); Lava then computes ``beta * V + (W x) + b`` in float64 where snntorch
computes ``beta * V + (W x + b)`` (float32 by default).

Process mapping (floating_pt models)::

    input            io.source.RingBuffer (float64 stream, normalised)   lag 0
    conv2d           conv.Conv (float weights * gain; graded input)       lag +1
    sumpool2d        conv.Conv (all-ones depthwise kernel)               lag +1
    lif              lif.LIFReset (du = 1, dv = 1/tau, vth, bias)         lag +0
    threshold        lif.LIF du = dv = 1, vth = nextafter(thr, -inf)     lag +0
    spiking_attention attention.SpikingAttention (float model, gain      lag +0
                     = scale * r / tau of the attention LIF)
    sum              graded.DelayedSum                                    lag +0
    token_time_mean  io.Readout (float: W @ (sum / (T * H * W)) + b)      lag +0
    (affine, output) inside io.Readout

Not supported (a :class:`~deploy.lava.lowering.LoweringError` naming the node):
``batchnorm`` / ``maxpool2d`` (run ``compiler.passes.float_passes`` first), a
``lif`` fed by anything but convs or spiking attention, and a conv with a bias
(or a LIF gain) that has no single LIF consumer to carry it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from compiler.ir import Graph, IRError, Node, lif_attrs

from deploy.lava import timing
from deploy.lava.lowering import (GRADED_MESSAGE_BITS, LavaNetwork, LoweringError, Stage,
                                  StagePlan, conv_params, lava_shape, readout_params,
                                  sumpool_params)

FLOAT_LOWERED_OPS = frozenset({"input", "conv2d", "lif", "sumpool2d", "threshold",
                               "spiking_attention", "sum", "token_time_mean", "affine",
                               "output"})

#: why an op of the float IR has no floating-point Lava lowering
UNSUPPORTED_WHY = {
    "batchnorm": "run compiler.passes.float_passes first (BatchNorm folds into the conv)",
    "maxpool2d": "run compiler.passes.float_passes first (max-pool becomes sum-pool + "
                 "threshold)",
}


def _fail(node: Node, msg: str) -> LoweringError:
    return LoweringError(f"layer '{node.name}' ({node.op}): {msg}")


def lif_lava_params(node: Node):
    """``(dv, gain, vth)`` of Lava's float LIF for an IR ``lif`` node (module docstring)."""
    tau, theta, r, rule = lif_attrs(node, lambda msg: _fail(node, msg))
    vth = theta if rule == ">" else float(np.nextafter(theta, -np.inf))
    return 1.0 / tau, r / tau, vth


GAIN_CARRIERS = ("conv2d", "spiking_attention")


def _input_gains(graph: Graph) -> Dict[str, float]:
    """conv2d / spiking_attention node -> the factor its output is scaled by in Lava: the
    input gain ``r / tau`` of the LIF it feeds (1.0 when it feeds no LIF). Checks that
    every LIF is fed by such nodes only and that every conv bias has a LIF to carry it."""
    gains: Dict[str, float] = {}
    for node in graph.by_op("lif"):
        _, gain, _ = lif_lava_params(node)
        for i in node.inputs:
            src = graph[i]
            if src.op not in GAIN_CARRIERS:
                raise _fail(node, f"input '{i}' is a {src.op}; the floating-point Lava LIF "
                                  "takes conv2d or spiking_attention inputs only (the gain "
                                  "r/tau and the bias fold into them)")
            lifs = graph.consumers(i)
            if len(lifs) != 1:
                raise _fail(src, f"feeds {[n.name for n in lifs]}; a node whose output goes "
                                 "to a LIF must feed only that LIF (it carries the LIF's gain)")
            gains[i] = gain
    for node in graph.by_op(*GAIN_CARRIERS):
        if node.name in gains:
            continue
        b = node.params.get("bias")
        if b is not None and np.any(np.asarray(b) != 0):
            raise _fail(node, "has a bias but feeds no LIF (Lava's Conv has no bias; the "
                              "float backend moves it into the LIF it feeds)")
        gains[node.name] = 1.0
    return gains


def _lif_stage_params(graph: Graph, node: Node, gain: float, lag: int,
                      time_steps: int) -> Dict[str, Any]:
    dv, _, vth = lif_lava_params(node)
    bias = np.zeros(tuple(node.shape), dtype=np.float64)
    for i in node.inputs:
        b = graph[i].params.get("bias")
        if b is not None:
            bias = bias + gain * np.asarray(b, dtype=np.float64).reshape(-1, 1, 1)
    return dict(shape=lava_shape(node.shape), du=1.0, dv=dv, vth=vth,
                bias_mant=np.ascontiguousarray(bias.transpose(2, 1, 0)), bias_exp=0.0,
                reset_interval=int(time_steps),
                reset_offset=timing.reset_offset(lag, time_steps))


def _threshold_stage_params(node: Node) -> Dict[str, Any]:
    """``1 where x >= thr`` as a memoryless float LIF: ``du = dv = 1`` make
    ``v = 0 * v + a_in``, and ``v > nextafter(thr, -inf)`` is ``v >= thr``."""
    thr = float(node.attrs["threshold"])
    if not np.isfinite(thr):
        raise _fail(node, f"threshold {thr} must be finite")
    return dict(shape=lava_shape(node.shape), du=1.0, dv=1.0,
                vth=float(np.nextafter(thr, -np.inf)), bias_mant=0.0, bias_exp=0.0)


def lower_float(graph: Graph) -> LavaNetwork:
    """Lower a float graph (after ``compiler.passes.float_passes``) to a plan for
    Lava's floating-point models (target ``lava-sim-float``)."""
    graph.validate()
    for node in graph:
        if node.op not in FLOAT_LOWERED_OPS:
            why = UNSUPPORTED_WHY.get(node.op, "op not supported by the floating-point Lava "
                                               f"target (supported: {sorted(FLOAT_LOWERED_OPS)})")
            raise _fail(node, why)
    T = int(graph.meta["time_steps"])
    gains = _input_gains(graph)
    plan = StagePlan(graph)
    readout: Optional[str] = None
    for node in graph:
        op, lag = node.op, plan.lags.get(node.name)
        src = graph[node.inputs[0]] if node.inputs else None
        if op == "input":
            enc = node.attrs["encoding"]
            if enc not in ("analog", "spikes"):
                raise _fail(node, f"encoding '{enc}' is not a float input encoding "
                                  "('analog' or 'spikes')")
            st = Stage(node.name, "source", node.name, lag,
                       dict(shape=lava_shape(node.shape), encoding=enc))
        elif op == "conv2d":
            a = node.attrs
            w = np.asarray(node.params["weight"], dtype=np.float64) * gains[node.name]
            # graded: float payloads pass unchanged, and several inputs are summed (the
            # IR's fan-in) where binary mode would OR them
            st = Stage(node.name, "conv", node.name, lag, conv_params(
                node, src.shape, w, a["stride"], a["padding"], int(a["groups"]),
                GRADED_MESSAGE_BITS, a.get("dilation", 1), weight_dtype=np.float64),
                plan.aligned_inputs(node, "s_in"))
        elif op == "sumpool2d":
            st = Stage(node.name, "conv", node.name, lag,
                       sumpool_params(node, src, GRADED_MESSAGE_BITS, np.float64),
                       plan.aligned_inputs(node, "s_in"))
        elif op == "lif":
            gain = gains[node.inputs[0]]
            st = Stage(node.name, "lif_reset", node.name, lag,
                       _lif_stage_params(graph, node, gain, lag, T),
                       plan.aligned_inputs(node, "a_in"))
        elif op == "threshold":
            st = Stage(node.name, "lif", node.name, lag, _threshold_stage_params(node),
                       plan.aligned_inputs(node, "a_in"))
        elif op == "spiking_attention":
            # binary q, k, v: the float64 counts are exact integers; the scale and the
            # attention LIF's gain ride on the process's gain
            ins = [(plan.delayed(i, d), role) for (i, d), role in
                   zip(timing.deficits(node, plan.lags).items(), ("q", "k", "v"))]
            st = Stage(node.name, "attention", node.name, lag,
                       dict(shape=lava_shape(node.shape), num_heads=int(node.attrs["num_heads"]),
                            gain=float(node.attrs["scale"]) * gains[node.name]), ins)
        elif op == "sum":
            st = plan.sum_stage(node)
        elif op == "token_time_mean":
            in_node = src
            p = readout_params(graph, node, in_node, np.float64)
            p["divisor"] = T * int(np.prod(in_node.shape[1:]))
            st = Stage(node.name, "readout", node.name, lag,
                       {**p, "time_steps": T, "lag": lag}, plan.aligned_inputs(node, "a_in"))
            readout = st.name
        else:  # affine / output: folded into the readout
            continue
        plan.provide(node, st)
    return plan.network(readout, "float")


__all__: List[str] = ["FLOAT_LOWERED_OPS", "lif_lava_params",
                      "lower_float"]
