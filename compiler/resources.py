"""Size of a quantized network (neurons, synapses) and an estimate of its Loihi 2 footprint.

Level: QUANTIZED graphs (the quantize pass's output, what the Lava backend lowers). Both
:func:`network_size` and :func:`loihi_estimate` are one walk of :class:`Footprint`, an
:class:`~compiler.interpreter.Interpreter` with one ``op_<name>`` handler per quantized op
(tests/test_compiler/test_resources.py asserts that none is missing). A node's value is what its output
costs a population that reads it, as input synapses (:class:`Synapses`): a conv's stored
weights and connections, a sum pool's all-ones kernel, one identity synapse per neuron for
everything else; a population's fan-in adds its inputs' values. The handlers record the
neuron populations, the layers that hold weights and the host processes as they go.

Where the parts run (shared/notes/lava.md): with lava-loihi, stock processes (Conv, LIFReset,
LIF) map to neuro-cores, while a Python ProcessModel runs on the HOST CPU behind C adapters,
not on the chip's embedded x86 (Lakemont) cores, which run C process models only. This
backend's input source (``RingBuffer``), ``SpikingAttention``, ``DelayedSum`` (residual joins,
delay lines) and ``Readout`` (token/time sum and head) are Python processes: host processes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import numpy as np

from .interpreter import Interpreter, where
from .ir import Graph, IRError, Node
from .layout import pair

# Public Loihi 2 figures (Intel; /work/shared/notes/lava.md). Per-core limits are DERIVED by
# dividing the per-chip figures by the core count: an estimate, not a datasheet value.
CHIP_NEURO_CORES = 128
CHIP_EMBEDDED_CORES = 6          # x86 (Lakemont) cores: C process models only (lava-loihi)
CHIP_NEURONS = 1_000_000
CHIP_SYNAPSES = 120_000_000
CORE_NEURONS = CHIP_NEURONS // CHIP_NEURO_CORES     # 7812
CORE_SYNAPSES = CHIP_SYNAPSES // CHIP_NEURO_CORES   # 937 500

#: this backend's Lava processes that have only Python ProcessModels (deploy/lava): with
#: lava-loihi they run on the host CPU
HOST_PROCESSES = ("RingBuffer", "SpikingAttention", "DelayedSum", "Readout")

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
    "residual joins are counted as on-chip graded relays; they and the attention LIF's input "
    "from the host count one identity synapse per neuron and input; pools as depthwise "
    "all-ones kernels",
    "with lava-loihi a Python ProcessModel runs on the host CPU behind C adapters, not on the "
    "embedded x86 cores (they run C process models only); this backend's input source "
    "(RingBuffer), spiking attention (SpikingAttention), residual joins and delay lines "
    "(DelayedSum) and readout with head (Readout) are Python processes, so they run on the "
    "host and exchange spikes with the chip every step (off_chip, host_processes; "
    "docs/lava-backend.md). The residual joins' on-chip relays above are what a neuro-core "
    "implementation of them would need",
    "nothing here was checked on Loihi 2 hardware",
]


@dataclass(frozen=True)
class Synapses:
    """Input synapses that a node's output costs the population reading it: ``stored``
    (weights held, shared across positions) and ``dense`` (connections made)."""
    stored: int
    dense: int

    def __add__(self, other: "Synapses") -> "Synapses":
        return Synapses(self.stored + other.stored, self.dense + other.dense)


def _size(node: Node) -> int:
    return int(np.prod(node.shape))


def _identity(node: Node) -> Synapses:
    return Synapses(_size(node), _size(node))


class Footprint(Interpreter):
    """One walk over a quantized graph recording what :func:`network_size` and
    :func:`loihi_estimate` report (the module docstring has the value of a node)."""

    name = "Loihi 2 resource estimate"

    def __init__(self, graph: Graph, rates: Optional[Mapping[str, float]] = None):
        super().__init__(graph)
        self.rates: Mapping[str, float] = rates or {}
        self.populations: List[dict] = []          # on-chip populations, topological order
        self.spiking_neurons = 0                   # LIF layers and pool thresholds
        self.weights = Synapses(0, 0)              # conv layers and the head
        self.host: Dict[str, List[dict]] = {"input": [], "attention": [], "readout": [],
                                            "join": []}

    def unsupported(self, node: Node) -> IRError:
        return IRError(f"{where(node)}: the {self.name} takes quantized graphs (the quantize "
                       "pass's output); this op has no Loihi mapping")

    def measure(self) -> "Footprint":
        self.run()
        return self

    # -- records -----------------------------------------------------------------------------
    def population(self, node: Node, synapses: Synapses) -> None:
        neurons = _size(node)
        self.populations.append({"name": node.name, "op": node.op, "neurons": neurons,
                                 "synapses_stored": synapses.stored,
                                 "synapses_dense": synapses.dense,
                                 "cores_shared": _cores(neurons, synapses.stored),
                                 "cores_dense": _cores(neurons, synapses.dense)})

    # -- handlers, one per quantized op --------------------------------------------------------
    def op_input(self, node: Node, source=None) -> Synapses:
        self.host["input"].append({
            "node": node.name, "where": "host", "process": "RingBuffer",
            "why": "input injection (host -> chip spikes; graded 8-bit for images)",
            "values_per_step": _size(node)})
        return _identity(node)

    def op_conv2d(self, node: Node, _x: Synapses) -> Synapses:
        w = node.params["weight"]
        syn = Synapses(int(w.size), _size(node) * int(np.prod(w.shape[1:])))
        self.weights += syn
        return syn

    def op_sumpool2d(self, node: Node, _x: Synapses) -> Synapses:
        kh, kw = pair(node.attrs["kernel"], where(node), "kernel")
        return Synapses(int(node.shape[0]) * kh * kw, _size(node) * kh * kw)

    def op_loihi_lif(self, node: Node, synapses: Synapses) -> Synapses:
        self.population(node, synapses)
        self.spiking_neurons += _size(node)
        return _identity(node)

    op_threshold = op_loihi_lif                   # the pool's threshold: a memoryless LIF

    def op_sum(self, node: Node, synapses: Synapses) -> Synapses:
        self.population(node, synapses)           # graded relay: identity from every input
        self.host["join"].append({
            "node": node.name, "where": "host", "process": "DelayedSum",
            "why": "residual join: counted above as an on-chip graded relay; this backend's "
                   "DelayedSum is a Python process, which lava-loihi runs on the host",
            "values_per_step": _size(node)})
        return _identity(node)

    def op_spiking_attention(self, node: Node, q: Synapses, k: Synapses,
                             v: Synapses) -> Synapses:
        n_values = _size(node)
        entry = {"node": node.name, "where": "host", "process": "SpikingAttention",
                 "why": "Q.(K^T.V) multiplies two activities; a neuro-core only multiplies "
                        "spikes by stored weights. This backend's SpikingAttention is a Python "
                        "process: lava-loihi runs it on the host CPU behind C adapters (the "
                        "embedded x86 cores run C process models only)",
                 "spikes_out_per_step_max": 3 * n_values,    # q, k, v spikes chip -> host
                 "graded_in_per_step": n_values}              # gain * counts host -> chip
        if all(i in self.rates for i in node.inputs):
            entry["spikes_out_per_step_measured"] = (sum(self.rates[i] for i in node.inputs)
                                                     * n_values)
        self.host["attention"].append(entry)
        return _identity(node)

    def op_token_time_sum(self, node: Node, _x: Synapses) -> Synapses:
        heads = [c.name for c in self.graph.consumers(node.name)]
        self.host["readout"].append({
            "node": node.name, "where": "host", "process": "Readout",
            "why": f"token/time readout and head {heads}: the logits need more than 24 bits",
            "values_per_step": _size(self.graph[node.inputs[0]])})
        return _identity(node)

    def op_affine(self, node: Node, _x: Synapses) -> Synapses:
        w = node.params["weight"]                 # the head: a dense layer on the readout
        self.weights += Synapses(int(w.size), int(w.size))
        return _identity(node)

    def op_output(self, node: Node, _x: Synapses) -> Synapses:
        return _identity(node)


def network_size(graph: Graph) -> dict:
    """Neurons: every LIF population (incl. the pool thresholds). Synapses: for each conv,
    ``stored`` = weights held (shared across positions), ``dense`` = connections it makes
    (output neurons x fan-in per output); the head counts as a dense layer on the readout.
    Takes a quantized graph."""
    fp = Footprint(graph).measure()
    return {"neurons": fp.spiking_neurons, "synapses_stored": fp.weights.stored,
            "synapses_dense": fp.weights.dense}


def _cores(neurons: int, synapses: int) -> int:
    return max(1, math.ceil(neurons / CORE_NEURONS), math.ceil(synapses / CORE_SYNAPSES))


def _chips(cores: int, neurons: int, synapses: int) -> int:
    return max(math.ceil(cores / CHIP_NEURO_CORES), math.ceil(neurons / CHIP_NEURONS),
               math.ceil(synapses / CHIP_SYNAPSES))


def loihi_estimate(graph: Graph, rates: Optional[Mapping[str, float]] = None) -> dict:
    """Estimated Loihi 2 neuro-cores and chips of a quantized graph, per population and in
    total, and the parts that run on the host (``off_chip``, counted by process class in
    ``host_processes``). ``rates`` (node -> mean spikes per neuron per step) adds the
    expected spike traffic from the chip to the host's attention processes."""
    fp = Footprint(graph, rates).measure()
    populations = fp.populations
    total = {k: sum(p[k] for p in populations) for k in
             ("neurons", "synapses_stored", "synapses_dense", "cores_shared", "cores_dense")}
    total["chips_shared"] = _chips(total["cores_shared"], total["neurons"],
                                   total["synapses_stored"])
    total["chips_dense"] = _chips(total["cores_dense"], total["neurons"], total["synapses_dense"])
    return {"estimate": True, "assumptions": ASSUMPTIONS, "populations": populations,
            "total": total, "off_chip": _off_chip(fp),
            "host_processes": _host_processes(fp)}


