"""Measure a compiled network on real samples and assemble the report (a JSON-able dict).

``measure`` runs the integer reference executor (with the membrane record) and, when the
float graph is at hand (a checkpoint, not an artifact), the float model on the same batches;
``assemble`` turns the measurements into the report that ``markdown.render`` and
``plots`` present and that ``spikeform-report`` writes as report.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from ..float_exec import run_float
from ..ir import Graph
from ..reference import run_reference
from ..resources import loihi_estimate, network_size
from .activity import ActivityMeter, attention_maps, qkv_rates
from .energy import E_MAC_PJ, E_SOP_PJ, EnergyMeter

REPORT_FORMAT = "spikformer-neuro-report"
REPORT_VERSION = 1
# attention maps go into report.json only up to this many integers (T * heads * N * N)
MAX_ATTENTION_VALUES = 65536

ENERGY_METHOD = (f"paper (Zhou et al. 2023): E = {E_MAC_PJ} pJ x FLOPs(first conv) + "
                 f"{E_SOP_PJ} pJ x sum SOPs; FLOPs = MACs x T; SOPs(l) = input rate x T x "
                 "MACs(l); attention counted as Q.K^T (rate of Q) and (Q.K^T).V (rate of V); "
                 "rates measured on the samples (docs/reports.md)")


@dataclass
class Measurement:
    activity: ActivityMeter
    energy_reference: EnergyMeter
    energy_float: Optional[EnergyMeter]
    samples: int = 0
    correct_reference: int = 0
    correct_float: int = 0
    labelled: int = 0
    prediction_mismatches: int = 0
    attention: Dict[str, np.ndarray] = field(default_factory=dict)  # node -> [T, heads, N, N]


def measure(quantized: Graph, float_graph: Optional[Graph], batches: Iterable,
            progress: Callable = lambda it: it) -> Measurement:
    """Run ``(x, labels or None)`` batches through the reference (and float) executors."""
    activity = ActivityMeter(quantized, float_graph)
    m = Measurement(activity, EnergyMeter(quantized),
                    EnergyMeter(quantized) if float_graph is not None else None)
    for x, y in progress(batches):
        ref = run_reference(quantized, x, record=activity.record_names,
                            record_membrane=activity.membrane_names)
        flt = (run_float(float_graph, x, record=activity.float_names)
               if float_graph is not None else None)
        activity.add(ref, flt)
        m.energy_reference.add(ref.outputs)
        rp = ref.predictions
        if flt is not None:
            m.energy_float.add(flt.outputs)
            fp = flt.logits.argmax(1).cpu().numpy()
            m.prediction_mismatches += int((fp != rp).sum())
        if y is not None:
            y = np.asarray(y)
            m.labelled += len(y)
            m.correct_reference += int((rp == y).sum())
            if flt is not None:
                m.correct_float += int((fp == y).sum())
        if not m.attention:  # the paper's Figure 3: the first sample of the first batch
            for node in quantized.by_op("spiking_attention"):
                q, k, _ = (ref.outputs[i][:, 0] for i in node.inputs)
                m.attention[node.name] = attention_maps(q, k, int(node.attrs["num_heads"]))
        m.samples += len(rp)
    return m


def _quantization_table(quantized: Graph, layers: Dict[str, dict]) -> Dict[str, dict]:
    out = {}
    for name, info in quantized.meta.get("quantization", {}).get("layers", {}).items():
        row = {k: info[k] for k in ("scale", "vth", "limited_by", "weight_error", "bias_error",
                                    "gain", "exact") if k in info}
        row["agreement"] = layers.get(name, {}).get("agreement")
        out[name] = row
    for node in quantized.by_op("affine"):
        if "weight_error" in node.attrs:
            out[node.name] = {"weight_error": node.attrs["weight_error"], "agreement": None}
    return out


def _attention_json(attention: Dict[str, np.ndarray]) -> dict:
    if not attention:
        return {"sample": None, "maps": {}}
    name = next(iter(attention))
    maps = attention[name]
    entry = {"node": name, "sample": 0, "shape": list(maps.shape),
             "max_count": int(maps.max(initial=0)),
             "zero_fraction": float((maps == 0).mean())}
    if maps.size <= MAX_ATTENTION_VALUES:
        entry["maps"] = maps.tolist()
    else:
        entry["maps"] = None
        entry["note"] = f"{maps.size} values: too many for report.json (see the PNG)"
    return entry


def assemble(quantized: Graph, m: Measurement, source: dict) -> dict:
    """The report as a JSON-able dict (plots are added by the caller)."""
    layers = m.activity.layers()
    rates_ref = m.activity.rates("reference")
    rates_float = m.activity.rates("float")

    def frac(correct: int) -> Optional[float]:
        return correct / m.labelled if m.labelled else None

    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "source": source,
        "model": quantized.meta.get("model"), "dataset": quantized.meta.get("dataset"),
        "samples": m.samples, "time_steps": int(quantized.meta["time_steps"]),
        "accuracy": {"reference": frac(m.correct_reference),
                     "float": frac(m.correct_float) if m.energy_float else None,
                     "float_vs_reference_prediction_mismatches":
                         m.prediction_mismatches if m.energy_float else None},
        "energy": {"method": ENERGY_METHOD, "reference": m.energy_reference.summary(),
                   "float": m.energy_float.summary() if m.energy_float else None},
        "activity": {"layers": layers, "qkv": qkv_rates(quantized, rates_ref),
                     "qkv_float": qkv_rates(quantized, rates_float) if rates_float else None},
        "attention_map": _attention_json(m.attention),
        "quantization": _quantization_table(quantized, layers),
        "resources": {"network": network_size(quantized),
                      "loihi2": loihi_estimate(quantized, rates_ref)},
        "plots": [],
    }


def names_with_membrane(report: dict) -> List[str]:
    return [n for n, info in report["activity"]["layers"].items() if "membrane" in info]
