"""Samples/s of spikeform-run's local worker processes: the shipped digits checkpoint on its
test split, 1 -> 2 -> N workers (deploy.parallel), each count measured in its own process.

    .venv/bin/python -m benchmarks.workers [--workers 1,2,4] [--samples 360] [--chunk 64]

Per count: the whole run's wall time (worker start-ups, Lava compile per chunk and stepping:
what a user waits for) and samples/s over it; the stepping-only rate that spikeform-run
reports (samples / the slowest worker's stepping time); ms per Lava step; and a check that the
logits equal the integer reference executor's. ``measure`` is the suite's job function
(benchmarks.suite runs ``benchmarks.workers:measure`` in its own subprocess), ``render`` its
table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/workers.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workloads import DIGITS_CKPT

DEFAULT_WORKERS = (1, 2, 4)
DEFAULT_SAMPLES = 360        # the digits test split
DEFAULT_CHUNK = 64           # spikeform-run's default


def measure(workers: int, samples: int = DEFAULT_SAMPLES, chunk: int = DEFAULT_CHUNK,
            spec: str = DIGITS_CKPT) -> dict:
    import numpy as np

    from benchmarks.workloads import load_workload
    from compiler.encoding import encode_integer
    from compiler.reference import run_reference
    from deploy.parallel import ArtifactFiles, array_inputs, run_sharded

    work = load_workload(spec, samples)
    x_seq = encode_integer(work.graph, work.x)
    artifact = ArtifactFiles.of_graph(work.graph)
    start = time.perf_counter()
    res = run_sharded(artifact, array_inputs(x_seq), samples, workers=workers, chunk=chunk)
    wall = time.perf_counter() - start
    reference = run_reference(work.graph, x_seq, encoded=True)
    return {"label": work.label, "workers": len(res.workers), "samples": samples,
            "chunk": chunk, "wall_s": wall, "samples_per_s_wall": samples / wall,
            "samples_per_s_stepping": res.samples_per_s, "ms_per_step": res.ms_per_step,
            "worker_startup_s": max(w.startup_s for w in res.workers),
            "lava_compile_s": res.compile_s,
            "logits_equal": bool(np.array_equal(res.logits, reference.logits))}


def render(rows: list) -> list:
    base = next((r["samples_per_s_wall"] for r in rows if r["workers"] == 1), None)
    lines = [f"{'workers':>7} {'wall s':>7} {'samples/s':>9} {'speed-up':>8} "
             f"{'stepping/s':>10} {'ms/step':>7} {'start-up s':>10}  equal to reference"]
    for r in rows:
        speedup = f"{r['samples_per_s_wall'] / base:.2f}x" if base else "-"
        lines.append(f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['samples_per_s_wall']:>9.1f} "
                     f"{speedup:>8} {r['samples_per_s_stepping']:>10.1f} "
                     f"{r['ms_per_step']:>7.1f} {r['worker_startup_s']:>10.1f}  "
                     f"{'yes' if r['logits_equal'] else 'NO'}")
    return lines


def main(argv=None) -> int:
    from benchmarks.isolate import MeasurementError, run_isolated
    from benchmarks.machine import describe, machine_info

    ap = argparse.ArgumentParser(prog="python -m benchmarks.workers",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default=",".join(map(str, DEFAULT_WORKERS)),
                    help="comma-separated worker counts (default %(default)s)")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    args = ap.parse_args(argv)
    try:
        counts = [int(v) for v in args.workers.split(",")]
    except ValueError:
        ap.error(f"--workers must be comma-separated integers, got '{args.workers}'")
    if not counts or min(counts) < 1:
        ap.error(f"--workers: every count must be >= 1, got '{args.workers}'")
    for line in describe(machine_info()):
        print(line, file=sys.stderr)
    rows, failed = [], False
    for n in counts:
        print(f"[workers {n}] {args.samples} samples ...", file=sys.stderr, flush=True)
        try:
            rows.append(run_isolated("benchmarks.workers:measure",
                                     dict(workers=n, samples=args.samples, chunk=args.chunk),
                                     args.timeout))
        except MeasurementError as e:
            print(f"  FAILED: {e}", file=sys.stderr)
            failed = True
    print("\n".join(render(rows)))
    return 1 if failed or not all(r["logits_equal"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
