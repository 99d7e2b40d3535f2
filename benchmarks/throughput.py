"""Float PyTorch model vs integer reference executor: samples/s on the same float batch.

Both take the batch as the data set yields it (the float model normalises it, the reference
executor encodes it onto its integer grid: each pays for its own input handling). One engine,
one batch size and one device per process, so that each has its own peak memory. On CUDA both
take the batch from the CPU and give their logits back to it, inside the timed call.

The table's ratio is reference / float samples/s: the fraction of the float model's speed the
bit-exact reference reaches (the goal of the "verification at scale" issue: at least
:data:`RATIO_GOALS` on CIFAR 4-384).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

ENGINES = ("float", "reference")
#: (workload, batch) -> the reference / float samples/s the reference executor must reach
RATIO_GOALS = {("cifar10-4-384", 1): 0.3, ("cifar10-4-384", 16): 0.5}


def devices() -> list[str]:
    """The devices to measure on: the CPU, and CUDA where this machine has it."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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
            max_repeats: int = 20, device: str = "cpu") -> dict[str, object]:
    import torch

    from benchmarks.workloads import load_workload
    from compiler.reference import run_reference

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    w = load_workload(workload, batch)
    if engine == "float":
        model = w.model.to(device)

        def step():
            with torch.no_grad():
                model(w.x.to(device)).cpu()    # .cpu() waits for a GPU to finish
    else:
        def step():
            run_reference(w.graph, w.x, device=device)
    times = _timed(step, min_time_s, max_repeats)
    median = statistics.median(times)
    return {"workload": workload, "label": w.label, "engine": engine, "batch": batch,
            "device": device, "s_per_batch": median, "samples_per_s": batch / median,
            "repeats": len(times), "torch_threads": torch.get_num_threads()}


def ratios(rows: list[dict]) -> list[dict]:
    """Per (workload, batch, device) measured by both engines: reference / float samples/s,
    with the goal where the issue set one."""
    out = []
    for (workload, label, batch, device), e in _cells(rows).items():
        f, r = e.get("float"), e.get("reference")
        if not (f and r):
            continue
        goal = RATIO_GOALS.get((workload, batch))
        ratio = r["samples_per_s"] / f["samples_per_s"]
        out.append({"workload": workload, "label": label, "batch": batch, "device": device,
                     "reference_over_float": ratio, "goal": goal,
                     "meets_goal": None if goal is None else ratio >= goal})
    return out


def render(rows: list[dict]) -> list[str]:
    """One line per (workload, batch, device): float and reference samples/s side by side,
    and reference / float (the goal's direction)."""
    cells = _cells(rows)
    w = max([len("workload"), *(len(label) for _, label, _, _ in cells)]) + 2
    out = [f"{'workload':<{w}}{'batch':>6}{'device':>8}{'float samples/s':>17}{'peak RSS':>10}"
           f"{'reference samples/s':>21}{'peak RSS':>10}  ref/float"]
    by_key = {(r["workload"], r["batch"], r["device"]): r for r in ratios(rows)}
    for (workload, label, batch, device), e in cells.items():
        f, r = e.get("float"), e.get("reference")
        ratio = by_key.get((workload, batch, device))
        cell = "-" if ratio is None else f"{ratio['reference_over_float']:.2f}x"
        if ratio and ratio["goal"] is not None:
            cell += f" (goal ≥ {ratio['goal']:g}x{'' if ratio['meets_goal'] else ': MISSED'})"
        out.append(f"{label:<{w}}{batch:>6}{device:>8}{_rate(f)}{_rss(f)}{_rate(r, 21)}"
                   f"{_rss(r)}  {cell}")
    return out


def _cells(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        key = (r["workload"], r["label"], r["batch"], r.get("device", "cpu"))
        cells.setdefault(key, {})[r["engine"]] = r
    return cells


def _rate(r, width: int = 17) -> str:
    return f"{r['samples_per_s']:>{width}.1f}" if r else f"{'-':>{width}}"


def _rss(r) -> str:
    return f"{r['peak_rss_mb']:>8.0f}MB" if r else f"{'-':>10}"
