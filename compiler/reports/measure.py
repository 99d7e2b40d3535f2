"""Measure a compiled network on real samples: the integer reference executor and, when the
float graph is at hand, the float model on the same batches.

One measurement for both reports: ``spikeform-compile``'s report.json (accuracies, the
float-vs-reference agreement of every LIF population, energy per inference) and
``spikeform-report`` (the same plus membrane use, float-model energy and attention maps,
which it asks for with the keyword flags of :func:`measure`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional

import numpy as np
import torch

from ..exact.device import DeviceLike, resolve_device
from ..float_exec import run_float
from ..ir import Graph
from ..reference import run_reference
from .activity import ActivityMeter, attention_maps
from .energy import EnergyMeter


@dataclass
class Measurement:
    """What :func:`measure` accumulated over the batches."""

    activity: ActivityMeter                 # rates, float-vs-reference agreement (membrane)
    energy_reference: EnergyMeter           # the paper's energy estimate, reference spikes
    energy_float: Optional[EnergyMeter]     # the same from the float model's spikes
    has_float: bool = False                 # the float model ran on the same batches
    samples: int = 0
    labelled: int = 0
    correct_reference: int = 0
    correct_float: int = 0
    prediction_mismatches: int = 0          # float vs reference argmax
    seconds_reference: float = 0.0
    seconds_float: float = 0.0
    attention: Dict[str, np.ndarray] = field(default_factory=dict)  # node -> [T, heads, N, N]

    def accuracy_reference(self) -> Optional[float]:
        """Fraction of labelled samples the reference executor classifies correctly."""
        return self.correct_reference / self.labelled if self.labelled else None

    def accuracy_float(self) -> Optional[float]:
        """The float model's accuracy (None without a float model or labels)."""
        return self.correct_float / self.labelled if self.has_float and self.labelled else None

    def lif_layers(self) -> Dict[str, dict]:
        """Per ``loihi_lif`` population: spike agreement and firing rates, float vs reference
        (populations the float model did not run are left out)."""
        layers = self.activity.layers()
        return {n.name: {k: layers[n.name][k] for k in ("agreement", "rate_float",
                                                          "rate_reference")}
                for n in self.activity.graph.by_op("loihi_lif")
                if layers.get(n.name, {}).get("agreement") is not None}


def measure(quantized: Graph, float_graph: Optional[Graph], batches: Iterable,
            progress: Callable = lambda it: it, *, membrane: bool = True,
            float_energy: bool = True, attention: bool = True,
            device: DeviceLike = "cpu") -> Measurement:
    """Run ``(x, labels or None)`` batches through the reference executor and, when
    ``float_graph`` is given, the float executor, both on ``device`` ("cpu" or "cuda"; the
    reference's integers are the same on both, an :class:`compiler.ir.OptionError` naming
    ``device`` before any work when CUDA is asked for and missing).

    ``membrane``: record |v| and |u| of every ``loihi_lif`` population (about 16 bytes per
    neuron, step and sample while a batch runs); ``float_energy``: an energy estimate from the
    float model's spikes too; ``attention``: keep the first sample's Q.K^T maps (the paper's
    Figure 3). The counts, rates and agreements do not depend on these flags.
    """
    dev = resolve_device(device)
    activity = ActivityMeter(quantized, float_graph)
    if not membrane:
        activity.membrane_names = []  # the meter then measures no membrane use
    energy = EnergyMeter(quantized)
    m = Measurement(activity, energy,
                    EnergyMeter(quantized) if float_graph is not None and float_energy else None,
                    has_float=float_graph is not None)
    record = sorted(set(activity.record_names) | set(energy.record_names))
    float_record = sorted(set(activity.float_names)
                          | set(m.energy_float.record_names if m.energy_float else ()))
    for x, y in progress(batches):
        t0 = time.perf_counter()
        ref = run_reference(quantized, x, record=record, record_membrane=activity.membrane_names,
                            device=dev)
        t1 = time.perf_counter()
        flt = run_float(float_graph, x, record=float_record, device=dev) \
            if float_graph is not None else None
        if dev.type == "cuda":   # the float results are still being computed: wait for them
            torch.cuda.synchronize(dev)
        m.seconds_reference += t1 - t0
        m.seconds_float += time.perf_counter() - t1
        activity.add(ref, flt)
        energy.add(ref.outputs)
        rp = ref.predictions
        if flt is not None:
            if m.energy_float is not None:
                m.energy_float.add(flt.outputs)
            fp = flt.logits.argmax(1).cpu().numpy()
            m.prediction_mismatches += int((fp != rp).sum())
        if y is not None:
            y = np.asarray(y)
            m.labelled += len(y)
            m.correct_reference += int((rp == y).sum())
            if flt is not None:
                m.correct_float += int((fp == y).sum())
        if attention and not m.attention:  # the first sample of the first batch
            for node in quantized.by_op("spiking_attention"):
                q, k, _ = (ref.outputs[i][:, 0] for i in node.inputs)
                m.attention[node.name] = attention_maps(q, k, int(node.attrs["num_heads"]))
        m.samples += len(rp)
    return m
