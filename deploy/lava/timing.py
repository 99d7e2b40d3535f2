"""Latency bookkeeping: algorithmic time versus Lava time.

The reference executor runs every node at algorithmic step t on its inputs of
the same step t. In Lava every Conv/Dense hop costs one step, everything else
(LIF, LIFReset, the attention process, DelayedSum) none. The *lag* of a node
is the number of Lava steps by which its output trails algorithmic time: with
samples streamed back to back, one every T steps, the node's output for
algorithmic step t (1-based) of sample s (0-based) leaves its process at Lava
step (1-based)

    step(s, t) = s * T + t + lag

The input source has lag 0. A node's lag is the largest lag among its inputs
(the others are delayed to it: ``deficits``) plus its own hop cost.
"""
from __future__ import annotations

from typing import Dict

from compiler.ir import Graph, Node

from deploy.lava.attention.process import ATTENTION_DELAY

#: Lava steps that each op adds to the path (Conv processes delay by one step).
HOP_COST: Dict[str, int] = {
    "input": 0,
    "conv2d": 1,
    "sumpool2d": 1,
    "loihi_lif": 0,
    "lif": 0,                  # the float IR's LIF (floating-point target)
    "threshold": 0,
    "spiking_attention": ATTENTION_DELAY,
    "sum": 0,
    "token_time_sum": 0,
    "token_time_mean": 0,      # the float IR's readout (floating-point target)
}


def node_lags(graph: Graph) -> Dict[str, int]:
    """Lag of every node that runs inside the Lava time loop."""
    lags: Dict[str, int] = {}
    for node in graph:
        if node.op not in HOP_COST:
            continue  # affine / output: after the loop, in the readout
        base = max((lags[i] for i in node.inputs), default=0)
        lags[node.name] = base + HOP_COST[node.op]
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
