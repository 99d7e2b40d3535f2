"""Per-step time of stock vs deploy.accelerated fixed-point Lava models.

Run:  python benchmarks/bench_accelerated_models.py [--steps 3] [--stock-budget 60]

Two columns per model:
* "compute": the ProcessModel's ``run_spk`` alone (fake ports, no runtime),
  median over ``--steps`` steps after one warm-up step;
* "in Lava": a RingBuffer -> <process> -> RingBuffer network run in the Lava
  CPU simulator with ``Loihi2SimCfg(select_tag="fixed_pt")`` or
  ``accelerated_run_config()``; (wall time of ``run(RunSteps(steps))``) /
  steps, after a 1-step warm-up run (which includes compile and start-up).

Stock cases are estimated first (a few output channels, scaled) and skipped
when they would exceed the remaining ``--stock-budget`` seconds. Every
accelerated result is checked against stock's on the steps that ran.
Inputs: 20% binary spikes; weights: random 8-bit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import typing as ty
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.conv import utils as conv_utils  # noqa: E402
from lava.proc.conv.models import PyConvModelFixed  # noqa: E402
from lava.proc.conv.process import Conv  # noqa: E402
from lava.proc.io.sink import RingBuffer as SinkBuffer  # noqa: E402
from lava.proc.io.source import RingBuffer as SourceBuffer  # noqa: E402
from lava.proc.lif.models import PyLifModelBitAcc  # noqa: E402
from lava.proc.lif.process import LIF  # noqa: E402

from deploy.accelerated import accelerated_run_config  # noqa: E402
from deploy.accelerated.models import (PyConvModelFixedAccelerated,  # noqa: E402
                                       PyLifModelBitAccAccelerated)


class _In:
    def __init__(self, data: ty.List[np.ndarray]) -> None:
        self.data, self.i = data, 0

    def recv(self) -> np.ndarray:
        x = self.data[self.i % len(self.data)]
        self.i += 1
        return x.copy()


class _Out:
    def __init__(self) -> None:
        self.last: ty.Optional[np.ndarray] = None

    def send(self, d: np.ndarray) -> None:
        self.last = d


# -- model factories (no runtime) -------------------------------------------
def conv_model(cls, w, in_shape, pad, inputs):
    m = cls({})
    ks = w.shape[1:3]
    out = conv_utils.output_shape(in_shape, w.shape[0], ks, (1, 1), (pad, pad), (1, 1))
    m.weight = w.astype(np.int32)
    m.kernel_size = np.array(ks, np.int8)
    m.stride, m.padding = np.array([1, 1], np.int8), np.array([pad, pad], np.int8)
    m.dilation, m.groups = np.array([1, 1], np.int8), np.array([1], np.int8)
    m.num_message_bits = np.array([0], np.int8)
    m.weight_exp, m.num_weight_bits = np.array([0], np.int32), np.array([8], np.int8)
    m.a_buf = np.zeros(out, np.int32)
    m.s_in, m.a_out = _In(inputs), _Out()
    return m


def lif_model(cls, n, inputs):
    m = cls({})
    m.u, m.v = np.zeros(n, np.int32), np.zeros(n, np.int32)
    m.du, m.dv, m.vth = 4095, 2048, 2
    m.bias_mant, m.bias_exp = np.zeros(n, np.int16), np.zeros(n, np.int16)
    m.a_in, m.s_out = _In(inputs), _Out()
    return m


def time_model(m, steps: int) -> ty.Tuple[float, ty.List[np.ndarray]]:
    """Median seconds per run_spk after one warm-up; also the outputs."""
    outs = []
    m.run_spk()
    outs.append(m.a_out.last if hasattr(m, "a_out") else m.s_out.last)
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        m.run_spk()
        ts.append(time.perf_counter() - t0)
        outs.append(m.a_out.last if hasattr(m, "a_out") else m.s_out.last)
    return statistics.median(ts), [np.array(o, copy=True) for o in outs]


# -- Lava runtime timing ------------------------------------------------------
def time_lava(build: ty.Callable[[], ty.Tuple[ty.Any, ty.Any]], run_cfg,
              steps: int) -> float:
    src, _ = build()
    try:
        src.run(condition=RunSteps(num_steps=1), run_cfg=run_cfg)  # compile+warm
        t0 = time.perf_counter()
        src.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
        return (time.perf_counter() - t0) / steps
    finally:
        src.stop()


def conv_lava_builder(w, in_shape, pad, data):
    def build():
        src = SourceBuffer(data=data)
        conv = Conv(weight=w, input_shape=in_shape, padding=pad)
        sink = SinkBuffer(shape=conv.output_shape, buffer=data.shape[-1])
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        return src, sink
    return build


def lif_lava_builder(n, data):
    def build():
        src = SourceBuffer(data=data)
        lif = LIF(shape=(n,), du=4095, dv=2048, vth=2)
        sink = SinkBuffer(shape=(n,), buffer=data.shape[-1])
        src.s_out.connect(lif.a_in)
        lif.s_out.connect(sink.a_in)
        return src, sink
    return build


def estimate_stock_conv(w, in_shape, pad, inputs) -> float:
    """Stock cost is linear in out-channels: time a 4-channel slice, scale."""
    k = min(4, w.shape[0])
    m = conv_model(PyConvModelFixed, w[:k], in_shape, pad, inputs)
    t0 = time.perf_counter()
    m.run_spk()
    return (time.perf_counter() - t0) * w.shape[0] / k


def fmt(sec: ty.Optional[float]) -> str:
    return f"{'-':>10s}" if sec is None else f"{sec * 1e3:10.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--stock-budget", type=float, default=60.0,
                    help="seconds allowed for all stock runs together")
    ap.add_argument("--no-lava", action="store_true",
                    help="skip the in-runtime measurements")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    steps = args.steps
    budget = args.stock_budget
    rows = []

    conv_cases = [("Conv 1x1 64->64 on 4x4", 1, 64, 64, 4, 0)]   # a digits-tiny linear
    conv_cases += [(f"Conv {k}x{k} {c}->{c} on 8x8", k, c, c, 8, k // 2)
                  for k in (1, 3) for c in (64, 192, 384)]
    conv_cases.append(("Conv 3x3 48->96 on 32x32", 3, 48, 96, 32, 1))

    for name, k, cin, cout, hw, pad in conv_cases:
        in_shape = (hw, hw, cin)
        w = rng.integers(-128, 128, (cout, k, k, cin))
        data = (rng.random(in_shape + (steps + 1,)) < 0.2).astype(np.int32)
        inputs = [data[..., t] for t in range(steps + 1)]
        acc_m = conv_model(PyConvModelFixedAccelerated, w, in_shape, pad, inputs)
        t_acc, out_acc = time_model(acc_m, steps)
        path = max(acc_m.path_counts, key=acc_m.path_counts.get)
        build = conv_lava_builder(w, in_shape, pad, data)
        lava_acc = None if args.no_lava else time_lava(
            build, accelerated_run_config(), steps)
        t_est = time.perf_counter()
        est = estimate_stock_conv(w, in_shape, pad, inputs)
        budget -= time.perf_counter() - t_est
        # stock: compute (1 + steps) and, if allowed, Lava (2 + steps)
        need = est * (steps + 1) + (0 if args.no_lava else est * (steps + 2))
        t_stock = lava_stock = None
        note = ""
        if need <= budget:
            t0 = time.perf_counter()
            st_m = conv_model(PyConvModelFixed, w, in_shape, pad, inputs)
            t_stock, out_stock = time_model(st_m, steps)
            assert all(np.array_equal(a, b) for a, b in zip(out_stock, out_acc)), name
            if not args.no_lava:
                lava_stock = time_lava(build, Loihi2SimCfg(select_tag="fixed_pt"),
                                       steps)
            budget -= time.perf_counter() - t0
            note = "bit-exact"
        else:
            note = f"stock skipped (too slow): est. {est:.2f} s/step"
        rows.append((name, t_stock, t_acc, lava_stock, lava_acc, path, note))
        print_row(rows[-1], flush=True)

    # LIF (the layer after a conv / MLP)
    for n in (1024, 24576, 98304):     # 1024: a digits-tiny layer (4x4x64)
        data = rng.integers(-300, 300, (n, steps + 1)).astype(np.int32)
        inputs = [data[:, t] for t in range(steps + 1)]
        res = {}
        for cls in (PyLifModelBitAcc, PyLifModelBitAccAccelerated):
            res[cls] = time_model(lif_model(cls, n, inputs), steps)
        assert all(np.array_equal(a, b) for a, b in
                   zip(res[PyLifModelBitAcc][1], res[PyLifModelBitAccAccelerated][1]))
        build = lif_lava_builder(n, data)
        lv = (None, None) if args.no_lava else (
            time_lava(build, Loihi2SimCfg(select_tag="fixed_pt"), steps),
            time_lava(build, accelerated_run_config(), steps))
        rows.append((f"LIF {n} neurons", res[PyLifModelBitAcc][0],
                     res[PyLifModelBitAccAccelerated][0], lv[0], lv[1], "-",
                     "bit-exact"))
        print_row(rows[-1], flush=True)


_HEADER_PRINTED = False


def print_row(row, flush=False) -> None:
    global _HEADER_PRINTED
    if not _HEADER_PRINTED:
        print(f"{'case':32s} {'stock ms':>10s} {'accel ms':>10s} {'speedup':>8s}"
              f" | {'Lava stock':>10s} {'Lava accel':>10s} | path      note")
        print(f"{'':32s} {'(compute)':>10s} {'(compute)':>10s} {'':>8s}"
              f" | {'ms/step':>10s} {'ms/step':>10s} |")
        print("-" * 118)
        _HEADER_PRINTED = True
    name, t_st, t_acc, l_st, l_acc, path, note = row
    sp = f"{t_st / t_acc:7.0f}x" if t_st is not None else f"{'-':>8s}"
    print(f"{name:32s} {fmt(t_st)} {fmt(t_acc)} {sp} | {fmt(l_st)} {fmt(l_acc)} |"
          f" {path:9s} {note}", flush=flush)


if __name__ == "__main__":
    main()
