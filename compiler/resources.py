"""Size of a quantized network: neurons and synapses (stored weights and dense equivalents)."""
from __future__ import annotations

import numpy as np

from .ir import Graph


def network_size(graph: Graph) -> dict:
    """Neurons: every LIF population (incl. the pool thresholds). Synapses: for each conv,
    ``stored`` = weights held (shared across positions), ``dense`` = connections it makes
    (output neurons x fan-in per output); the head counts as a dense layer on the readout."""
    neurons = sum(int(np.prod(n.shape)) for n in graph.by_op("loihi_lif", "threshold"))
    stored = dense = 0
    for node in graph.by_op("conv2d", "affine"):
        w = node.params["weight"]
        stored += int(w.size)
        fan_in = int(np.prod(w.shape[1:]))
        dense += int(np.prod(node.shape)) * fan_in if node.op == "conv2d" else int(w.size)
    return {"neurons": neurons, "synapses_stored": stored, "synapses_dense": dense}
