"""The benchmark suite: one command, one table, one JSON file (docs/benchmarks.md).

    .venv/bin/python -m benchmarks.suite [--quick] [--only throughput,compile,lava,workers,scaling]
                                         [--out runs/bench] [--threads N] [--timeout S]
    make bench

Parts (default: all but ``training``):
  throughput  float PyTorch model vs integer reference executor, samples/s at several batch
              sizes (the shipped digits checkpoint; CIFAR 4-384 with random weights), on the
              CPU and, where present, CUDA; reference/float per batch in "throughput_ratios"
  compile     compile time by configuration size (digits-tiny ... imagenet-8-768)
  lava        Lava-sim per-sample time: stock vs accelerated models vs the reference executor
              vs the floor (an empty network of as many processes, as many steps), every Lava
              run checked spike for spike against the reference
  workers     spikeform-run's local worker processes, 1 -> 2 -> 4 workers (samples/s, logits
              equal to the reference)
  scaling     compile and simulation time against tokens, embedding dimension and depth,
              with fitted growth exponents and a PNG plot
  training    training samples/s (AdamW steps on random inputs)
Every measurement runs in its own subprocess; "peak RSS" is that subprocess's (or its largest
Lava worker's) peak resident memory. Writes <out>/suite.json (or suite-quick.json) and
<out>/scaling.png (scaling-quick.png) atomically, after every measurement. Exit status 1 when
a measurement failed or Lava differed from the reference executor.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/suite.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import compile_time, lava_speed, scaling, throughput, training, workers
from benchmarks.isolate import MeasurementError, run_isolated
from benchmarks.machine import THREAD_VARS, describe, machine_info
from benchmarks.workloads import DIGITS_CKPT, ROOT

PARTS = ("throughput", "compile", "lava", "workers", "scaling", "training")
DEFAULT_PARTS = ("throughput", "compile", "lava", "workers", "scaling")


@dataclass(frozen=True)
class Mode:
    name: str
    throughput: list                 # (workload, [batch sizes])
    min_time_s: float                # timed repeats per throughput measurement
    compile_configs: list
    lava: list                       # lava_speed.measure keyword arguments
    scaling: scaling.Plan
    workers: list = field(default_factory=list)    # workers.measure keyword arguments
    training: list = field(default_factory=list)   # training.measure keyword arguments
    timeout_s: float = 1800.0        # per measurement


QUICK = Mode(
    "quick", throughput=[(DIGITS_CKPT, [1, 8])], min_time_s=0.2,
    compile_configs=["test-micro", "digits-tiny"],
    lava=[dict(spec=DIGITS_CKPT, samples=2, stock="partial", stock_steps=2)],
    scaling=scaling.QUICK, workers=[dict(workers=n, samples=8) for n in (1, 2)],
    training=[dict(config="test-micro", batch=8, repeats=2)],
    timeout_s=300.0)
FULL = Mode(
    "full", throughput=[(DIGITS_CKPT, [1, 16, 64, 256]), ("cifar10-4-384", [1, 4, 16])],
    min_time_s=2.0,
    compile_configs=["digits-tiny", "fmnist-small", "cifar10-4-384", "imagenet-8-384",
                     "imagenet-8-768"],
    lava=[dict(spec="cifar10-4-384", samples=2, stock="auto", stock_steps=2),
          # 32 samples (138 steps): the first step's one-off work (each Conv builds its
          # plan) must not dominate the ms/step that the floors are compared with
          dict(spec=DIGITS_CKPT, samples=32, stock="auto", stock_samples=2)],
    scaling=scaling.FULL,
    workers=[dict(workers=n, samples=360) for n in (1, 2, 4)],
    training=[dict(config="digits-tiny", batch=64, repeats=5),
              dict(config="fmnist-small", batch=64, repeats=5)])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Job:
    part: str
    target: str                      # module:function run in the subprocess
    params: dict
    describe: str
    keep: dict = field(default_factory=dict)   # added to the result (e.g. the scaling axes)


def jobs_for(part: str, mode: Mode) -> list[Job]:
    if part == "throughput":   # CUDA rows only where this machine has CUDA
        return [Job(part, "benchmarks.throughput:measure",
                    dict(workload=w, engine=e, batch=b, min_time_s=mode.min_time_s, device=d),
                    f"{Path(w).stem} {e} batch {b}" + ("" if d == "cpu" else f" on {d}"))
                for d in throughput.devices() for w, batches in mode.throughput
                for b in batches for e in throughput.ENGINES]
    if part == "compile":
        return [Job(part, "benchmarks.compile_time:measure", dict(config=c), c)
                for c in mode.compile_configs]
    if part == "lava":
        return [Job(part, "benchmarks.lava_speed:measure", kw, Path(kw["spec"]).stem)
                for kw in mode.lava]
    if part == "workers":
        return [Job(part, "benchmarks.workers:measure", kw, f"{kw['workers']} workers")
                for kw in mode.workers]
    if part == "scaling":
        return [Job(part, "benchmarks.scaling:measure_point",
                    dict(config=p["config"], samples=mode.scaling.samples),
                    ", ".join(f"{a} {v}" for a, v in p["axes"].items()), {"axes": p["axes"]})
                for p in scaling.points(mode.scaling)]
    if part == "training":
        return [Job(part, "benchmarks.training:measure", kw, kw["config"]) for kw in mode.training]
    raise ValueError(f"unknown part {part!r}")


def failures(results: dict) -> list[str]:
    """Failed measurements and Lava runs that differ from the reference executor."""
    out = []
    for part in PARTS:
        rows = results.get(part, {}).get("points", []) if part == "scaling" \
            else results.get(part, [])
        for r in rows:
            if "error" in r:
                out.append(f"{part}: {r['error']}")
            elif part == "lava" and not r["exact"]:
                out.append(f"lava: {r['label']}: Lava differs from the reference executor "
                           "(see the fidelity rows)")
            elif part == "workers" and not r["logits_equal"]:
                out.append(f"workers: {r['workers']} workers: logits differ from the "
                           "reference's")
            elif part == "scaling" and not r["logits_equal"]:
                out.append(f"scaling: {r['axes']}: Lava logits differ from the reference's")
    return out


def render(results: dict, plan: scaling.Plan) -> str:
    lines = describe(results["machine"])
    sections: list[tuple[str, str, Callable[[list], list[str]]]] = [
        ("throughput", "Float PyTorch model vs reference executor (same float batch)",
         throughput.render),
        ("compile", "Compile time by configuration (random weights, all passes)",
         compile_time.render),
        ("lava", "Lava simulation: stock vs accelerated vs reference vs the floor",
         lava_speed.render),
        ("workers", "spikeform-run over local worker processes (digits-tiny, test split)",
         workers.render),
        ("training", "Training throughput (random inputs)", training.render)]
    for part, title, fn in sections:
        if part not in results:
            continue
        ok = [r for r in results[part] if "error" not in r]
        lines += ["", f"== {title}"] + (fn(ok) if ok else ["(no successful measurement)"])
        lines += [f"FAILED: {r['error']}" for r in results[part] if "error" in r]
    if "scaling" in results:
        sc = results["scaling"]
        ok = [r for r in sc["points"] if "error" not in r]
        lines += ["", "== Scaling (random weights; one size varied, the others at the base "
                  f"configuration: {sc['base_description']})"]
        lines += scaling.render(plan, ok, sc["exponents"]) if ok else ["(no successful point)"]
        lines += [f"FAILED: {r['error']}" for r in sc["points"] if "error" in r]
        if sc.get("plot"):
            lines.append(f"plot: {sc['plot']}")
    lines += ["", f"total {results['total_s']:.0f} s ({results['mode']} mode); "
              f"peak RSS = the largest process of each measurement, each in its own subprocess"]
    bad = failures(results)
    if bad:
        lines += ["", "FAILURES:"] + [f"  {b}" for b in bad]
    return "\n".join(lines)


def parse_parts(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(PARTS)
    unknown = [p for p in names if p not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(PARTS)} or 'all' (comma-separated)")
    return [p for p in PARTS if p in names]      # suite order


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.suite",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true",
                    help="smoke mode: the smallest workloads, well under a minute when idle")
    ap.add_argument("--only", type=parse_parts, default=list(DEFAULT_PARTS),
                    help=f"comma-separated parts (default {','.join(DEFAULT_PARTS)}; 'all')")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench",
                    help="directory for the JSON and the plot (default runs/bench)")
    ap.add_argument("--threads", type=int, default=None,
                    help="set OMP/MKL/OPENBLAS_NUM_THREADS for every measurement (default: "
                         "inherit the environment)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help=f"benchmark this checkpoint instead of {DIGITS_CKPT} in the "
                         "throughput and lava parts")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed per measurement (default 300 quick, 1800 full)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be >= 1, got {args.threads}")
        os.environ.update({k: str(args.threads) for k in THREAD_VARS})  # children inherit
    mode = QUICK if args.quick else FULL
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            ap.error(f"--checkpoint {args.checkpoint}: no such file (a .pth written by "
                     "spikeform-train)")
        mode = with_checkpoint(mode, str(args.checkpoint.resolve()))
    timeout = args.timeout or mode.timeout_s
    suffix = "-quick" if args.quick else ""
    json_path, png_path = args.out / f"suite{suffix}.json", args.out / f"scaling{suffix}.png"

    from compiler.serialize import write_atomic

    start = time.perf_counter()
    results: dict = {"suite": "spikformer-neuro benchmarks", "mode": mode.name,
                     "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.suite",
                                          *(argv if argv is not None else sys.argv[1:])]),
                     "parts": args.only,
                     "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine_info(), "total_s": 0.0}
    for line in describe(results["machine"]):
        log(line)

    def save() -> None:
        results["total_s"] = time.perf_counter() - start
        results["failures"] = failures(results)
        write_atomic(json_path, json.dumps(results, indent=1).encode())

    for part in args.only:
        jobs = jobs_for(part, mode)
        rows: list[dict] = []
        if part == "scaling":
            results[part] = {"base": dict(mode.scaling.base),
                             "base_description": _base_text(mode.scaling.base),
                             "axes": {a: [v for v, _ in vals]
                                      for a, vals in mode.scaling.axes.items()},
                             "points": rows, "exponents": {}, "plot": None}
        else:
            results[part] = rows
        for i, job in enumerate(jobs, 1):
            log(f"[{part} {i}/{len(jobs)}] {job.describe} ...")
            try:
                row = run_isolated(job.target, job.params, timeout)
            except MeasurementError as exc:
                log(f"  FAILED: {exc}")
                row = {"error": f"{job.describe}: {exc}", "params": job.params}
            rows.append({**job.keep, **row})
            save()
        if part == "throughput":   # reference / float samples/s, against the goals
            results["throughput_ratios"] = throughput.ratios(
                [r for r in rows if "error" not in r])
            save()
        if part == "scaling":
            ok = [r for r in rows if "error" not in r]
            results[part]["exponents"] = scaling.fits(mode.scaling, ok)
            if any(len(p) >= 2 for p in scaling.series(mode.scaling, ok).values()):
                write_atomic(png_path, scaling.plot_png(mode.scaling, ok,
                                                        results[part]["exponents"]))
                results[part]["plot"] = str(png_path)
            save()
    save()
    print(render(results, mode.scaling))
    print(f"results: {json_path}  (README tables: python -m benchmarks.markdown {json_path})")
    return 1 if results["failures"] else 0


def with_checkpoint(mode: Mode, path: str) -> Mode:
    """``mode`` with the digits checkpoint replaced by ``path``."""
    def swap(spec: str) -> str:
        return path if spec == DIGITS_CKPT else spec

    return replace(mode, throughput=[(swap(w), b) for w, b in mode.throughput],
                   lava=[dict(kw, spec=swap(kw["spec"])) for kw in mode.lava])


def _base_text(base: dict) -> str:
    return (f"{base['img_size']}x{base['img_size']}x{base['in_channels']} input, "
            f"D {base['embed_dim']}, depth {base['depth']}, {base['num_heads']} heads, "
            f"T {base['time_steps']}")


if __name__ == "__main__":
    sys.exit(main())
