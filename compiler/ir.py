"""The compiler's graph IR: typed nodes with an op, an output shape, arrays and attributes.

Conventions (docs/architecture.md has the full table of ops):
- Shapes are per sample and per time step, without batch or time: (C, H, W) for maps, (K,)
  for vectors. The transformer part stays in map layout: a token-wise Linear is a 1x1
  ``conv2d`` over the (D, H, W) token grid, whose H*W cells are the tokens (row-major).
- Several inputs into one node are summed (NIR's convention), except for ops with ordered
  roles: ``spiking_attention`` takes exactly (q, k, v) in that order.
- Nodes are stored in topological order; ``Graph.validate`` checks every invariant and names
  the node that breaks one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from loihi_numerics.grid import SPIKE_RULES

from .ops import META, OPS, QUANTIZED, Level, attr



class IRError(ValueError):
    """An invalid graph; the message names the node and what is wrong."""


class OptionError(IRError):
    """A caller-supplied option is missing or wrong. ``option`` is the Python parameter's
    name (``time_steps``); library messages name that, and the command-line layer adds its
    flag (``--time-steps``), so the compiler never quotes the CLI."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


@dataclass
class Node:
    name: str
    op: str
    inputs: List[str]
    shape: Tuple[int, ...]
    params: Dict[str, np.ndarray] = field(default_factory=dict)
    attrs: Dict[str, Any] = field(default_factory=dict)

    def copy(self) -> "Node":
        return Node(self.name, self.op, list(self.inputs), tuple(self.shape),
                    {k: v.copy() for k, v in self.params.items()}, copy.deepcopy(self.attrs))


@dataclass
class Graph:
    """A DAG of nodes in topological order, plus graph-level metadata (time steps, classes…)."""

    nodes: Dict[str, Node] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------
    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise IRError(f"duplicate node name '{node.name}'")
        missing = [i for i in node.inputs if i not in self.nodes]
        if missing:
            raise IRError(f"node '{node.name}' ({node.op}) reads unknown node(s) {missing}; "
                          "add producers before consumers")
        self.nodes[node.name] = node
        return node

    def copy(self) -> "Graph":
        return Graph({n: node.copy() for n, node in self.nodes.items()}, copy.deepcopy(self.meta))

    # -- queries ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise IRError(f"no node named '{name}'") from None

    def consumers(self, name: str) -> List[Node]:
        return [n for n in self if name in n.inputs]

    def by_op(self, *ops: str) -> List[Node]:
        return [n for n in self if n.op in ops]

    @property
    def input_node(self) -> Node:
        found = self.by_op("input")
        if len(found) != 1:
            raise IRError(f"graph must have exactly one input node, found {len(found)}")
        return found[0]

    @property
    def output_node(self) -> Node:
        found = self.by_op("output")
        if len(found) != 1:
            raise IRError(f"graph must have exactly one output node, found {len(found)}")
        return found[0]

    def ops(self) -> List[str]:
        return sorted({n.op for n in self})

    @property
    def level(self) -> Level:
        """QUANTIZED after the quantize pass (meta stage "quantized"), else FLOAT."""
        return QUANTIZED if self.meta.get("stage") == QUANTIZED.value else Level.FLOAT

    @property
    def time_steps(self) -> int:
        """The number of time steps T (``meta["time_steps"]``, checked: an integer >= 1)."""
        if "time_steps" not in self.meta:
            raise IRError("graph meta lacks 'time_steps'")
        problem = META["time_steps"].check(self.meta["time_steps"])
        if problem:
            raise IRError(f"graph meta 'time_steps' {problem}")
        return int(self.meta["time_steps"])

    # -- rewriting --------------------------------------------------------------------------
    def replace_nodes(self, new_nodes: Iterable[Node]) -> "Graph":
        """A new graph with the same meta and the given nodes (which must be topological)."""
        g = Graph(meta=copy.deepcopy(self.meta))
        for node in new_nodes:
            g.add(node)
        return g

    # -- checks -----------------------------------------------------------------------------
    def validate(self) -> "Graph":
        """Check every node against its op's registry entry (compiler/ops.py) and the graph's
        metadata; the first problem raises an IRError naming the node."""
        self._validate_meta()
        level = self.level
        seen: set = set()
        for node in self:
            _validate_node(node, level, seen)
            seen.add(node.name)
        self.input_node, self.output_node  # noqa: B018 - exactly one of each
        return self

    def _validate_meta(self) -> None:
        for key in META.values():
            if key.name not in self.meta:
                if key.required:
                    raise IRError(f"graph meta lacks '{key.name}'")
                continue
            problem = key.check(self.meta[key.name])
            if problem:
                raise IRError(f"graph meta '{key.name}' {problem}")

    def summary(self) -> str:
        lines = []
        for n in self:
            params = ", ".join(f"{k}{list(v.shape)}" for k, v in n.params.items())
            lines.append(f"{n.name:<28} {n.op:<18} {str(list(n.shape)):<16} <- "
                         f"{', '.join(n.inputs) or '-'}  {params}")
        return "\n".join(lines)


