"""Give every neuron its own synapses: the membrane shortcut as fan-in (spike-driven family).

The Spike-driven Transformer adds conv outputs -- membrane inputs, real values -- into one
residual stream (``sum`` of ``conv2d``) that several LIFs read, and pools that stream over
the tokens (``token_mean``) for the head's LIF. No neuro-core holds such a stream: a neuron
integrates the currents of its own synapses, and a synapse reads spikes. Since every step
before a LIF is linear, the stream a LIF reads is the sum of its terms, each a conv of
spikes, so this pass gives each reading LIF a copy of every term's conv (several inputs into
one node are summed: the IR's and NIR's convention), and composes a token mean with each
term's conv into one conv whose kernel covers the term's input map:

    mean_o (W * x)[d, o] + b[d]  =  sum_{c, p} W'[d, c, p] x[c, p] + b[d],
    W'[d, c, p] = (1 / N_out) * sum over the output positions o whose window holds p of
                  W[d, c, p - o * stride + padding]

Copies are named ``<reader>.from.<conv>`` (``...mean`` for a composed one, which also carries
the attr ``token_mean``: the quantizer rounds its kernel along the token positions). ``sum`` nodes
whose inputs are spikes (Spikformer's residual stream) are left alone: only sums of conv
outputs are membrane streams. Afterwards no ``token_mean`` and no membrane ``sum`` remain;
every conv2d feeds exactly one LIF (what the quantize pass maps onto one integer grid).
Runs after ``fold_batchnorm`` (a term is a folded conv).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..ir import Graph, IRError, Node
from ..layout import pair

NEURONS = ("lif", "threshold")
COPY_MARK = ".from."     # <reader>.from.<conv>[.mean]
MEAN_MARK = ".mean"


def term_origin(name: str) -> Optional[str]:
    """The conv a copy was made from (None for a node this pass did not make)."""
    if COPY_MARK not in name:
        return None
    origin = name.split(COPY_MARK, 1)[1]
    return origin[:-len(MEAN_MARK)] if origin.endswith(MEAN_MARK) else origin


def _is_stream(graph: Graph, node: Node) -> bool:
    """A membrane stream: a token_mean, or a sum whose inputs are conv2d outputs or streams."""
    if node.op == "token_mean":
        return True
    if node.op != "sum":
        return False
    return all(graph[i].op == "conv2d" or _is_stream(graph, graph[i]) for i in node.inputs)


def _terms(graph: Graph, name: str, mean: bool = False) -> List[Tuple[Node, bool]]:
    """The conv2d terms of a stream, each with whether a token mean follows it."""
    node = graph[name]
    if node.op == "conv2d":
        return [(node, mean)]
    if node.op == "token_mean":
        if mean:
            raise IRError(f"node '{name}' (token_mean): pools an already pooled stream")
        return [t for i in node.inputs for t in _terms(graph, i, True)]
    if node.op == "sum" and _is_stream(graph, node):
        return [t for i in node.inputs for t in _terms(graph, i, mean)]
    raise IRError(f"node '{name}' ({node.op}): a membrane stream may only add conv2d outputs "
                  "(and pool them over tokens)")


def token_mean_weight(conv: Node, in_shape: Tuple[int, ...]) -> np.ndarray:
    """The full-map kernel of ``token_mean(conv(x))`` (module docstring), float64."""
    where = f"node '{conv.name}' ({conv.op})"
    if int(conv.attrs.get("groups", 1)) != 1:
        raise IRError(f"{where}: a grouped conv cannot be pooled into a full-map kernel")
    w = np.asarray(conv.params["weight"], dtype=np.float64)
    kh, kw = w.shape[2:]
    sh, sw = pair(conv.attrs["stride"], where, "stride")
    ph, pw = pair(conv.attrs["padding"], where, "padding")
    _, h, wd = in_shape
    _, ho, wo = conv.shape
    out = np.zeros((w.shape[0], w.shape[1], h + 2 * ph, wd + 2 * pw))
    for oy in range(ho):
        for ox in range(wo):
            out[:, :, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw] += w
    return np.ascontiguousarray(out[:, :, ph:ph + h, pw:pw + wd] / (ho * wo))


def _copy(graph: Graph, reader: Node, conv: Node, mean: bool) -> Node:
    name = f"{reader.name}{COPY_MARK}{conv.name}" + (MEAN_MARK if mean else "")
    params = {k: np.array(v, copy=True) for k, v in conv.params.items()}
    if not mean:
        return Node(name, "conv2d", list(conv.inputs), tuple(conv.shape), params,
                    dict(conv.attrs))
    params["weight"] = token_mean_weight(conv, graph[conv.inputs[0]].shape)
    return Node(name, "conv2d", list(conv.inputs), (conv.shape[0], 1, 1), params,
                {**conv.attrs, "stride": [1, 1], "padding": [0, 0], "token_mean": True})


def distribute_membrane(graph: Graph) -> Graph:
    """A new graph in which every neuron reads its own conv copies instead of membrane streams
    (a no-op for graphs without them)."""
    streams = {n.name for n in graph if _is_stream(graph, n)}
    if not streams:
        out = graph.replace_nodes(n.copy() for n in graph)
    else:
        nodes: List[Node] = []
        for node in graph:
            if node.name in streams:
                continue
            if any(i in streams for i in node.inputs):
                if node.op not in NEURONS:
                    raise IRError(f"node '{node.name}' ({node.op}) reads the membrane stream "
                                  f"{[i for i in node.inputs if i in streams]}; only a neuron "
                                  f"({', '.join(NEURONS)}) can integrate membrane inputs")
                inputs: List[str] = []
                for i in node.inputs:
                    if i not in streams:
                        inputs.append(i)
                        continue
                    for conv, mean in _terms(graph, i):
                        copy = _copy(graph, node, conv, mean)
                        if copy.shape != node.shape:
                            raise IRError(f"node '{node.name}' ({node.op}): its term "
                                          f"'{conv.name}' has shape {list(copy.shape)}, the "
                                          f"neuron {list(node.shape)}")
                        nodes.append(copy)
                        inputs.append(copy.name)
                node = node.copy()
                node.inputs = inputs
                nodes.append(node)
            else:
                nodes.append(node.copy())
        nodes = _without_dead(nodes, graph.output_node.name)
        out = graph.replace_nodes(nodes)
    out.meta["passes"] = [*graph.meta.get("passes", []), "distribute_membrane"]
    return out.validate()


def _without_dead(nodes: List[Node], output: str) -> List[Node]:
    """Drop the nodes nothing reads any more (the terms' originals that only fed streams)."""
    by_name: Dict[str, Node] = {n.name: n for n in nodes}
    live = {output}
    for n in reversed(nodes):
        if n.name in live:
            live.update(n.inputs)
    return [n for n in nodes if n.name in live and n.name in by_name]
