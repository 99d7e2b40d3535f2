"""One interpreter for every walk over a graph (the torch.fx ``Interpreter`` pattern).

A subclass defines one ``op_<name>(node, ...)`` handler per op of the levels it serves
(compiler/ops.py). :meth:`Interpreter.run` visits the nodes in topological order and calls
the handler with

- nothing but the subclass's own ``source`` value for a source op (``input``),
- the inputs in role order for ops with ordered roles (``spiking_attention``: q, k, v),
- otherwise ONE value: the fan-in of all inputs, combined by :meth:`fan_in` (a sum, NIR's
  convention; the subclass says in which arithmetic).

It records the values asked for, and drops every value after its last consumer ran, so
memory follows the live set, not the graph. The float executor, the integer reference
executor and the quantizer's value-range analysis are interpreters; so are other analyses
that need a value per node.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Set, Union

from .ir import Graph, IRError, Node
from .ops import OPS

Record = Union[bool, Iterable[str], None]


def where(node: Node) -> str:
    return f"node '{node.name}' ({node.op})"


class Interpreter:
    """Run ``op_<name>`` handlers over a graph. Subclasses set ``name`` (used in errors) and
    override :meth:`fan_in`; the handlers receive and return the subclass's value type."""

    name = "interpreter"

    def __init__(self, graph: Graph):
        self.graph = graph
        self.values: Dict[str, Any] = {}

    # -- what subclasses customise ----------------------------------------------------------
    def fan_in(self, node: Node, inputs: List[Any]) -> Any:
        """Combine several inputs into one (default: Python ``sum`` in input order)."""
        if len(inputs) == 1:
            return inputs[0]
        total = inputs[0]
        for value in inputs[1:]:
            total = total + value
        return total

    def recorded(self, node: Node, value: Any) -> Any:
        """What :meth:`run` keeps for a recorded node (default: the value itself)."""
        return value

    def unsupported(self, node: Node) -> IRError:
        return IRError(f"{where(node)}: the {self.name} does not run this op")

    # -- driver ------------------------------------------------------------------------------
    def handler(self, node: Node):
        fn = getattr(self, f"op_{node.op}", None)
        if fn is None:
            raise self.unsupported(node)
        return fn

    def check_supported(self) -> None:
        """Raise for the first node without a handler, before any work is done."""
        for node in self.graph:
            self.handler(node)

    def call(self, node: Node, source: Any = None) -> Any:
        """Compute one node from the values of its inputs (already in ``self.values``)."""
        fn = self.handler(node)
        spec = OPS[node.op]
        if spec.is_source:
            return fn(node, source)
        ins = [self.values[i] for i in node.inputs]
        if spec.ordered_inputs:
            return fn(node, *ins)
        return fn(node, self.fan_in(node, ins))

    def run(self, source: Any = None, *, record: Record = False,
            keep: Optional[Set[str]] = None) -> Dict[str, Any]:
        """Evaluate the whole graph; return the recorded values (name -> ``recorded(...)``).

        ``record``: True for every node, an iterable of names, or False/None for none.
        ``keep``: names whose values stay in ``self.values`` after the run (the output node's
        always does).
        """
        g = self.graph
        wanted = _wanted(g, record)
        self.check_supported()
        nodes = list(g)
        last_use: Dict[str, int] = {}
        for i, n in enumerate(nodes):
            for src in n.inputs:
                last_use[src] = i
        keep = set(keep or ()) | {g.output_node.name}
        out: Dict[str, Any] = {}
        for i, node in enumerate(nodes):
            value = self.call(node, source)
            self.values[node.name] = value
            if node.name in wanted:
                out[node.name] = self.recorded(node, value)
            for src in node.inputs:
                if last_use.get(src) == i and src not in keep:
                    self.values.pop(src, None)
        return out


def _wanted(graph: Graph, record: Record) -> Set[str]:
    if record is True:
        return set(graph.nodes)
    if record is False or record is None:
        return set()
    wanted = set(record)
    unknown = sorted(wanted - set(graph.nodes))
    if unknown:
        raise IRError(f"cannot record unknown node(s) {unknown}")
    return wanted


__all__ = ["Interpreter", "where"]