def lif_attrs(node: Node, fail: Optional[Callable[[str], Exception]] = None
              ) -> Tuple[float, float, float, str]:
    """(tau, v_threshold, r, spike_if) of a ``lif`` node; missing optional attrs are the
    paper's LIF (r = 1, fire on >=), so older graphs keep their meaning. ``fail(message)``
    builds the error for an invalid value (default: an IRError naming the node)."""
    def bad(msg: str) -> Exception:
        return fail(msg) if fail else IRError(f"node '{node.name}' ({node.op}): {msg}")

    tau, theta = float(node.attrs["tau"]), float(node.attrs["v_threshold"])
    r, rule = float(attr(node, "r")), attr(node, "spike_if")   # registry defaults: 1, ">="
    if rule not in SPIKE_RULES:
        raise bad(f"spike_if must be one of {SPIKE_RULES}, got {rule!r}")
    if not (tau >= 1.0 and np.isfinite(tau)):
        raise bad(f"tau {tau} must be a finite number >= 1 (time steps)")
    if not (np.isfinite(r) and np.isfinite(theta)):
        raise bad(f"r {r} and v_threshold {theta} must be finite")
    return tau, theta, r, rule


def non_finite(values: np.ndarray) -> Optional[str]:
    """None when ``values`` are real, finite numbers; else what is wrong with them (the
    count of NaN and infinite values and the index of the first), for a message."""
    kind = values.dtype.kind
    if kind in "biu":
        return None
    if kind != "f":
        return (f"has dtype {values.dtype}, not real numbers (bool, integer or float)")
    finite = np.isfinite(values)
    if finite.all():
        return None
    nan = int(np.isnan(values).sum())
    inf = int(values.size - finite.sum()) - nan
    first = np.argwhere(~finite)[0] if values.ndim else ()
    parts = ([f"{nan} NaN"] if nan else []) + ([f"{inf} infinite"] if inf else [])
    at = f" (first at index {list(int(i) for i in first)})" if values.ndim else ""
    return f"holds {' and '.join(parts)} value{'s' if nan + inf > 1 else ''}{at}"


def _validate_node(node: Node, level: Level, earlier: set) -> None:
    where = f"node '{node.name}' ({node.op})"
    spec = OPS.get(node.op)
    if spec is None:
        raise IRError(f"{where}: unknown op; known ops: {sorted(OPS)}")
    if level not in spec.levels:
        hint = ("the quantize pass turns float graphs into quantized ones"
                if level is QUANTIZED else "quantized ops come only from the quantize pass")
        raise IRError(f"{where}: not an op of {level.value} graphs; it belongs to "
                      f"{'/'.join(sorted(lv.value for lv in spec.levels))} graphs ({hint})")
    for p in spec.params:
        if p not in node.params:
            raise IRError(f"{where}: missing parameter '{p}'")
    allowed = set(spec.params) | set(spec.optional_params)
    for p, value in node.params.items():
        if p not in allowed:
            raise IRError(f"{where}: unknown parameter '{p}' (the op takes {sorted(allowed)})")
        if not isinstance(value, np.ndarray):
            raise IRError(f"{where}: parameter '{p}' must be a numpy array")
        problem = non_finite(value)
        if problem:
            raise IRError(f"{where}: parameter '{p}' {problem}; a network with non-finite "
                          "weights or statistics cannot be compiled: fix the model (retrain "
                          "it, or repair the layer) and export it again")
    attrs = spec.attr_map
    for name, a in attrs.items():
        if level in a.required_at and name not in node.attrs:
            raise IRError(f"{where}: missing attribute '{name}'")
    for name, value in node.attrs.items():
        a = attrs.get(name)
        if a is None or level not in a.levels:
            known = sorted(k for k, v in attrs.items() if level in v.levels)
            raise IRError(f"{where}: unknown attribute '{name}' for a {level.value} graph "
                          f"(known: {known})")
        problem = a.check(value)
        if problem:
            raise IRError(f"{where}: attribute '{name}' {problem}")
        if a.kind in ("float", "float_list"):
            problem = non_finite(np.asarray(value, dtype=np.float64))
            if problem:
                raise IRError(f"{where}: attribute '{name}' {problem}; it must be a finite "
                              "number: fix the model and export it again")
    for i in node.inputs:
        if i not in earlier:
            raise IRError(f"{where}: input '{i}' is not an earlier node")
    if spec.is_source and node.inputs:
        raise IRError(f"{where}: an input node takes no inputs")
    if not spec.is_source and not node.inputs:
        raise IRError(f"{where}: has no inputs")
    roles = spec.ordered_inputs
    if roles and len(node.inputs) != len(roles):
        raise IRError(f"{where}: needs inputs {roles}, got {node.inputs}")
    if not node.shape or any(int(s) < 1 for s in node.shape):
        raise IRError(f"{where}: invalid shape {node.shape}")
