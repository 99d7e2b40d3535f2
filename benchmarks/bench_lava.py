"""Per-sample time of the Lava backend: stock models vs accelerated models vs the reference
executor, with a spike-for-spike fidelity check of every accelerated run.

    .venv/bin/python benchmarks/bench_lava.py [--configs A,B,...] [--samples N]
        [--stock-steps N | --skip-stock] [--stock-samples N] [--json out.json]

Configurations (``--configs``, comma-separated):
  * a zoo name (e.g. ``cifar10-4-384``): random weights, made to fire like the tests do
    (randomised BatchNorm statistics, tests/test_lava_backend.py::random_graph), uniform random
    images in [0, 1]; seeds fixed;
  * a ``.pth`` path (e.g. ``spikformer_neuro/checkpoints/digits-tiny.pth``): the checkpoint on
    the first test samples of its data set.
Every graph is quantized with the default options (``quantize(float_passes(...))``).

What is measured, per configuration:
  * ``lava-sim`` (accelerated models): ``--samples`` samples streamed back to back in one Lava
    run without probes (the deployment network). Start-up (compile + worker start) is reported
    separately. ms/step = stepping time / steps of that run (B*T + pipeline drain steps; every
    process steps every step, so all steps cost alike). Per-sample time, steady state =
    T x ms/step: in a stream each sample occupies T steps. "stream wall / sample" is the whole
    run's stepping time / B (includes the drain, so it overstates the steady state for small B).
  * ``lava-sim-stock`` (Lava's own Conv/LIF models): on configurations marked "partial" (the
    big ones) only ``--stock-steps`` steps run and per-sample time is EXTRAPOLATED as
    T x ms/step (the stock Conv's cost does not depend on its input: it loops over every
    channel pair); on small ones ("full") ``--stock-samples`` samples stream completely.
  * reference executor (``compiler.reference.run_reference``, encoded input, nothing recorded)
    at batch 1 (mean over the streamed samples, after one warm-up call) and at batch 16.
  * fidelity: every accelerated run is repeated through
    ``deploy.lava.verify.verify_against_reference`` (a Tap on every LIF population, every spike
    and every logit compared with the reference). Full stock runs get the same check; a partial
    stock run compares the steps it produced of every node whose pipeline lag is short enough.
    Any mismatch makes the script exit with status 1.

Run it on a quiet machine for meaningful absolute numbers: Lava runs every process as an OS
process, and its per-step synchronisation dominates when cores are shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIGITS_CKPT = "spikformer_neuro/checkpoints/digits-tiny.pth"
DEFAULT_CONFIGS = ["cifar10-4-384", DIGITS_CKPT]
# configurations whose stock run is partial by default (a full stock sample takes minutes)
DEFAULT_SAMPLES = {"cifar10-4-384": 2}
SAMPLES_FALLBACK = 8
STOCK_FULL_MAX_NEURONS = 200_000   # above this many LIF neurons the stock run is partial
GOAL_STOCK_OVER_ACCEL = 100.0
GOAL_ACCEL_OVER_REF = 3.0
REF_BATCH = 16


# -- machine -----------------------------------------------------------------------------------
def machine_info() -> Dict[str, object]:
    import torch
    info: Dict[str, object] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "env_threads": {k: os.environ.get(k) for k in
                        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        from importlib.metadata import version
        info["lava"] = version("lava-nc")
    except Exception:  # noqa: BLE001 - informative only
        info["lava"] = "?"
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [f"{p.get('internal_api')} {p.get('version') or ''} "
                        f"({p.get('num_threads')} threads)".replace("  ", " ")
                        for p in threadpool_info()]
    except Exception:  # noqa: BLE001
        info["blas"] = ["threadpoolctl unavailable"]
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# -- workloads ---------------------------------------------------------------------------------
def random_graph(cfg, seed: int = 0):
    """As tests/test_lava_backend.py: random weights, BN statistics that make every LIF fire."""
    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize
    from spikformer_neuro.testing import densely_firing_model

    return quantize(float_passes(model_to_ir(densely_firing_model(cfg, seed))))


def random_input(cfg, batch: int, seed: int = 1):
    import torch
    g = torch.Generator().manual_seed(seed)
    if cfg.event_input:
        shape = (batch, cfg.time_steps, cfg.in_channels, cfg.img_size, cfg.img_size)
        return (torch.rand(shape, generator=g) < 0.3).float()
    return torch.rand((batch, cfg.in_channels, cfg.img_size, cfg.img_size), generator=g)


def make_workload(spec: str, batch: int):
    """-> (label, graph, float input batch [batch, ...], labels or None)."""
    import torch

    if spec.endswith(".pth"):
        from compiler.frontend import checkpoint_to_ir
        from compiler.passes import float_passes
        from compiler.passes.quantize import quantize
        from spikformer_neuro.checkpoint import load_checkpoint
        from spikformer_neuro.data import load_dataset

        path = Path(spec) if Path(spec).is_absolute() else ROOT / spec
        ckpt = load_checkpoint(path)
        graph = quantize(float_passes(checkpoint_to_ir(ckpt)))
        ds, _ = load_dataset(ckpt.dataset, "test")
        n = min(batch, len(ds))
        x = torch.stack([ds[i][0] for i in range(n)])
        labels = np.array([int(ds[i][1]) for i in range(n)])
        return f"{ckpt.config.name} (ckpt, {ckpt.dataset} test)", graph, x, labels
    from spikformer_neuro.zoo import get_config
    cfg = get_config(spec)
    return f"{cfg.name} (random)", random_graph(cfg), random_input(cfg, batch), None


# -- measurements ------------------------------------------------------------------------------
def time_reference(graph, x_seq: np.ndarray) -> float:
    from compiler.reference import run_reference
    t = time.perf_counter()
    run_reference(graph, x_seq, encoded=True)
    return time.perf_counter() - t


def lava_timing(net, x_seq: np.ndarray, target: str) -> Dict[str, float]:
    """One streamed run without probes: start-up, ms/step, per-sample (T x ms/step)."""
    from deploy.lava import run
    res = run(net, x_seq, target=target)
    T, B = net.time_steps, x_seq.shape[1]
    ms = res.ms_per_step
    return {"samples": B, "steps": res.num_steps, "startup_s": res.compile_s,
            "run_s": res.run_s, "ms_per_step": ms, "per_sample_s": T * ms / 1e3,
            "stream_wall_per_sample_s": res.run_s / B, "extrapolated": False,
            "predictions": res.predictions.tolist()}


def lava_fidelity(graph, x_seq: np.ndarray, target: str) -> Dict[str, object]:
    from deploy.lava.verify import verify_against_reference
    chk = verify_against_reference(graph, x_seq, target)
    rates = {n: float(a.mean()) for n, a in chk.lava.outputs.items()}
    return {"kind": "full", "samples": int(x_seq.shape[1]), "layers": len(chk.layer_mismatches),
            "spikes_compared": chk.spikes_compared, "spike_mismatches": chk.spike_mismatches,
            "layer_mismatches": {k: v for k, v in chk.layer_mismatches.items() if v},
            "logit_mismatches": chk.logit_mismatches,
            "prediction_mismatches": chk.prediction_mismatches, "exact": chk.exact,
            "ms_per_step_probed": chk.lava.ms_per_step, "startup_probed_s": chk.lava.compile_s,
            "rate_min": min(rates.values()) if rates else None,
            "rate_max": max(rates.values()) if rates else None,
            "silent_layers": [n for n, r in rates.items() if r == 0.0],
            "predictions": chk.lava.predictions.tolist()}


def stock_partial(graph, net, x_seq: np.ndarray, steps: int) -> Dict[str, object]:
    """Stock models for the first ``steps`` Lava steps only; per-sample time extrapolated.
    Taps on every node whose lag leaves it at least one produced step; those steps are
    compared with the reference executor."""
    from compiler.reference import run_reference
    from deploy.lava.build import build
    from deploy.lava.runtime import create_runtime, run_steps, runtime_of, stop_runtime
    from deploy.lava.targets import run_config
    from deploy.lava.runner import receive_messages

    T, B = net.time_steps, x_seq.shape[1]
    probes = [n for n in net.probe_names() if net.lags[n] < steps and graph[n].op != "input"]
    built = build(net, x_seq, probes)
    anchor = built.readout
    try:
        t0 = time.perf_counter()
        create_runtime(anchor, run_config("lava-sim-stock"))
        t1 = time.perf_counter()
        run_steps(anchor, steps)
        t2 = time.perf_counter()
        recs = {n: receive_messages(tap.out, steps) for n, tap in built.taps.items()}
    finally:
        stop_runtime(runtime_of(anchor))
    ms = 1e3 * (t2 - t1) / steps
    timing = {"samples": B, "steps": steps, "startup_s": t1 - t0, "run_s": t2 - t1,
              "ms_per_step": ms, "per_sample_s": T * ms / 1e3,
              "stream_wall_per_sample_s": None, "extrapolated": True,
              "processes_with_taps": len(net.stages) + len(probes)}
    ref = run_reference(graph, x_seq, record=probes, encoded=True) if probes else None
    compared = mismatches = 0
    checked = []
    for n in probes:
        lag = net.lags[n]
        for i in range(lag, steps):
            s, t = divmod(i - lag, T)
            if s >= B:
                break
            got = recs[n][i].transpose(2, 1, 0).astype(np.int64)   # (W, H, C) -> (C, H, W)
            want = ref.outputs[n][t, s]
            compared += want.size
            mismatches += int((got != want).sum())
        checked.append(f"{n}[{steps - lag} step{'s' if steps - lag > 1 else ''}]")
    fidelity = {"kind": "partial", "samples": B, "layers": len(probes),
                "values_compared": compared, "spike_mismatches": mismatches,
                "logit_mismatches": None, "exact": mismatches == 0, "checked": checked}
    return {"timing": timing, "fidelity": fidelity}


def lif_neurons(graph) -> int:
    return int(sum(np.prod(n.shape) for n in graph.by_op("loihi_lif")))


def bench_config(spec: str, args) -> Dict[str, object]:
    from compiler.reference import encode_input
    from deploy.lava import lower

    n_lava = args.samples or DEFAULT_SAMPLES.get(spec, SAMPLES_FALLBACK)
    label, graph, x, labels = make_workload(spec, max(n_lava, REF_BATCH))
    log(f"== {label}")
    x_all = encode_input(graph, x)                       # [T, max(B, 16), ...]
    x_seq = x_all[:, :n_lava]
    net = lower(graph)
    T = net.time_steps
    lif_names = [n.name for n in graph.by_op("loihi_lif")]
    out: Dict[str, object] = {
        "config": spec, "label": label, "time_steps": T, "input_shape": list(net.input_shape),
        "pipeline_depth": net.max_lag, "processes": len(net.stages),
        "lif_layers": len(lif_names), "lif_neurons": lif_neurons(graph), "samples": n_lava}
    if labels is not None:
        out["labels"] = labels[:n_lava].tolist()

    # reference executor
    log("  reference executor ...")
    time_reference(graph, x_all[:, :1])                  # warm-up
    b1 = [time_reference(graph, x_seq[:, i:i + 1]) for i in range(n_lava)]
    nb = min(REF_BATCH, x_all.shape[1])
    out["reference"] = {"batch1_s": float(np.mean(b1)), "batch1_runs": len(b1),
                        "batch": nb, "batchN_per_sample_s": time_reference(graph, x_all[:, :nb]) / nb}

    # accelerated: timing (no probes), then fidelity (every LIF probed)
    log(f"  lava-sim: streaming {n_lava} samples ...")
    out["accelerated"] = lava_timing(net, x_seq, "lava-sim")
    log(f"    {out['accelerated']['ms_per_step']:.1f} ms/step; verifying against the reference ...")
    out["accelerated_fidelity"] = lava_fidelity(graph, x_seq, "lava-sim")
    log(f"    mismatches: spikes {out['accelerated_fidelity']['spike_mismatches']}, "
        f"logits {out['accelerated_fidelity']['logit_mismatches']}")

    # stock
    if args.skip_stock:
        out["stock"] = None
    else:
        partial = args.stock_steps_all or out["lif_neurons"] > STOCK_FULL_MAX_NEURONS
        if partial:
            steps = args.stock_steps
            log(f"  lava-sim-stock: {steps} steps only (extrapolated) ...")
            out["stock"] = stock_partial(graph, net, x_seq, steps)
        else:
            n_stock = min(args.stock_samples, n_lava)
            xs = x_seq[:, :n_stock]
            log(f"  lava-sim-stock: streaming {n_stock} samples ...")
            timing = lava_timing(net, xs, "lava-sim-stock")
            log(f"    {timing['ms_per_step']:.1f} ms/step; verifying against the reference ...")
            out["stock"] = {"timing": timing, "fidelity": lava_fidelity(graph, xs, "lava-sim-stock")}
        log(f"    stock: {out['stock']['timing']['ms_per_step']:.1f} ms/step, mismatches "
            f"{out['stock']['fidelity']['spike_mismatches']}")

    acc, ref = out["accelerated"]["per_sample_s"], out["reference"]["batch1_s"]
    out["accel_over_ref_b1"] = acc / ref
    out["stock_over_accel"] = (out["stock"]["timing"]["per_sample_s"] / acc
                               if out["stock"] else None)
    return out


# -- report ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _f(v, fmt: str = "{:.3f}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def _fid(f: Optional[dict]) -> str:
    if not f:
        return "-"
    if f["kind"] == "partial":
        return (f"{f['spike_mismatches']} / {f['values_compared']} values of "
                f"{f['layers']} node(s) (partial)")
    return (f"{f['spike_mismatches']} / {f['spikes_compared']:,} ({f['layers']} LIF layers); "
            f"logits {f['logit_mismatches']}/{f['samples']}")


def render(results: List[dict], machine: dict, args) -> str:
    rows: List[tuple] = []

    def row(name, fn):
        rows.append((name, [fn(r) for r in results]))

    row("Lava processes (no probes)", lambda r: str(r["processes"]))
    row("LIF layers / neurons", lambda r: f"{r['lif_layers']} / {r['lif_neurons']:,}")
    row("T / pipeline depth (steps)", lambda r: f"{r['time_steps']} / {r['pipeline_depth']}")
    row("lava-sim: samples streamed / steps",
        lambda r: f"{r['accelerated']['samples']} / {r['accelerated']['steps']}")
    row("lava-sim: start-up s", lambda r: _f(r["accelerated"]["startup_s"], "{:.2f}"))
    row("lava-sim: ms/step", lambda r: _f(r["accelerated"]["ms_per_step"], "{:.1f}"))
    row("lava-sim: s/sample (T x ms/step)", lambda r: _f(r["accelerated"]["per_sample_s"]))
    row("lava-sim: stream wall s/sample (+drain)",
        lambda r: _f(r["accelerated"]["stream_wall_per_sample_s"]))
    row("lava-sim-stock: samples / steps run", lambda r: "skipped" if not r["stock"] else (
        f"{r['stock']['timing']['samples']} / {r['stock']['timing']['steps']}"
        + (" (partial)" if r["stock"]["timing"]["extrapolated"] else "")))
    row("lava-sim-stock: start-up s",
        lambda r: _f(r["stock"]["timing"]["startup_s"], "{:.2f}") if r["stock"] else "-")
    row("lava-sim-stock: ms/step",
        lambda r: _f(r["stock"]["timing"]["ms_per_step"], "{:.1f}") if r["stock"] else "-")
    row("lava-sim-stock: s/sample (T x ms/step)", lambda r: "-" if not r["stock"] else (
        _f(r["stock"]["timing"]["per_sample_s"], "{:.2f}")
        + (" EXTRAPOLATED" if r["stock"]["timing"]["extrapolated"] else "")))
    row("reference: s/sample, batch 1", lambda r: _f(r["reference"]["batch1_s"], "{:.4f}"))
    row("reference: s/sample, batch 16",
        lambda r: _f(r["reference"]["batchN_per_sample_s"], "{:.4f}")
        + ("" if r["reference"]["batch"] == REF_BATCH else f" (batch {r['reference']['batch']})"))
    row(f"stock / accelerated (goal >= {GOAL_STOCK_OVER_ACCEL:.0f}x)",
        lambda r: "-" if r["stock_over_accel"] is None else
        f"{r['stock_over_accel']:.0f}x " + ("ok" if r["stock_over_accel"] >= GOAL_STOCK_OVER_ACCEL
                                            else "MISSED"))
    row(f"accelerated / reference b1 (goal <= {GOAL_ACCEL_OVER_REF:.0f}x)",
        lambda r: f"{r['accel_over_ref_b1']:.2f}x "
        + ("ok" if r["accel_over_ref_b1"] <= GOAL_ACCEL_OVER_REF else "MISSED"))
    row("accelerated / reference b16",
        lambda r: f"{r['accelerated']['per_sample_s'] / r['reference']['batchN_per_sample_s']:.1f}x")
    row("lava-sim + taps on every LIF: ms/step",
        lambda r: _f(r["accelerated_fidelity"]["ms_per_step_probed"], "{:.1f}"))
    row("fidelity lava-sim: mismatches", lambda r: _fid(r["accelerated_fidelity"]))
    row("fidelity lava-sim-stock: mismatches", lambda r: _fid(r["stock"]["fidelity"])
        if r["stock"] else "skipped")
    row("LIF firing rates (min..max)", lambda r: (
        f"{r['accelerated_fidelity']['rate_min']:.3f}..{r['accelerated_fidelity']['rate_max']:.3f}"
        + (f", {len(r['accelerated_fidelity']['silent_layers'])} silent"
           if r["accelerated_fidelity"]["silent_layers"] else "")))
    row("predictions == labels", lambda r: "-" if "labels" not in r else
        f"{sum(int(a == b) for a, b in zip(r['accelerated']['predictions'], r['labels']))}"
        f"/{len(r['labels'])}")

    w0 = max(len(n) for n, _ in rows)
    widths = [max(len(r["label"]), *(len(v[i]) for _, v in rows)) for i, r in enumerate(results)]
    lines = []
    m = machine
    lines.append(f"machine: {m['cpu']}; {m['cpu_count']} cores ({m['cpus_usable']} usable); "
                 f"load avg (1 min) at start {_f(m['loadavg_1m'], '{:.2f}')}; nice {m['nice']}")
    lines.append(f"         Python {m['python']}, numpy {m['numpy']}, torch {m['torch']} "
                 f"({m['torch_threads']} threads), lava-nc {m['lava']}; BLAS: "
                 f"{'; '.join(m['blas'])}; env OMP/OPENBLAS/MKL_NUM_THREADS = "
                 f"{'/'.join(str(v) for v in m['env_threads'].values())}")
    lines.append("")
    lines.append(f"{'':<{w0}}  " + "  ".join(f"{r['label']:<{w}}" for r, w in zip(results, widths)))
    lines.append("-" * (w0 + 2 + sum(widths) + 2 * (len(widths) - 1)))
    for name, vals in rows:
        lines.append(f"{name:<{w0}}  " + "  ".join(f"{v:<{w}}" for v, w in zip(vals, widths)))
    lines.append("")
    lines.append("s/sample (Lava) = T x ms/step of one streamed run without probes, start-up "
                 "excluded (steady state: a sample occupies T steps of the stream); "
                 "'stream wall' also counts the pipeline drain.")
    if any(r["stock"] and r["stock"]["timing"]["extrapolated"] for r in results):
        lines.append(f"EXTRAPOLATED: only --stock-steps={args.stock_steps} stock steps were run "
                     "(with Taps on the nodes compared); s/sample = T x their ms/step (the stock "
                     "Conv's cost does not depend on its input).")
    lines.append("Reference: compiler.reference.run_reference on the encoded input, nothing "
                 "recorded.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help="comma-separated zoo names (random weights) and/or .pth checkpoints")
    ap.add_argument("--samples", type=int, default=None,
                    help="samples streamed in the accelerated runs (default: 2 for "
                         f"cifar10-4-384, {SAMPLES_FALLBACK} otherwise)")
    ap.add_argument("--stock-steps", type=int, default=2,
                    help="steps run with the stock models on big configurations "
                         f"(> {STOCK_FULL_MAX_NEURONS:,} LIF neurons); per-sample time "
                         "is extrapolated (default 2)")
    ap.add_argument("--stock-steps-all", action="store_true",
                    help="run every configuration's stock case for --stock-steps steps only")
    ap.add_argument("--stock-samples", type=int, default=2,
                    help="samples streamed fully with the stock models on small "
                         "configurations (default 2)")
    ap.add_argument("--skip-stock", action="store_true", help="no stock runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.stock_steps < 1 or args.stock_samples < 1 or (args.samples is not None
                                                          and args.samples < 1):
        ap.error("--samples, --stock-steps and --stock-samples must be >= 1")

    machine = machine_info()
    t0 = time.perf_counter()
    results = [bench_config(spec.strip(), args) for spec in args.configs.split(",") if spec.strip()]
    total = time.perf_counter() - t0
    print(render(results, machine, args))
    print(f"total benchmark time {total:.0f} s")
    bad = [r["label"] for r in results
           if not r["accelerated_fidelity"]["exact"]
           or (r["stock"] and not r["stock"]["fidelity"]["exact"])]
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results,
                                         "total_s": total, "fidelity_ok": not bad},
                                        indent=2, default=float))
    if bad:
        print(f"FIDELITY FAILURE (Lava differs from the reference executor): {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
