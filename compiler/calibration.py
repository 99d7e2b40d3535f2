"""Calibration: what the quantizer learns from a few real input samples."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np
import torch

from loihi_numerics.grid import detect_input_levels

from .encoding import normalisation
from .float_exec import run_float
from .ir import Graph
from .ops import attr


def detect_input_grid(graph: Graph, x, max_levels: int = 255) -> Optional[int]:
    """Integer levels per unit that encode these (normalised) inputs exactly, or None."""
    node = graph.input_node
    if attr(node, "encoding") != "analog":
        return None
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = x.astype(np.float64)
    stats = normalisation(node)   # per channel [C, 1, 1], as compiler.encoding normalises
    if stats is not None:
        x = (x - stats[0]) / stats[1]
    return detect_input_levels(x, max_levels)


def observed_synaptic_max(graph: Graph, x, batch_size: int = 32,
                          progress: Callable = lambda it: it) -> Dict[str, float]:
    """conv2d name -> the largest |W.x| (bias excluded) seen on the samples ``x`` (float run),
    in batches (the float run records every conv's output: memory grows with the batch)."""
    convs = [n for n in graph.by_op("conv2d")]
    out = {node.name: 0.0 for node in convs}
    starts = range(0, len(x), batch_size)
    for start in progress(starts):
        result = run_float(graph, x[start:start + batch_size], record=list(out),
                           dtype=torch.float64)
        for node in convs:
            y = result.outputs[node.name]
            bias = node.params.get("bias")
            if bias is not None:
                y = y - torch.as_tensor(bias, dtype=y.dtype).reshape(1, 1, -1, 1, 1)
            out[node.name] = max(out[node.name], float(y.abs().max()))
    return out
