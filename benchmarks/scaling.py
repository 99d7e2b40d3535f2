"""How compile time and simulation time grow with tokens, embedding dimension and depth.

One base configuration; each axis varies one size while the others stay at the base value
(tokens through the image side: the SPS stem keeps its pooling, so tokens = (side/4)^2 and
the stem's work grows with them). Every point is a random-weight network that fires densely
(``spikformer_neuro.testing.densely_firing_model``), measured in its own process:

* compile: frontend + float passes + quantize + write (as ``benchmarks.compile_time``),
  median of three;
* reference: ``run_reference`` on the encoded input, batch 1, median over the samples after a
  warm-up call;
* Lava (accelerated models, ``lava-sim``): T x ms/step of one streamed run, start-up excluded;
  its logits must equal the reference executor's on the same samples.

The growth exponent k of ``cost ~ size^k`` is fitted on log-log axes over all points of an
axis, and also between its two largest points: small networks carry fixed costs (Python
dispatch, Lava's per-process synchronisation), so the last segment predicts larger models
better.
"""
from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass

import numpy as np

AXES = ("tokens", "dim", "depth")
COMPILE_REPEATS = 3
METRICS = (("compile_s", "compile s"), ("reference_s_per_sample", "reference s/sample"),
           ("lava_s_per_sample", "Lava accelerated s/sample"))


@dataclass(frozen=True)
class Plan:
    base: dict                     # SpikformerConfig fields of the base point
    axes: dict                     # axis -> list of (value, config overrides)
    samples: int                   # reference and Lava samples per point


def _side(tokens: int) -> int:
    return 4 * round(tokens ** 0.5)   # pool_stages (2, 3): side / 4 tokens per row


BASE = dict(name="scale", img_size=32, in_channels=3, num_classes=10, embed_dim=64, depth=1,
            num_heads=4, time_steps=4, pool_stages=(2, 3))
FULL = Plan(BASE, {"tokens": [(t, {"img_size": _side(t)}) for t in (16, 64, 256, 1024)],
                   "dim": [(d, {"embed_dim": d}) for d in (32, 64, 128, 256)],
                   "depth": [(n, {"depth": n}) for n in (1, 2, 4, 8)]}, samples=4)
QUICK = Plan(dict(BASE, img_size=8, in_channels=1, embed_dim=16, num_heads=2, time_steps=2),
             {"tokens": [(4, {}), (16, {"img_size": 16})], "depth": [(1, {}), (2, {"depth": 2})]},
             samples=2)


def points(plan: Plan) -> list[dict]:
    """Distinct configurations to measure (the base point is shared by the axes)."""
    seen: dict[tuple, dict] = {}
    for axis, values in plan.axes.items():
        for value, overrides in values:
            cfg = dict(plan.base, **overrides)
            key = tuple(sorted((k, str(v)) for k, v in cfg.items() if k != "name"))
            seen.setdefault(key, {"config": cfg, "axes": {}})["axes"][axis] = value
    return list(seen.values())


def measure_point(config: dict, samples: int) -> dict:
    from benchmarks.workloads import compile_random
    from compiler.encoding import encode_integer
    from compiler.reference import run_reference
    from compiler.serialize import save_graph
    from deploy.lava import lower, run
    from spikformer_neuro.config import SpikformerConfig
    from spikformer_neuro.model import count_parameters
    from spikformer_neuro.testing import densely_firing_model, random_input

    cfg = SpikformerConfig.from_dict(config)
    model = densely_firing_model(cfg, seed=0)
    compile_times = []
    for _ in range(COMPILE_REPEATS):  # fast and noisy at these sizes: median of a few
        t = time.perf_counter()
        q = compile_random(model)
        with tempfile.TemporaryDirectory() as d:
            save_graph(q, d)
        compile_times.append(time.perf_counter() - t)

    x_seq = encode_integer(q, random_input(cfg, samples))
    run_reference(q, x_seq[:, :1], encoded=True)                   # warm-up
    ref_times = []
    for i in range(samples):
        t = time.perf_counter()
        run_reference(q, x_seq[:, i:i + 1], encoded=True)
        ref_times.append(time.perf_counter() - t)
    ref_logits = run_reference(q, x_seq, encoded=True).logits

    t = time.perf_counter()
    net = lower(q)
    lower_s = time.perf_counter() - t
    res = run(net, x_seq, target="lava-sim")
    lif = q.by_op("loihi_lif")
    return {"tokens": cfg.num_tokens, "dim": cfg.embed_dim, "depth": cfg.depth,
            "img_size": cfg.img_size, "time_steps": cfg.time_steps,
            "params_m": count_parameters(model) / 1e6,
            "lif_neurons": int(sum(np.prod(n.shape) for n in lif)), "nodes": len(q.nodes),
            "lava_processes": len(net.stages), "compile_s": float(np.median(compile_times)),
            "lower_s": lower_s,
            "reference_s_per_sample": float(np.median(ref_times)),
            "lava_startup_s": res.compile_s, "lava_ms_per_step": res.ms_per_step,
            "lava_s_per_sample": cfg.time_steps * res.ms_per_step / 1e3,
            "samples": samples, "logits_equal": bool(np.array_equal(res.logits, ref_logits))}


