"""PNG plots of a report (matplotlib, Agg backend): each function returns (file name, bytes)
or None when the report has nothing to plot, so the caller writes them atomically."""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..ops import OPS, Output  # noqa: E402

Plot = Optional[Tuple[str, bytes]]
MAX_HEADS_SHOWN = 8


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})  # no version string: stable bytes
    plt.close(fig)
    return buf.getvalue()


def _spiking(op: str) -> bool:
    """Whether ``op`` always outputs binary spikes (the registry): LIF layers, pool thresholds."""
    spec = OPS.get(op)
    return spec is not None and spec.output is Output.SPIKES


def _lif_layers(report: dict) -> Dict[str, dict]:
    return {n: i for n, i in report["activity"]["layers"].items() if _spiking(i["op"])}


def firing_rates(report: dict) -> Plot:
    layers = _lif_layers(report)
    if not layers:
        return None
    names = list(layers)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * len(names)))
    ref = [layers[n]["rate_reference"] for n in names]
    ax.barh(y - 0.2, ref, height=0.4, label="reference (integer)")
    if any(layers[n]["rate_float"] is not None for n in names):
        flt = [layers[n]["rate_float"] or 0.0 for n in names]
        ax.barh(y + 0.2, flt, height=0.4, label="float model")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("firing rate (spikes per neuron per step)")
    ax.set_title(f"{report['model']}: firing rate per layer ({report['samples']} samples)")
    ax.legend(fontsize=7)
    return "firing_rates.png", _png(fig)


def qkv_rates(report: dict) -> Plot:
    rows: List[dict] = report["activity"]["qkv"]
    if not rows:
        return None
    keys = ("q", "k", "v", "attn_lif")
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 3))
    for j, key in enumerate(keys):
        ax.bar(x + (j - 1.5) * 0.2, [r[key] or 0.0 for r in rows], width=0.2, label=key.upper()
               if key != "attn_lif" else "attention LIF")
    ax.set_xticks(x, [r["attention"].split(".attn")[0] for r in rows], fontsize=8)
    ax.set_ylabel("firing rate")
    ax.set_title("Q, K, V firing rate per block (reference; cf. the paper's Figure 4)")
    ax.legend(fontsize=7)
    return "qkv_rates.png", _png(fig)


def attention_maps(report: dict) -> Plot:
    entry = report["attention_map"]
    maps = entry.get("maps")
    if not maps:
        return None
    maps = np.asarray(maps)
    steps, heads = maps.shape[0], min(maps.shape[1], MAX_HEADS_SHOWN)
    fig, axes = plt.subplots(steps, heads, figsize=(1.6 * heads + 1, 1.6 * steps + 0.6),
                             squeeze=False)
    vmax = max(1, int(maps.max()))
    for t in range(steps):
        for h in range(heads):
            ax = axes[t][h]
            im = ax.imshow(maps[t, h], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_title(f"head {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(f"t = {t + 1}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="Q.K^T count")
    fig.suptitle(f"{entry['node']}: Q.K^T per head, sample 0 (cf. the paper's Figure 3)",
                 fontsize=9)
    return "attention_maps.png", _png(fig)


def quantization_error(report: dict) -> Plot:
    table = report["quantization"]
    names = [n for n in table
             if "weight_error" in table[n] or table[n].get("agreement") is not None]
    if not names:
        return None
    y = np.arange(len(names))
    has_agreement = any(table[n].get("agreement") is not None for n in names)
    fig, axes = plt.subplots(1, 2 if has_agreement else 1, sharey=True, squeeze=False,
                             figsize=(9 if has_agreement else 5, 1.2 + 0.22 * len(names)))
    ax = axes[0][0]
    ax.barh(y - 0.2, [100 * table[n].get("weight_error", 0.0) for n in names], height=0.4,
            label="weight")
    ax.barh(y + 0.2, [100 * table[n].get("bias_error", 0.0) for n in names], height=0.4,
            label="bias")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("relative L2 rounding error (%)")
    ax.legend(fontsize=7)
    if has_agreement:
        ax2 = axes[0][1]
        ax2.barh(y, [100 * (1 - table[n]["agreement"]) if table[n].get("agreement") is not None
                     else 0.0 for n in names], height=0.6, color="tab:red")
        ax2.set_xlabel("spikes differing, float vs reference (%)")
    fig.suptitle("quantization error per layer", fontsize=9)
    return "quantization_error.png", _png(fig)


def membrane_use(report: dict) -> Plot:
    layers = {n: i["membrane"] for n, i in report["activity"]["layers"].items() if "membrane" in i}
    if not layers:
        return None
    names = list(layers)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * len(names)))
    ax.barh(y - 0.27, [layers[n]["v_max_fraction"] for n in names], height=0.27, label="max |v|")
    ax.barh(y, [layers[n]["v_mean_fraction"] for n in names], height=0.27, label="mean |v|")
    ax.barh(y + 0.27, [layers[n]["u_max_fraction"] for n in names], height=0.27, label="max |u|")
    ax.set_xscale("log")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of the 24-bit range (2^23 - 1), log scale")
    ax.set_title("membrane use (reference executor)")
    ax.legend(fontsize=7)
    return "membrane.png", _png(fig)


ALL_PLOTS = (firing_rates, qkv_rates, attention_maps, quantization_error, membrane_use)


def render_all(report: dict) -> List[Tuple[str, bytes]]:
    return [p for p in (f(report) for f in ALL_PLOTS) if p is not None]
