"""Latency bookkeeping: algorithmic time versus Lava time.

The reference executor runs every node at algorithmic step t on its inputs of
the same step t. In Lava every Conv hop costs one step, everything else (LIF,
LIFReset, the attention process, DelayedSum, the Readout) none. The *lag* of a
node is the number of Lava steps by which its output trails algorithmic time:
with samples streamed back to back, one every T steps, the node's output for
algorithmic step t (1-based) of sample s (0-based) leaves its process at Lava
step (1-based)

    step(s, t) = s * T + t + lag

The input source has lag 0. A node's lag is the largest lag among its inputs
(the others are delayed to it: ``deficits``) plus its own hop cost
(:data:`HOP_COST`, one entry per op of the registry that runs inside the Lava
time loop, at either level; ops computed once after the loop -- the head --
have none).

**Stock delay relays.** A neuron (``loihi_lif`` / ``lif`` / memoryless ``threshold``)
with several synaptic inputs (Conv stages: ``conv2d`` / ``sumpool2d``) receives them
with different lags when their spikes come from different depths (the spike-driven
family's membrane shortcut, the AND of two spike maps). An early synaptic node whose
input is a spike map and whose only reader is that neuron is *retimed*
(:func:`spike_relays`): its input spikes pass through ``d`` relays first -- each an
identity Conv (one step) plus a memoryless LIF that fires on any input (no step) --
so the Conv is built from spikes ``d`` steps late and its output arrives with the
neuron's latest input. Its lag (what probes re-align with) grows by ``d``; nothing
else changes, because the neuron was its only reader. Other early inputs (graded
ones, e.g. a conv of the image, or a conv read by several nodes) keep the
``DelayedSum`` delay line of :mod:`deploy.lava.lowering`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from compiler.ir import Graph, IRError, Node
from compiler.ops import FLOAT, OPS, QUANTIZED, ops_at

from deploy.lava.attention.process import ATTENTION_DELAY

#: ops that run inside the Lava time loop, at either level, after the float passes
#: (what the lowerings see); ``after_time_loop`` ops (affine, output) run in the Readout
IN_LOOP_OPS: Tuple[str, ...] = tuple(
    op for op in OPS
    if op in set(ops_at(FLOAT, after_passes=True)) | set(ops_at(QUANTIZED))
    and not OPS[op].after_time_loop)

#: Lava steps that each in-loop op adds to the path (Conv processes delay by one step).
HOP_COST: Dict[str, int] = {
    "input": 0,
    "conv2d": 1,               # Conv: a_out at t is what it accumulated at t - 1
    "sumpool2d": 1,            # a Conv with an all-ones kernel
    "loihi_lif": 0,            # LIFReset
    "lif": 0,                  # the float IR's LIF (LIFReset, floating-point target)
    "threshold": 0,            # a memoryless LIF
    "spiking_attention": ATTENTION_DELAY,
    "sum": 0,                  # DelayedSum
    "token_time_sum": 0,       # Readout
    "token_time_mean": 0,      # Readout (floating-point target)
}


def hop_cost(node: Node) -> int:
    try:
        return HOP_COST[node.op]
    except KeyError:
        raise IRError(f"node '{node.name}' ({node.op}): no Lava hop cost for this op "
                      "(deploy/lava/timing.py HOP_COST)") from None


#: neuron ops whose several synaptic inputs are aligned with stock relays
NEURON_OPS: Tuple[str, ...] = ("loihi_lif", "lif", "threshold")
#: ops lowered to one Conv process (the synapses a relay chain can precede)
SYNAPSE_OPS: Tuple[str, ...] = ("conv2d", "sumpool2d")


def chain_lags(graph: Graph) -> Dict[str, int]:
    """Lag of every in-loop node along the plain chain (before any relay retiming):
    the latest input's lag plus the node's own hop."""
    lags: Dict[str, int] = {}
    for node in graph:
        if OPS[node.op].after_time_loop:
            continue  # affine / output: after the loop, in the readout
        base = max((lags[i] for i in node.inputs), default=0)
        lags[node.name] = base + hop_cost(node)
    return lags


def _relayable(graph: Graph, synapse: Node, neuron: Node) -> bool:
    """Can ``synapse`` (an input of ``neuron``) be rebuilt from relayed spikes? It must be
    one Conv stage reading one spike map, and ``neuron`` must be its only reader (then
    retiming it changes no other node's timing)."""
    if synapse.op not in SYNAPSE_OPS or len(synapse.inputs) != 1:
        return False
    src = graph[synapse.inputs[0]]
    if not OPS[src.op].emits_spikes(src.attrs):
        return False            # graded input: a relay LIF would binarise it
    readers = graph.consumers(synapse.name)
    return len(readers) == 1 and readers[0] is neuron and neuron.inputs.count(synapse.name) == 1


def spike_relays(graph: Graph,
                 lags: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Synaptic node -> number of relays its input spikes pass through so that it arrives
    with the latest input of the neuron it feeds (module docstring). ``lags``: the
    :func:`chain_lags` (computed when omitted)."""
    lags = chain_lags(graph) if lags is None else lags
    relays: Dict[str, int] = {}
    for node in graph:
        if node.op not in NEURON_OPS or len(node.inputs) < 2:
            continue
        for name, d in deficits(node, lags).items():
            if d > 0 and _relayable(graph, graph[name], node):
                relays[name] = d      # one relay per step: its Conv's hop
    return relays


def node_lags(graph: Graph) -> Dict[str, int]:
    """Lag of every node that runs inside the Lava time loop, as lowered: the chain lags
    with every relayed synaptic node retimed to its neuron's latest input."""
    lags = chain_lags(graph)
    for name, d in spike_relays(graph, lags).items():
        lags[name] += d
    return lags


def deficits(node: Node, lags: Dict[str, int]) -> Dict[str, int]:
    """Input name -> steps it must be delayed so that all inputs align."""
    target = max(lags[i] for i in node.inputs)
    return {i: target - lags[i] for i in node.inputs}


def reset_offset(lag: int, time_steps: int) -> int:
    """``LIFReset.reset_offset`` for a neuron layer with this lag.

    LIFReset zeroes u and v (before integrating) at Lava steps with
    ``step % T == offset % T``. A sample's first input reaches the layer at
    ``s * T + 1 + lag``; resetting exactly then makes the layer start every
    sample from the reference's zero state, whatever it integrated before
    (bias during pipeline fill, the previous sample).
    """
    return (lag + 1) % time_steps


def total_steps(num_samples: int, time_steps: int, lags: Dict[str, int]) -> int:
    """Lava steps to stream ``num_samples`` samples and drain the pipeline."""
    return num_samples * time_steps + max(lags.values(), default=0)