def growth_exponent(x, y) -> float:
    """k of y ~ c * x^k, least squares on log-log axes."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"need two or more positive points to fit a growth exponent, got "
                         f"x={x.tolist()} y={y.tolist()}")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def series(plan: Plan, results: list[dict]) -> dict:
    """axis -> sorted [(value, point result)] for the points measured without error."""
    out = {}
    for axis, values in plan.axes.items():
        wanted = {v for v, _ in values}
        pts = [(r["axes"][axis], r) for r in results
               if axis in r["axes"] and r["axes"][axis] in wanted and "error" not in r]
        out[axis] = sorted(pts, key=lambda p: p[0])
    return out


def fits(plan: Plan, results: list[dict]) -> dict:
    out: dict = {}
    for axis, pts in series(plan, results).items():
        if len(pts) < 2:
            continue
        xs = [v for v, _ in pts]
        for key, _ in METRICS:
            ys = [r[key] for _, r in pts]
            out.setdefault(axis, {})[key] = {
                "all_points": growth_exponent(xs, ys),
                "last_two": growth_exponent(xs[-2:], ys[-2:])}
    return out


def render(plan: Plan, results: list[dict], fitted: dict) -> list[str]:
    lines = [f"{'axis':<7}{'value':>6}{'tokens':>7}{'dim':>5}{'depth':>6}{'params':>8}"
             f"{'LIF neurons':>12}{'procs':>6}{'compile':>9}{'reference':>11}{'Lava accel':>12}"
             f"{'Lava start':>11}{'peak RSS':>10}  logits"]
    for axis, pts in series(plan, results).items():
        for value, r in pts:
            lines.append(
                f"{axis:<7}{value:>6}{r['tokens']:>7}{r['dim']:>5}{r['depth']:>6}"
                f"{r['params_m']:>7.2f}M{r['lif_neurons']:>12,}{r['lava_processes']:>6}"
                f"{r['compile_s']:>8.3f}s{r['reference_s_per_sample']:>10.4f}s"
                f"{r['lava_s_per_sample']:>11.4f}s{r['lava_startup_s']:>10.2f}s"
                f"{r['peak_rss_mb']:>8.0f}MB  {'equal' if r['logits_equal'] else 'DIFFER'}")
    lines.append("reference and Lava: seconds per sample (batch 1; Lava = T x ms/step of a "
                 "stream, start-up excluded).")
    lines.append("growth exponent k (cost ~ size^k), all points / two largest points:")
    lines.append(f"{'axis':<7}" + "".join(f"{label:>30}" for _, label in METRICS))
    for axis, per in fitted.items():
        lines.append(f"{axis:<7}" + "".join(
            f"{per[key]['all_points']:>22.2f} / {per[key]['last_two']:>5.2f}"
            for key, _ in METRICS))
    return lines


def plot_png(plan: Plan, results: list[dict], fitted: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ser = {a: p for a, p in series(plan, results).items() if len(p) >= 2}
    fig, axes = plt.subplots(1, max(len(ser), 1), figsize=(4.2 * max(len(ser), 1), 3.6),
                             squeeze=False)
    for ax, (axis, pts) in zip(axes[0], ser.items()):
        xs = [v for v, _ in pts]
        for key, label in METRICS:
            k = fitted[axis][key]["all_points"]
            ax.loglog(xs, [r[key] for _, r in pts], "o-", label=f"{label} (k={k:.2f})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel({"tokens": "tokens", "dim": "embedding dimension",
                       "depth": "depth (blocks)"}[axis])
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Spikformer cost scaling (random weights; others at the base configuration)",
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
