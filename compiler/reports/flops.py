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
counts its synapses). Works on float-level and quantized graphs alike (same node names).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..ir import Graph, IRError, Node


@dataclass(frozen=True)
class SynapticLayer:
    name: str                  # node name (attention: node name + ".qk" / ".av")
    kind: str                  # "conv", "linear", "attention", "head"
    macs: int                  # multiply-accumulates per sample per time step
    inputs: Tuple[str, ...]    # nodes whose (summed) activity drives the layer
    analog: bool = False       # True: reads the analog/graded image (counted as MACs, not SOPs)


def _is_analog_input(node: Node) -> bool:
    return node.op == "input" and node.attrs.get("encoding") in ("analog", "graded")


def _conv_layer(graph: Graph, node: Node) -> SynapticLayer:
    w = node.params["weight"]
    if w.ndim != 4:
        raise IRError(f"node '{node.name}' (conv2d): weight must be 4-D [out, in/groups, kh, kw], "
                      f"got shape {list(w.shape)}")
    fan_in = int(np.prod(w.shape[1:]))  # (C_in / groups) * kh * kw
    macs = int(np.prod(node.shape)) * fan_in
    kind = "linear" if w.shape[2:] == (1, 1) else "conv"
    analog = any(_is_analog_input(graph[i]) for i in node.inputs)
    return SynapticLayer(node.name, kind, macs, tuple(node.inputs), analog)


def _attention_layers(node: Node) -> List[SynapticLayer]:
    d_model, h, w = node.shape
    tokens = h * w
    per_product = tokens * tokens * d_model  # heads * N * N * (D / heads)
    q, _, v = node.inputs
    return [SynapticLayer(f"{node.name}.qk", "attention", per_product, (q,)),
            SynapticLayer(f"{node.name}.av", "attention", per_product, (v,))]


def synaptic_layers(graph: Graph) -> List[SynapticLayer]:
    """Every synaptic layer in topological order (attention as two products)."""
    layers: List[SynapticLayer] = []
    for node in graph:
        if node.op == "conv2d":
            layers.append(_conv_layer(graph, node))
        elif node.op == "spiking_attention":
            layers.extend(_attention_layers(node))
        elif node.op == "affine":
            readout = graph[node.inputs[0]]
            if readout.op not in ("token_time_mean", "token_time_sum"):
                raise IRError(f"node '{node.name}' (affine): expected the head after the "
                              f"token/time readout, found input '{readout.name}' ({readout.op})")
            layers.append(SynapticLayer(node.name, "head", int(node.params["weight"].size),
                                        tuple(readout.inputs)))
    return layers


def first_conv(layers: List[SynapticLayer]) -> SynapticLayer:
    """The layer that reads the image (the one the paper counts as MACs)."""
    for layer in layers:
        if layer.analog or layer.kind in ("conv", "linear"):
            return layer
    raise IRError("the graph has no convolution reading the input")
