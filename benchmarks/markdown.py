"""The suite's JSON as the Markdown tables the README quotes, so nothing is copied by hand.

    .venv/bin/python -m benchmarks.markdown runs/bench/suite.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head, rows) -> list[str]:
    return [_row(head), _row(["---"] * len(head))] + [_row(r) for r in rows]


def _gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB"


def machine(m: dict) -> list[str]:
    env = ", ".join(f"{k}={v}" for k, v in m["env_threads"].items() if v is not None) or \
        "no thread variables set"
    return [f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['ram_gb']:.0f} GB RAM, load "
            f"average {m['loadavg_1m_at_start']:.2f} at start; Python {m['python']}, torch "
            f"{m['torch']} ({m['torch_threads']} threads), lava-nc {m['lava']}; {env}."]


def throughput(rows: list[dict]) -> list[str]:
    from benchmarks.throughput import ratios

    rows = [r for r in rows if "error" not in r]
    by_key = {(r["workload"], r["batch"], r["device"]): r for r in ratios(rows)}
    cells: dict = {}
    for r in rows:
        key = (r["workload"], r["label"], r["batch"], r.get("device", "cpu"))
        cells.setdefault(key, {})[r["engine"]] = r
    out = []
    for (workload, label, batch, device), e in cells.items():
        f, r = e.get("float"), e.get("reference")
        ratio = by_key.get((workload, batch, device))
        if not (f and r and ratio):
            continue
        goal = ("" if ratio["goal"] is None else
                f" (goal ≥ {ratio['goal']:g}x{'' if ratio['meets_goal'] else ': MISSED'})")
        out.append([label, batch, device, f"{f['samples_per_s']:.1f}",
                    f"{r['samples_per_s']:.1f}", f"{ratio['reference_over_float']:.2f}x{goal}",
                    f"{_gb(f['peak_rss_mb'])} / {_gb(r['peak_rss_mb'])}"])
    return _table(["workload", "batch", "device", "float samples/s", "reference samples/s",
                   "reference / float", "peak RSS float / reference"], out)


def workers_table(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if "error" not in r]
    base = next((r["samples_per_s_wall"] for r in rows if r["workers"] == 1), None)
    return _table(["workers", "samples", "wall s", "samples/s", "speed-up", "ms/step",
                   "logits = reference"],
                  [[r["workers"], r["samples"], f"{r['wall_s']:.1f}",
                    f"{r['samples_per_s_wall']:.1f}",
                    f"{r['samples_per_s_wall'] / base:.2f}x" if base else "-",
                    f"{r['ms_per_step']:.1f}", "yes" if r["logits_equal"] else "NO"]
                   for r in rows])


def compile_table(rows: list[dict]) -> list[str]:
    return _table(["config", "params", "tokens", "frontend + passes + quantize + write",
                   "lowering to Lava", "peak RSS"],
                  [[r["config"], f"{r['params_m']:.2f} M", r["tokens"], f"{r['compile_s']:.2f} s",
                    f"{r['lower_s']:.2f} s", _gb(r["peak_rss_mb"])]
                   for r in rows if "error" not in r])


def lava(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if "error" not in r]

    def stock(r):
        if not r["stock"]:
            return "skipped"
        t = r["stock"]["timing"]
        how = (f"extrapolated from {t['steps']} steps" if t["extrapolated"]
               else f"{t['samples']} samples streamed")
        return f"{t['ms_per_step']:.0f} ms/step, {t['per_sample_s']:.2f} s/sample ({how})"

    def mismatches(r):
        f = r["accelerated_fidelity"]
        return (f"{f['spike_mismatches']} of {f['spikes_compared']:,} spikes, "
                f"{f['logit_mismatches']} of {f['samples']} logit vectors")

    lines = [
        ["Lava processes / LIF neurons",
         *(f"{r['processes']} / {r['lif_neurons']:,}" for r in rows)],
        ["lava-sim (accelerated)", *(f"{r['accelerated']['ms_per_step']:.1f} ms/step, "
                                     f"{r['accelerated']['per_sample_s']:.3f} s/sample"
                                     for r in rows)],
        ["lava-sim start-up", *(f"{r['accelerated']['startup_s']:.1f} s" for r in rows)],
        ["floor, wired: the network without arithmetic",
         *(f"{r['floor']['ms_per_step']:.1f} ms/step ({r['floor']['ms_per_process_step']:.3f} "
           "ms per process)" for r in rows)],
        ["floor, chain: as many relay processes",
         *(f"{r['floor_chain']['ms_per_step']:.1f} ms/step "
           f"({r['floor_chain']['ms_per_process_step']:.3f} ms per process)" for r in rows)],
        ["lava-sim / wired floor (goal ≤ 1.5x) / chain floor",
         *(f"{r['accel_over_floor']:.2f}x / {r['accel_over_chain_floor']:.2f}x" for r in rows)],
        ["lava-sim-stock", *(stock(r) for r in rows)],
        ["reference executor, batch 1 / 16", *(f"{r['reference']['batch1_s']:.4f} / "
                                               f"{r['reference']['batchN_per_sample_s']:.4f} "
                                               "s/sample" for r in rows)],
        ["accelerated vs stock / vs reference (batch 1)",
         *((f"{r['stock_over_accel']:.0f}x faster" if r["stock_over_accel"] else "-")
           + f" / {r['accel_over_ref_b1']:.2f}x the time" for r in rows)],
        ["Lava vs reference mismatches", *(mismatches(r) for r in rows)],
        ["peak RSS (largest process)", *(_gb(r["peak_rss_mb"]) for r in rows)]]
    return _table(["", *(r["label"] for r in rows)], lines)


def scaling(sc: dict) -> list[str]:
    from benchmarks.scaling import METRICS

    out = []
    for axis in sc["axes"]:
        pts = sorted((p for p in sc["points"] if "error" not in p and axis in p["axes"]),
                     key=lambda p: p["axes"][axis])
        fit = sc["exponents"].get(axis)
        if len(pts) < 2 or not fit:
            continue
        cells = [axis, f"{pts[0]['axes'][axis]} → {pts[-1]['axes'][axis]}"]
        for key, _ in METRICS:
            k = fit[key]
            cells.append(f"{pts[0][key]:.3g} → {pts[-1][key]:.3g} s "
                         f"(k = {k['all_points']:.2f}; last step {k['last_two']:.2f})")
        out.append(cells)
    return _table(["axis", "size", *(label for _, label in METRICS)], out)


def render(res: dict) -> str:
    parts = [machine(res["machine"])]
    if res.get("throughput"):
        parts.append(throughput(res["throughput"]))
    if res.get("compile"):
        parts.append(compile_table(res["compile"]))
    if res.get("lava"):
        parts.append(lava(res["lava"]))
    if res.get("workers"):
        parts.append(workers_table(res["workers"]))
    if res.get("scaling"):
        parts.append(scaling(res["scaling"]))
    return "\n\n".join("\n".join(p) for p in parts)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.markdown runs/bench/suite.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot read the suite's JSON ({exc}); run `make bench` first",
              file=sys.stderr)
        return 2
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
