"""Compile time by configuration size: random weights, every pass, default options.

Stages timed (model construction excluded): frontend (model -> float IR), float passes (BN
folding, max-pool rewrite), quantization (worst-case overflow bounds, no calibration data),
serialisation of the artifact; then, separately, lowering to Lava processes (``--target
lava-sim`` does it, ``--target reference`` does not).
"""
from __future__ import annotations

import tempfile
import time


def measure(config: str) -> dict[str, object]:
    import torch

    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize
    from compiler.serialize import save_graph
    from deploy.lava import lower
    from spikformer_neuro.model import build_model, count_parameters
    from spikformer_neuro.zoo import get_config

    torch.manual_seed(0)
    cfg = get_config(config)
    times: dict[str, float] = {}

    def stage(name, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        times[name] = time.perf_counter() - t
        return out

    model = stage("build_model", lambda: build_model(cfg).eval())
    graph = stage("frontend", model_to_ir, model)
    folded = stage("float_passes", float_passes, graph)
    q = stage("quantize", quantize, folded)
    with tempfile.TemporaryDirectory() as d:
        stage("serialize", save_graph, q, d)
    net = stage("lower", lower, q)
    return {"config": config, "params_m": count_parameters(model) / 1e6,
            "tokens": cfg.num_tokens, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "nodes": len(q.nodes), "lava_processes": len(net.stages),
            **{f"{k}_s": v for k, v in times.items()},
            "compile_s": sum(times[k] for k in ("frontend", "float_passes", "quantize",
                                                "serialize"))}


def render(rows: list[dict]) -> list[str]:
    out = [f"{'config':<16}{'params':>9}{'tokens':>7}{'nodes':>7}{'frontend':>10}{'passes':>9}"
           f"{'quantize':>10}{'write':>8}{'compile':>9}{'lower':>8}{'peak RSS':>10}"]
    for r in rows:
        out.append(f"{r['config']:<16}{r['params_m']:>8.2f}M{r['tokens']:>7}{r['nodes']:>7}"
                   f"{r['frontend_s']:>9.2f}s{r['float_passes_s']:>8.2f}s{r['quantize_s']:>9.2f}s"
                   f"{r['serialize_s']:>7.2f}s{r['compile_s']:>8.2f}s{r['lower_s']:>7.2f}s"
                   f"{r['peak_rss_mb']:>8.0f}MB")
    return out
