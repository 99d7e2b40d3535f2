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

from spikformer_neuro.loihi_grid import SPIKE_RULES

# op -> (required params, required attrs). Params are numpy arrays; attrs are JSON values.
OP_SCHEMA: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    # Float-level ops (what the frontend emits; NIR vocabulary where NIR has the op).
    "input": ((), ("encoding",)),                      # encoding: "analog" | "spikes"
    "conv2d": (("weight",), ("stride", "padding", "groups")),   # optional param "bias"
    "batchnorm": (("gamma", "beta", "mean", "var"), ("eps",)),
    # LIF, hard reset to 0: H = V + (r X - V)/tau, fire on H >= V_th (paper) or H > V_th.
    # Optional attrs "r" (input gain, default 1) and "spike_if" (">=" default, or ">").
    "lif": ((), ("tau", "v_threshold")),
    "maxpool2d": ((), ("kernel", "stride", "padding")),
    "sumpool2d": ((), ("kernel", "stride", "padding")),
    "threshold": ((), ("threshold",)),                 # spike where input >= threshold
    "spiking_attention": ((), ("num_heads", "scale")),  # inputs (q, k, v): Q.K^T.V.scale per head
    "sum": ((), ()),                                   # graded residual sum of its inputs
    "token_time_mean": ((), ()),                       # mean over tokens (H*W) and time steps
    "affine": (("weight",), ()),                       # optional param "bias"
    "output": ((), ()),
    # Loihi-level ops (what quantization emits).
    "loihi_lif": (("du", "dv", "vth", "bias_mant", "bias_exp"), ()),
    "token_time_sum": ((), ()),                        # integer accumulation over tokens and time
}
ORDERED_INPUTS = {"spiking_attention": ("q", "k", "v")}
SOURCE_OPS = {"input"}


class IRError(ValueError):
    """An invalid graph; the message names the node and what is wrong."""


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

    # -- rewriting --------------------------------------------------------------------------
    def replace_nodes(self, new_nodes: Iterable[Node]) -> "Graph":
        """A new graph with the same meta and the given nodes (which must be topological)."""
        g = Graph(meta=copy.deepcopy(self.meta))
        for node in new_nodes:
            g.add(node)
        return g

    # -- checks -----------------------------------------------------------------------------
    def validate(self) -> "Graph":
        seen: set = set()
        for node in self:
            where = f"node '{node.name}' ({node.op})"
            if node.op not in OP_SCHEMA:
                raise IRError(f"{where}: unknown op; known ops: {sorted(OP_SCHEMA)}")
            need_params, need_attrs = OP_SCHEMA[node.op]
            for p in need_params:
                if p not in node.params:
                    raise IRError(f"{where}: missing parameter '{p}'")
                if not isinstance(node.params[p], np.ndarray):
                    raise IRError(f"{where}: parameter '{p}' must be a numpy array")
            for a in need_attrs:
                if a not in node.attrs:
                    raise IRError(f"{where}: missing attribute '{a}'")
            for i in node.inputs:
                if i not in seen:
                    raise IRError(f"{where}: input '{i}' is not an earlier node")
            if node.op in SOURCE_OPS and node.inputs:
                raise IRError(f"{where}: an input node takes no inputs")
            if node.op not in SOURCE_OPS and not node.inputs:
                raise IRError(f"{where}: has no inputs")
            roles = ORDERED_INPUTS.get(node.op)
            if roles and len(node.inputs) != len(roles):
                raise IRError(f"{where}: needs inputs {roles}, got {node.inputs}")
            if not node.shape or any(int(s) < 1 for s in node.shape):
                raise IRError(f"{where}: invalid shape {node.shape}")
            seen.add(node.name)
        self.input_node, self.output_node  # noqa: B018 - exactly one of each
        return self

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
    r = float(node.attrs.get("r", 1.0))
    rule = node.attrs.get("spike_if", ">=")
    if rule not in SPIKE_RULES:
        raise bad(f"spike_if must be one of {SPIKE_RULES}, got {rule!r}")
    if not (tau >= 1.0 and np.isfinite(tau)):
        raise bad(f"tau {tau} must be a finite number >= 1 (time steps)")
    if not (np.isfinite(r) and np.isfinite(theta)):
        raise bad(f"r {r} and v_threshold {theta} must be finite")
    return tau, theta, r, rule
