"""Compile time and peak memory by configuration size, random weights, all passes.

    .venv/bin/python benchmarks/bench_compile.py [--configs a,b,...] [--json out.json]

Each configuration runs in its own process (so peak RSS is its own): model build, frontend
(model -> float IR), float passes (BN folding, max-pool rewrite), quantization (worst-case
overflow bounds, no calibration data), serialisation of the artifact.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

DEFAULT = ["test-micro", "digits-tiny", "fmnist-small", "cifar10-4-384", "imagenet-8-384",
           "imagenet-8-768"]


def measure(name: str) -> dict:
    import torch

    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize
    from compiler.serialize import save_graph
    from spikformer_neuro.model import build_model, count_parameters
    from spikformer_neuro.zoo import get_config

    torch.manual_seed(0)
    times = {}
    t = time.perf_counter()
    model = build_model(get_config(name)).eval()
    times["build_model"] = time.perf_counter() - t
    t = time.perf_counter()
    graph = model_to_ir(model)
    times["frontend"] = time.perf_counter() - t
    t = time.perf_counter()
    folded = float_passes(graph)
    times["float_passes"] = time.perf_counter() - t
    t = time.perf_counter()
    q = quantize(folded)
    times["quantize"] = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        save_graph(q, d)
    times["serialize"] = time.perf_counter() - t
    compile_s = times["frontend"] + times["float_passes"] + times["quantize"] + times["serialize"]
    return {"config": name, "params_m": count_parameters(model) / 1e6, "nodes": len(q.nodes),
            **{f"{k}_s": v for k, v in times.items()}, "compile_s": compile_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(DEFAULT))
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child process mode
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    rows = []
    for name in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    head = f"{'config':<16}{'params':>9}{'nodes':>7}{'frontend':>10}{'passes':>9}{'quantize':>10}{'write':>8}{'compile':>9}{'peak RSS':>10}"
    print(head)
    for r in rows:
        print(f"{r['config']:<16}{r['params_m']:>8.2f}M{r['nodes']:>7}{r['frontend_s']:>9.2f}s"
              f"{r['float_passes_s']:>8.2f}s{r['quantize_s']:>9.2f}s{r['serialize_s']:>7.2f}s"
              f"{r['compile_s']:>8.2f}s{r['peak_rss_mb']:>8.0f}MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
