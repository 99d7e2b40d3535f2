"""Rewrite max-pooling of binary spikes as sum-pooling plus a threshold.

On inputs in {0, 1}, the max over a window is 1 exactly when the window's sum is >= 1, so

    maxpool2d(k, s, p)  ==  threshold(1.0) o sumpool2d(k, s, p)     (zero padding)

holds bit for bit (padding never wins a max of values >= 0, and adds 0 to a sum). Each
``maxpool2d`` node ``P`` becomes ``sumpool2d`` ``P.sum`` (same kernel/stride/padding)
followed by ``threshold`` ``P`` (threshold 1.0), so readers of ``P`` are unchanged. The
rewrite is refused (IRError naming the node) unless the pool reads exactly one producer
whose op emits binary spikes (the registry's ``OPS[op].emits_spikes``: ``lif``, ``threshold``,
an ``input`` of spikes): a max of graded values is not a thresholded sum.
"""
from __future__ import annotations

from typing import List

from ..ir import Graph, IRError, Node
from ..ops import FLOAT, OPS, Output

#: the float ops whose output is always binary spikes (for the refusal message; the check
#: itself asks the registry, which also counts an input of spikes)
BINARY_SPIKE_OPS = tuple(op for op, s in OPS.items()
                         if FLOAT in s.levels and s.output is Output.SPIKES)
#: the pool geometry a sum pool takes over from the max pool (kernel, stride, padding)
POOL_ATTRS = tuple(a.name for a in OPS["sumpool2d"].attrs)


def maxpool_to_sumpool(graph: Graph) -> Graph:
    """A new graph where every maxpool2d of binary spikes is sumpool2d + threshold(1.0)."""
    out: List[Node] = []
    for node in graph:
        if node.op != "maxpool2d":
            out.append(node.copy())
            continue
        where = f"maxpool2d '{node.name}'"
        if len(node.inputs) != 1:
            raise IRError(f"{where}: reads {len(node.inputs)} inputs {node.inputs}, whose sum is "
                          "not binary; max-pool of graded values is not exact as sum+threshold")
        src = graph[node.inputs[0]]
        if not OPS[src.op].emits_spikes(src.attrs):
            raise IRError(f"{where}: its input '{src.name}' is a {src.op}, not a binary spike "
                          f"source ({'/'.join(BINARY_SPIKE_OPS)} or an input of spikes); "
                          "max-pool of graded values is not exact as sum+threshold")
        sum_name = f"{node.name}.sum"
        if sum_name in graph.nodes:
            raise IRError(f"{where}: cannot create '{sum_name}': a node of that name exists")
        attrs = {k: node.attrs[k] for k in POOL_ATTRS}
        out.append(Node(sum_name, "sumpool2d", list(node.inputs), tuple(node.shape), {},
                        {k: (list(v) if isinstance(v, (list, tuple)) else v)
                         for k, v in attrs.items()}))
        out.append(Node(node.name, "threshold", [sum_name], tuple(node.shape), {},
                        {"threshold": 1.0}))
    g = graph.replace_nodes(out)
    g.meta["passes"] = [*graph.meta.get("passes", []), "maxpool_to_sumpool"]
    return g.validate()
