"""Float PyTorch model vs integer reference executor: samples/s on the same float batch.

Both take the batch as the data set yields it (the float model normalises it, the reference
executor encodes it onto its integer grid: each pays for its own input handling). One engine
and one batch size per process, so that each has its own peak memory.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

ENGINES = ("float", "reference")


def _timed(fn: Callable[[], object], min_time_s: float, max_repeats: int) -> list[float]:
    """One warm-up call, then repeats until ``min_time_s`` has passed (at least one)."""
    fn()
    times: list[float] = []
    while not times or (sum(times) < min_time_s and len(times) < max_repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def measure(workload: str, engine: str, batch: int, min_time_s: float = 2.0,
            max_repeats: int = 20) -> dict[str, object]:
    import torch

    from benchmarks.workloads import load_workload
    from compiler.reference import run_reference

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    w = load_workload(workload, batch)
    if engine == "float":
        def step():
            with torch.no_grad():
                w.model(w.x)
    else:
        def step():
            run_reference(w.graph, w.x)
    times = _timed(step, min_time_s, max_repeats)
    median = statistics.median(times)
    return {"workload": workload, "label": w.label, "engine": engine, "batch": batch,
            "s_per_batch": median, "samples_per_s": batch / median, "repeats": len(times),
            "torch_threads": torch.get_num_threads()}


def render(rows: list[dict]) -> list[str]:
    """One line per (workload, batch): float and reference samples/s side by side."""
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["label"], r["batch"]), {})[r["engine"]] = r
    w = max([len("workload"), *(len(label) for label, _ in cells)]) + 2
    out = [f"{'workload':<{w}}{'batch':>6}{'float samples/s':>17}{'peak RSS':>10}"
           f"{'reference samples/s':>21}{'peak RSS':>10}{'float/ref':>11}"]
    for (label, batch), e in cells.items():
        f, r = e.get("float"), e.get("reference")
        ratio = f"{f['samples_per_s'] / r['samples_per_s']:>10.1f}x" if f and r else f"{'-':>11}"
        out.append(f"{label:<{w}}{batch:>6}{_rate(f)}{_rss(f)}{_rate(r, 21)}{_rss(r)}{ratio}")
    return out


def _rate(r, width: int = 17) -> str:
    return f"{r['samples_per_s']:>{width}.1f}" if r else f"{'-':>{width}}"


def _rss(r) -> str:
    return f"{r['peak_rss_mb']:>8.0f}MB" if r else f"{'-':>10}"
