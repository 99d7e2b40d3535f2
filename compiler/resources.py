"""Size of a quantized network (neurons, synapses) and an estimate of its Loihi 2 footprint."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional

import numpy as np

from .ir import Graph

# Public Loihi 2 figures (Intel; /work/shared/notes/lava.md). Per-core limits are DERIVED by
# dividing the per-chip figures by the core count: an estimate, not a datasheet value.
CHIP_NEURO_CORES = 128
CHIP_EMBEDDED_CORES = 6          # x86 (Lakemont) cores for what neuro-cores cannot do
CHIP_NEURONS = 1_000_000
CHIP_SYNAPSES = 120_000_000
CORE_NEURONS = CHIP_NEURONS // CHIP_NEURO_CORES     # 7812
CORE_SYNAPSES = CHIP_SYNAPSES // CHIP_NEURO_CORES   # 937 500

ASSUMPTIONS = [
    f"public per-chip figures: {CHIP_NEURO_CORES} neuro-cores, {CHIP_EMBEDDED_CORES} embedded "
    f"x86 cores, {CHIP_NEURONS:,} neurons and {CHIP_SYNAPSES:,} synapses per chip",
    f"per-core limits derived as per-chip / {CHIP_NEURO_CORES}: {CORE_NEURONS:,} neurons and "
    f"{CORE_SYNAPSES:,} synapses; real limits depend on the neuron model and the synapse "
    "encoding, which share each core's memory",
    "every population (LIF layer, pool threshold, residual join) gets its own cores; a "
    "population's input synapses live on its cores",
    "'shared' bound: convolution weights stored once and the layer split by output channels, "
    "so each core holds only its channels' kernels (optimistic); 'dense' bound: every "
    "connection stored (no weight sharing; pessimistic)",
    "residual joins and the attention LIF's input from the embedded cores count one identity "
    "synapse per neuron and input; pools as depthwise all-ones kernels",
    "spiking attention, the input injection and the readout/head run off the neuro-cores "
    "(docs/lava-backend.md)",
    "nothing here was checked on Loihi 2 hardware",
]


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


def _population_synapses(graph: Graph, node) -> tuple:
    """(stored, dense) input synapses of one on-chip population."""
    neurons = int(np.prod(node.shape))
    if node.op == "sum":                        # graded relay: identity from every input
        return neurons * len(node.inputs), neurons * len(node.inputs)
    src = graph[node.inputs[0]]
    if src.op == "conv2d":
        w = src.params["weight"]
        return int(w.size), neurons * int(np.prod(w.shape[1:]))
    if src.op == "sumpool2d":
        k = src.attrs["kernel"]
        kk = k * k if isinstance(k, int) else int(k[0]) * int(k[1])
        return int(src.shape[0]) * kk, neurons * kk
    return neurons, neurons                     # attention (from the embedded cores): identity


def _cores(neurons: int, synapses: int) -> int:
    return max(1, math.ceil(neurons / CORE_NEURONS), math.ceil(synapses / CORE_SYNAPSES))


def _chips(cores: int, neurons: int, synapses: int) -> int:
    return max(math.ceil(cores / CHIP_NEURO_CORES), math.ceil(neurons / CHIP_NEURONS),
               math.ceil(synapses / CHIP_SYNAPSES))


def loihi_estimate(graph: Graph, rates: Optional[Mapping[str, float]] = None) -> dict:
    """Estimated Loihi 2 neuro-cores and chips, per population and in total, with the parts
    that need the embedded x86 cores or the host. ``rates`` (node -> mean spikes per neuron
    per step) adds the expected spike traffic to and from the embedded cores."""
    populations: List[dict] = []
    for node in graph.by_op("loihi_lif", "threshold", "sum"):
        neurons = int(np.prod(node.shape))
        stored, dense = _population_synapses(graph, node)
        populations.append({"name": node.name, "op": node.op, "neurons": neurons,
                            "synapses_stored": stored, "synapses_dense": dense,
                            "cores_shared": _cores(neurons, stored),
                            "cores_dense": _cores(neurons, dense)})
    total = {k: sum(p[k] for p in populations) for k in
             ("neurons", "synapses_stored", "synapses_dense", "cores_shared", "cores_dense")}
    total["chips_shared"] = _chips(total["cores_shared"], total["neurons"],
                                   total["synapses_stored"])
    total["chips_dense"] = _chips(total["cores_dense"], total["neurons"], total["synapses_dense"])
    return {"estimate": True, "assumptions": ASSUMPTIONS, "populations": populations,
            "total": total, "off_chip": _off_chip(graph, rates or {})}


def _off_chip(graph: Graph, rates: Mapping[str, float]) -> List[dict]:
    parts: List[dict] = []
    inp = graph.input_node
    parts.append({"node": inp.name, "where": "host",
                  "why": "input injection (host -> chip spikes; graded 8-bit for images)",
                  "values_per_step": int(np.prod(inp.shape))})
    embedded: Dict[str, object] = {}
    for node in graph.by_op("spiking_attention"):
        n_values = int(np.prod(node.shape))
        entry = {"node": node.name, "where": "embedded x86 cores (or host)",
                 "why": "Q.(K^T.V) multiplies two activities; a neuro-core only multiplies "
                        "spikes by stored weights",
                 "spikes_out_per_step_max": 3 * n_values,
                 "graded_in_per_step": n_values}
        if all(i in rates for i in node.inputs):
            entry["spikes_out_per_step_measured"] = sum(rates[i] for i in node.inputs) * n_values
        parts.append(entry)
        embedded[node.name] = entry
    for node in graph.by_op("token_time_sum", "token_time_mean"):
        heads = [c.name for c in graph.consumers(node.name)]
        parts.append({"node": node.name, "where": "host (or embedded cores)",
                      "why": f"token/time readout and head {heads}: the logits need more "
                             "than 24 bits",
                      "values_per_step": int(np.prod(graph[node.inputs[0]].shape))})
    if embedded:
        parts.append({"node": "(summary)", "where": "embedded x86 cores",
                      "why": f"{len(embedded)} attention processes for "
                             f"{CHIP_EMBEDDED_CORES} embedded cores per chip"})
    return parts
