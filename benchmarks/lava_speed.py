"""Lava simulation per-sample time: stock models vs accelerated models vs the reference
executor, with a spike-for-spike fidelity check of every Lava run.

Workloads: a zoo name (random weights that fire densely, uniform random images; seeds fixed) or
a ``.pth`` checkpoint (its first test samples). Measured per workload:

* ``lava-sim`` (accelerated models): samples streamed back to back in one Lava run without
  probes (the median of three, interleaved with the two floors of ``benchmarks.lava_floor``:
  the network without its arithmetic, and a chain of as many relay processes). Start-up (compile + worker start) is reported separately. ms/step = stepping time /
  steps of that run (B*T + pipeline drain; every process steps every step, so all steps cost
  alike). Per-sample time, steady state = T x ms/step: in a stream each sample occupies T steps.
  "stream wall / sample" is the whole run's stepping time / B (it includes the drain).
* ``lava-sim-stock`` (Lava's own Conv/LIF models): above ``STOCK_FULL_MAX_NEURONS`` LIF neurons
  (or with ``stock="partial"``) only ``stock_steps`` steps run and per-sample time is
  EXTRAPOLATED as T x ms/step (the stock Conv's cost does not depend on its input: it loops
  over every channel pair); otherwise ``stock_samples`` samples stream completely.
* the reference executor (``compiler.reference.run_reference`` on the encoded input, nothing
  recorded) at batch 1 (mean over the streamed samples, after one warm-up call) and batch 16.
* fidelity: every accelerated run is repeated through
  ``deploy.lava.verify.verify_against_reference`` (a Tap on every LIF population, every spike
  and logit compared with the reference). Full stock runs get the same check; a partial stock
  run compares the steps it produced of every node whose pipeline lag is short enough.

Lava runs every process as an OS process and its per-step synchronisation dominates when cores
are shared: run on a quiet machine for meaningful absolute numbers.
"""
from __future__ import annotations

import time

import numpy as np

STOCK_FULL_MAX_NEURONS = 200_000   # above this many LIF neurons the stock run is partial
STOCK_MODES = ("auto", "partial", "skip")
GOAL_STOCK_OVER_ACCEL = 100.0      # the goals of the Lava acceleration issue
GOAL_ACCEL_OVER_REF = 3.0
GOAL_ACCEL_OVER_FLOOR = 1.5        # the verification-at-scale issue: lava-sim vs an empty network
FLOOR_REPEATS = 3
REF_BATCH = 16


# -- measurements ------------------------------------------------------------------------------
def time_reference(graph, x_seq: np.ndarray) -> float:
    from compiler.reference import run_reference
    t = time.perf_counter()
    run_reference(graph, x_seq, encoded=True)
    return time.perf_counter() - t


def lava_timing(net, x_seq: np.ndarray, target: str) -> dict[str, float]:
    """One streamed run without probes: start-up, ms/step, per-sample (T x ms/step)."""
    from deploy.lava import run
    res = run(net, x_seq, target=target)
    T, B = net.time_steps, x_seq.shape[1]
    ms = res.ms_per_step
    return {"samples": B, "steps": res.num_steps, "startup_s": res.compile_s,
            "run_s": res.run_s, "ms_per_step": ms, "per_sample_s": T * ms / 1e3,
            "stream_wall_per_sample_s": res.run_s / B, "extrapolated": False,
            "predictions": res.predictions.tolist()}