def _host_processes(fp: Footprint) -> Dict[str, int]:
    """Host processes per Lava process class (delay lines, also DelayedSum, not included:
    the lowering decides them)."""
    parts = [p for kind in ("input", "attention", "readout", "join") for p in fp.host[kind]]
    return {cls: sum(p["process"] == cls for p in parts) for cls in HOST_PROCESSES}


def _off_chip(fp: Footprint) -> List[dict]:
    # input, attention, readout first (their positions predate the residual joins' entries)
    parts = fp.host["input"] + fp.host["attention"] + fp.host["readout"] + fp.host["join"]
    n_attention, n_join = len(fp.host["attention"]), len(fp.host["join"])
    if n_attention or n_join:
        parts.append({"node": "(summary)", "where": "host",
                      "why": f"{n_attention} SpikingAttention and {n_join} DelayedSum "
                             "processes (plus the lowering's delay lines) run on the host CPU "
                             "under lava-loihi, not on the chip's "
                             f"{CHIP_EMBEDDED_CORES} embedded x86 cores: every step, spikes "
                             "go from the chip to the host and graded values back"})
    return parts


__all__ = ["ASSUMPTIONS", "CHIP_EMBEDDED_CORES", "CHIP_NEURO_CORES", "CHIP_NEURONS",
           "CHIP_SYNAPSES", "CORE_NEURONS", "CORE_SYNAPSES", "Footprint", "HOST_PROCESSES",
           "Synapses", "loihi_estimate", "network_size"]
