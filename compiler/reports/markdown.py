"""The report as Markdown (report.md): summary tables and the plots."""
from __future__ import annotations

from typing import List, Optional


def _pct(v: Optional[float], digits: int = 2) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def _num(v: Optional[float], fmt: str = ".4f") -> str:
    return "–" if v is None else format(v, fmt)


def _energy(report: dict) -> List[str]:
    e = report["energy"]
    lines = ["## Energy per inference (the paper's method)", "", e["method"], "",
             "| executor | energy | SOPs | first-conv FLOPs (MACs x T) | MAC part | SOP part |",
             "|---|---|---|---|---|---|"]
    for which in ("reference", "float"):
        s = e[which]
        if s is None:
            continue
        lines.append(f"| {which} | {s['energy_mJ'] * 1e3:.4g} µJ | {s['sops']:.4g} | "
                     f"{s['flops_first_conv']:.4g} | {s['mac_energy_mJ'] * 1e3:.4g} µJ | "
                     f"{s['sop_energy_mJ'] * 1e3:.4g} µJ |")
    ref = e["reference"]
    flt = {r["name"]: r for r in e["float"]["layers"]} if e["float"] else {}
    lines += ["", "| layer | kind | MACs/step | input rate (ref / float) | SOPs or FLOPs (ref) | "
              "energy (ref) |", "|---|---|---|---|---|---|"]
    for r in ref["layers"]:
        f = flt.get(r["name"], {})
        ops = r.get("sops", r.get("flops"))
        rate = ("analog (MACs)" if r["input_rate"] is None else
                f"{r['input_rate']:.4f} / {_num(f.get('input_rate'))}")
        lines.append(f"| {r['name']} | {r['kind']} | {r['macs_per_step']:,} | {rate} | "
                     f"{ops:.4g} | {r['energy_pJ'] * 1e-6:.4g} µJ |")
    return lines


def _activity(report: dict) -> List[str]:
    lines = ["## Activity per population", "",
             "Rate: mean spikes per neuron per step (a residual-stream value n counts n). "
             "Membrane: |v| before threshold/reset and |u|, as a fraction of 2^23 − 1.", "",
             "| population | op | neurons | rate ref | rate float | agreement | max abs v | "
             "mean abs v | max abs u |", "|---|---|---|---|---|---|---|---|---|"]
    for name, i in report["activity"]["layers"].items():
        m = i.get("membrane")
        mem = (f"{_pct(m['v_max_fraction'], 3)} | {_pct(m['v_mean_fraction'], 4)} | "
               f"{_pct(m['u_max_fraction'], 3)}" if m else "– | – | –")
        lines.append(f"| {name} | {i['op']} | {i['neurons']:,} | {_num(i['rate_reference'])} | "
                     f"{_num(i['rate_float'])} | {_pct(i['agreement'], 3)} | {mem} |")
    rows = report["activity"]["qkv"]
    if rows:
        lines += ["", "Q, K, V per block (reference; the paper's Figure 4):", "",
                  "| attention | Q | K | V | attention LIF |", "|---|---|---|---|---|"]
        lines += [f"| {r['attention']} | {_num(r['q'])} | {_num(r['k'])} | {_num(r['v'])} | "
                  f"{_num(r['attn_lif'])} |" for r in rows]
    return lines


def _quantization(report: dict) -> List[str]:
    lines = ["## Quantization error per layer", "",
             "| layer | weight error | bias error | spike agreement float vs ref | limited by |",
             "|---|---|---|---|---|"]
    for name, q in report["quantization"].items():
        sums = q.get("position_sum_error")   # token-pooled kernels: rounded along the tokens
        sums = "" if sums is None else f" (token sums {_pct(sums, 3)})"
        lines.append(f"| {name} | {_pct(q.get('weight_error'), 3)}{sums} | "
                     f"{_pct(q.get('bias_error'), 3)} | {_pct(q.get('agreement'), 3)} | "
                     f"{q.get('limited_by', '–')} |")
    return lines


def _resources(report: dict) -> List[str]:
    net = report["resources"]["network"]
    est = report["resources"]["loihi2"]
    t = est["total"]
    lines = ["## Loihi 2 resources (estimate)", "",
             f"{net['neurons']:,} spiking neurons; {net['synapses_stored']:,} stored weights "
             f"({net['synapses_dense']:,} dense-equivalent synapses).", "",
             "| bound | neurons (incl. residual relays) | synapses | neuro-cores | chips |",
             "|---|---|---|---|---|",
             f"| shared weights | {t['neurons']:,} | {t['synapses_stored']:,} | "
             f"{t['cores_shared']:,} | {t['chips_shared']} |",
             f"| dense (no sharing) | {t['neurons']:,} | {t['synapses_dense']:,} | "
             f"{t['cores_dense']:,} | {t['chips_dense']} |", "", "Off the neuro-cores:", ""]
    for p in est["off_chip"]:
        lines.append(f"- `{p['node']}` → {p['where']}: {p['why']}")
    lines += ["", "Assumptions:", ""] + [f"- {a}" for a in est["assumptions"]]
    return lines


def render(report: dict) -> str:
    acc = report["accuracy"]
    src = report["source"]
    lines = [f"# Report: {report['model']} ({report['dataset']})", "",
             f"Source: {src['kind']} `{src['path']}`; {report['samples']} test samples, "
             f"T = {report['time_steps']}.", "",
             f"Accuracy: reference {_pct(acc['reference'])}, float {_pct(acc['float'])}"
             + (f" ({acc['float_vs_reference_prediction_mismatches']} predictions differ)"
                if acc["float_vs_reference_prediction_mismatches"] is not None else ""), ""]
    if src["kind"] == "artifact":
        lines += ["A compiled artifact holds no float model: float rates and float-vs-reference "
                  "agreement are not available (report a checkpoint for them).", ""]
    for section in (_energy, _activity, _quantization, _resources):
        lines += section(report) + [""]
    if report["plots"]:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines)
