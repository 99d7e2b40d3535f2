"""Assemble ``spikeform-report``'s report (a JSON-able dict) from a measurement.

``measure`` (:mod:`.measure`, shared with ``spikeform-compile``'s report) runs the integer
reference executor (with the membrane record) and, when the float graph is at hand (a
checkpoint, not an artifact), the float model on the same batches; ``assemble`` turns the
measurement into the report that ``markdown.render`` and ``plots`` present and that
``spikeform-report`` writes as report.json.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..ir import Graph
from ..resources import loihi_estimate, network_size
from .activity import qkv_rates
from .energy import E_MAC_PJ, E_SOP_PJ
from .measure import Measurement

REPORT_FORMAT = "spikformer-neuro-report"
REPORT_VERSION = 1
# attention maps go into report.json only up to this many integers (T * heads * N * N)
MAX_ATTENTION_VALUES = 65536

ENERGY_METHOD = (f"paper (Zhou et al. 2023): E = {E_MAC_PJ} pJ x FLOPs(first conv) + "
                 f"{E_SOP_PJ} pJ x sum SOPs; FLOPs = MACs x T; SOPs(l) = input rate x T x "
                 "MACs(l); attention counted as Q.K^T (rate of Q) and (Q.K^T).V (rate of V); "
                 "rates measured on the samples (docs/reports.md)")


def _quantization_table(quantized: Graph, layers: Dict[str, dict]) -> Dict[str, dict]:
    out = {}
    for name, info in quantized.meta.get("quantization", {}).get("layers", {}).items():
        row = {k: info[k] for k in ("scale", "vth", "limited_by", "weight_error",
                                    "position_sum_error", "bias_error", "gain", "exact")
               if k in info}
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
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "source": source,
        "model": quantized.meta.get("model"), "dataset": quantized.meta.get("dataset"),
        "samples": m.samples, "time_steps": quantized.time_steps,
        "accuracy": {"reference": m.accuracy_reference(),
                     "float": m.accuracy_float(),
                     "float_vs_reference_prediction_mismatches":
                         m.prediction_mismatches if m.has_float else None},
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
