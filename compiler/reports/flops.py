"""Synaptic layers of a graph and their operation counts (the paper's "FLOPs").

Counting convention (the one that reproduces the paper's 8-512 energy, docs/reports.md):
one multiply-accumulate is one operation (a MAC, not 2 FLOPs), per sample and per time step.

| op | synaptic layer(s) | MACs per sample per step | input whose activity scales it |
|---|---|---|---|
| ``conv2d`` k x k | conv | ``C_out H' W' * (C_in / groups) k^2`` | its input (summed inputs) |
| ``conv2d`` 1 x 1 | linear (token-wise) | ``D_out N * D_in`` | its input |
| ``spiking_attention`` | ``<name>.qk``: Q.K^T | ``heads * N * N * d = N^2 D`` | q |
|                     | ``<name>.av``: (Q.K^T).V | ``N^2 D`` | v |
| ``affine`` (head) | head | ``D * K`` | the readout's input (residual stream) |

The attention is counted in the paper's order, (Q.K^T).V; each product has one binary
operand that plays the part of the spikes (the other acts as the weights), so its activity
is the rate that turns MACs into synaptic operations. Pooling has no weights and is not a
synaptic layer in the paper's count (on Loihi the sum pool is a Conv; compiler/resources.py
counts its synapses).

A spike-driven network's membrane terms are copied for every neuron that reads them
(``compiler.passes.distribute_membrane``): the conv is counted once, as the paper counts it,
by its first copy (the copies exist on Loihi: ``compiler.resources`` counts their synapses).

Levels: every op of float graphs (before and after the float passes: the paper tables count
the frontend's graph) and of quantized graphs (same node names). :class:`SynapticCounter` has
one ``op_<name>`` handler per op of both levels (tests/test_compiler/test_resources.py asserts that none is
missing); ops without synapses return no layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..encoding import SEQUENCE_ENCODINGS
from ..ir import Graph, IRError, Node
from ..ops import OPS
from ..passes.distribute_membrane import term_origin


@dataclass(frozen=True)
class SynapticLayer:
    name: str                  # node name (attention: node name + ".qk" / ".av")
    kind: str                  # "conv", "linear", "attention", "head"
    macs: int                  # multiply-accumulates per sample per time step
    inputs: Tuple[str, ...]    # nodes whose (summed) activity drives the layer
    analog: bool = False       # True: reads the analog/graded image (counted as MACs, not SOPs)


def _reads_analog_input(node: Node) -> bool:
    """A source whose values are not spikes: the analog (float) or graded (quantized) image.
    Event counts are events: each one is an accumulate, so their mean count per pixel and
    step is the rate that turns MACs into synaptic operations, as for binary events."""
    return OPS[node.op].is_source and node.attrs.get("encoding") not in SEQUENCE_ENCODINGS


class SynapticCounter:
    """``op_<name>(node)`` -> the synaptic layers of one node (a list: the attention is two
    products), one handler per op of the float and quantized levels."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.counted: set = set()     # convs counted (a membrane term's copies count once)

    def layers(self) -> List[SynapticLayer]:
        out: List[SynapticLayer] = []
        for node in self.graph:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise IRError(f"node '{node.name}' ({node.op}): the FLOP count has no rule "
                              "for this op")
            out.extend(handler(node))
        return out

    # -- synaptic layers ---------------------------------------------------------------------
    def op_conv2d(self, node: Node) -> List[SynapticLayer]:
        # distribute_membrane copies a membrane term's conv for every neuron that reads it;
        # the paper counts the conv once: the first copy (or the original) stands for it
        origin = term_origin(node.name) or node.name
        if origin in self.counted:
            return []
        self.counted.add(origin)
        w = node.params["weight"]
        if w.ndim != 4:
            raise IRError(f"node '{node.name}' (conv2d): weight must be 4-D [out, in/groups, kh, "
                          f"kw], got shape {list(w.shape)}")
        fan_in = int(np.prod(w.shape[1:]))  # (C_in / groups) * kh * kw
        macs = int(np.prod(node.shape)) * fan_in
        kind = "linear" if w.shape[2:] == (1, 1) else "conv"
        analog = any(_reads_analog_input(self.graph[i]) for i in node.inputs)
        return [SynapticLayer(node.name, kind, macs, tuple(node.inputs), analog)]

    def op_spiking_attention(self, node: Node) -> List[SynapticLayer]:
        d_model, h, w = node.shape
        tokens = h * w
        per_product = tokens * tokens * d_model  # heads * N * N * (D / heads)
        q, _, v = node.inputs
        return [SynapticLayer(f"{node.name}.qk", "attention", per_product, (q,)),
                SynapticLayer(f"{node.name}.av", "attention", per_product, (v,))]

    def op_affine(self, node: Node) -> List[SynapticLayer]:
        readout = self.graph[node.inputs[0]]
        if not OPS[readout.op].reduces_time:
            raise IRError(f"node '{node.name}' (affine): expected the head after the "
                          f"token/time readout, found input '{readout.name}' ({readout.op})")
        return [SynapticLayer(node.name, "head", int(node.params["weight"].size),
                              tuple(readout.inputs))]

    # -- no synapses: neurons, pooling (no weights), BatchNorm (folded into the conv), sums,
    # the readout (counted with the head), the source and the logits -------------------------
    def no_synapses(self, node: Node) -> List[SynapticLayer]:
        return []

    op_input = op_batchnorm = op_lif = op_loihi_lif = no_synapses
    op_maxpool2d = op_sumpool2d = op_threshold = op_sum = no_synapses
    op_token_mean = op_token_time_mean = op_token_time_sum = op_output = no_synapses


def synaptic_layers(graph: Graph) -> List[SynapticLayer]:
    """Every synaptic layer in topological order (attention as two products)."""
    return SynapticCounter(graph).layers()


def first_conv(layers: List[SynapticLayer]) -> SynapticLayer:
    """The layer that reads the image (the one the paper counts as MACs)."""
    for layer in layers:
        if layer.analog or layer.kind in ("conv", "linear"):
            return layer
    raise IRError("the graph has no convolution reading the input")