def lava_and_floor(net, x_seq: np.ndarray, repeats: int = None) -> tuple[dict, dict, dict]:
    """lava-sim timing and the two floors of benchmarks.lava_floor, run the same number of
    steps: the network without its arithmetic (same processes, ports and channels: "wired")
    and a chain of as many relay processes ("chain"), interleaved ``repeats`` times so that all
    see the same machine load; the median run of each by ms/step."""
    from benchmarks.lava_floor import measure_floor, measure_wired_floor

    runs, wired, chain = [], [], []
    for _ in range(repeats or FLOOR_REPEATS):
        runs.append(lava_timing(net, x_seq, "lava-sim"))
        wired.append(measure_wired_floor(net, runs[-1]["steps"]))
        chain.append(measure_floor(len(net.stages), runs[-1]["steps"]))

    def median(items: list[dict]) -> dict:
        ordered = sorted(items, key=lambda r: r["ms_per_step"])
        return {**ordered[len(ordered) // 2], "runs_ms_per_step": [r["ms_per_step"] for r in items]}
    return median(runs), median(wired), median(chain)


def lava_fidelity(graph, x_seq: np.ndarray, target: str) -> dict[str, object]:
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


def stock_partial(graph, net, x_seq: np.ndarray, steps: int) -> dict[str, object]:
    """Stock models for the first ``steps`` Lava steps only; per-sample time extrapolated.
    Taps on every node whose lag leaves it at least one produced step; those steps are
    compared with the reference executor."""
    from compiler.reference import run_reference
    from deploy.lava.build import build
    from loihi_numerics import fixed_point as fx
    from deploy.lava.runner import receive_messages
    from deploy.lava.runtime import create_runtime, run_steps, runtime_of, stop_runtime
    from deploy.lava.targets import run_config

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
            got = fx.from_lava_layout(recs[n][i]).astype(np.int64)   # (W, H, C) -> (C, H, W)
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


def measure(spec: str, samples: int, stock: str = "auto", stock_steps: int = 2,
            stock_samples: int = 2) -> dict[str, object]:
    from benchmarks.workloads import load_workload
    from compiler.encoding import encode_integer
    from deploy.lava import lower

    if stock not in STOCK_MODES:
        raise ValueError(f"stock must be one of {STOCK_MODES}, got {stock!r}")
    if min(samples, stock_steps, stock_samples) < 1:
        raise ValueError("samples, stock_steps and stock_samples must be >= 1")
    w = load_workload(spec, max(samples, REF_BATCH))
    graph = w.graph
    log(f"== {w.label}")
    x_all = encode_integer(graph, w.x)                     # [T, max(B, 16), ...]
    x_seq = x_all[:, :samples]
    net = lower(graph)
    T = net.time_steps
    out: dict[str, object] = {
        "config": spec, "label": w.label, "time_steps": T, "input_shape": list(net.input_shape),
        "pipeline_depth": net.max_lag, "processes": len(net.stages),
        "lif_layers": len(graph.by_op("loihi_lif")), "lif_neurons": lif_neurons(graph),
        "samples": samples}
    if w.labels is not None:
        out["labels"] = w.labels[:samples].tolist()

    log("  reference executor ...")
    time_reference(graph, x_all[:, :1])                  # warm-up
    b1 = [time_reference(graph, x_seq[:, i:i + 1]) for i in range(samples)]
    nb = min(REF_BATCH, x_all.shape[1])
    out["reference"] = {"batch1_s": float(np.mean(b1)), "batch1_runs": len(b1), "batch": nb,
                        "batchN_per_sample_s": time_reference(graph, x_all[:, :nb]) / nb}

    log(f"  lava-sim: streaming {samples} samples, and the floor (an empty network of "
        f"{len(net.stages)} processes), {FLOOR_REPEATS} times each, interleaved ...")
    out["accelerated"], out["floor"], out["floor_chain"] = lava_and_floor(net, x_seq)
    log(f"    {out['accelerated']['ms_per_step']:.1f} ms/step (floors: wired "
        f"{out['floor']['ms_per_step']:.1f}, chain {out['floor_chain']['ms_per_step']:.1f}); "
        "verifying against the reference")
    out["accelerated_fidelity"] = lava_fidelity(graph, x_seq, "lava-sim")
    log(f"    mismatches: spikes {out['accelerated_fidelity']['spike_mismatches']}, "
        f"logits {out['accelerated_fidelity']['logit_mismatches']}")

    if stock == "skip":
        out["stock"] = None
    elif stock == "partial" or out["lif_neurons"] > STOCK_FULL_MAX_NEURONS:
        log(f"  lava-sim-stock: {stock_steps} steps only (extrapolated) ...")
        out["stock"] = stock_partial(graph, net, x_seq, stock_steps)
    else:
        xs = x_seq[:, :min(stock_samples, samples)]
        log(f"  lava-sim-stock: streaming {xs.shape[1]} samples ...")
        timing = lava_timing(net, xs, "lava-sim-stock")
        out["stock"] = {"timing": timing, "fidelity": lava_fidelity(graph, xs, "lava-sim-stock")}
    if out["stock"]:
        log(f"    stock: {out['stock']['timing']['ms_per_step']:.1f} ms/step, mismatches "
            f"{out['stock']['fidelity']['spike_mismatches']}")

    acc, ref = out["accelerated"]["per_sample_s"], out["reference"]["batch1_s"]
    out["accel_over_ref_b1"] = acc / ref
    out["accel_over_floor"] = out["accelerated"]["ms_per_step"] / out["floor"]["ms_per_step"]
    out["accel_over_chain_floor"] = (out["accelerated"]["ms_per_step"]
                                     / out["floor_chain"]["ms_per_step"])
    out["stock_over_accel"] = (out["stock"]["timing"]["per_sample_s"] / acc
                               if out["stock"] else None)
    out["exact"] = bool(out["accelerated_fidelity"]["exact"]
                        and (not out["stock"] or out["stock"]["fidelity"]["exact"]))
    return out


def log(msg: str) -> None:
    import sys
    print(msg, file=sys.stderr, flush=True)


def _f(v, fmt: str = "{:.3f}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def _fid(f: dict | None) -> str:
    if not f:
        return "-"
    if f["kind"] == "partial":
        return (f"{f['spike_mismatches']} / {f['values_compared']} values of "
                f"{f['layers']} node(s) (partial)")
    return (f"{f['spike_mismatches']} / {f['spikes_compared']:,} ({f['layers']} LIF layers); "
            f"logits {f['logit_mismatches']}/{f['samples']}")


def render(results: list[dict]) -> list[str]:
    """One column per workload (the rows are many and the workloads few)."""
    rows: list[tuple] = []

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
    row("floor, wired (no arithmetic): ms/step",
        lambda r: f"{r['floor']['ms_per_step']:.1f} ({r['floor']['channels']} channels)")
    row("floor, chain (as many relays): ms/step",
        lambda r: _f(r["floor_chain"]["ms_per_step"], "{:.1f}"))
    row("floor: ms per process per step (wired / chain)",
        lambda r: f"{r['floor']['ms_per_process_step']:.3f} / "
                  f"{r['floor_chain']['ms_per_process_step']:.3f}")
    row(f"lava-sim / wired floor (goal <= {GOAL_ACCEL_OVER_FLOOR}x)",
        lambda r: f"{r['accel_over_floor']:.2f}x "
        + ("ok" if r["accel_over_floor"] <= GOAL_ACCEL_OVER_FLOOR else "MISSED"))
    row("lava-sim / chain floor", lambda r: f"{r['accel_over_chain_floor']:.2f}x")
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
        lambda r: f"{r['accelerated']['per_sample_s'] / r['reference']['batchN_per_sample_s']:.1f}"
                  "x")
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

    row("peak RSS (largest process)", lambda r: f"{r['peak_rss_mb']:.0f} MB")

    w0 = max(len(n) for n, _ in rows)
    widths = [max(len(r["label"]), *(len(v[i]) for _, v in rows)) for i, r in enumerate(results)]
    lines = [f"{'':<{w0}}  " + "  ".join(f"{r['label']:<{w}}" for r, w in zip(results, widths)),
             "-" * (w0 + 2 + sum(widths) + 2 * (len(widths) - 1))]
    for name, vals in rows:
        lines.append(f"{name:<{w0}}  " + "  ".join(f"{v:<{w}}" for v, w in zip(vals, widths)))
    lines.append("s/sample (Lava) = T x ms/step of one streamed run without probes, start-up "
                 "excluded (steady state: a sample occupies T steps of the stream); "
                 "'stream wall' also counts the pipeline drain. Floors (benchmarks/lava_floor): "
                 "'wired' = the network with its arithmetic removed (same processes, ports, "
                 "shapes and channels; receive everything, send zeros), 'chain' = as many relay "
                 f"processes in a chain; lava-sim and both floors run {FLOOR_REPEATS} times "
                 "each, interleaved; the medians are shown.")
    partial = [r for r in results if r["stock"] and r["stock"]["timing"]["extrapolated"]]
    if partial:
        steps = sorted({r["stock"]["timing"]["steps"] for r in partial})
        lines.append(f"EXTRAPOLATED: only {'/'.join(map(str, steps))} stock step(s) were run "
                     "(with Taps on the nodes compared); s/sample = T x their ms/step (the "
                     "stock Conv's cost does not depend on its input).")
    return lines
