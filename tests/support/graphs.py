"""Hand-built graphs for unit tests."""
from __future__ import annotations

from typing import Iterable, Optional

from compiler.ir import Graph, Node


def build_graph(nodes: Iterable[Node], time_steps: int = 2, stage: Optional[str] = None) -> Graph:
    """A validated graph of ``nodes`` (in topological order) running ``time_steps`` steps;
    ``stage`` "float" or "quantized" (None: no stage in the meta, which reads as float)."""
    meta = {"time_steps": time_steps}
    if stage is not None:
        meta["stage"] = stage
    g = Graph(meta=meta)
    for n in nodes:
        g.add(n)
    return g.validate()
