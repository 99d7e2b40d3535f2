"""Where a lava-sim step's CPU goes: per ProcessModel kind, measured inside Lava's processes.

Run:  python benchmarks/lava_profile.py [CHECKPOINT.pth] [--samples 32]

Every Lava process is an OS process (forked from this one), so the instrumentation is
installed here, before the runtime starts, and each child writes its own record when the
runtime stops it:

* ``cpu``: the process's CPU time (``time.process_time``, all its threads) from its first
  step to its stop -- its share of the machine, whatever it spent it on;
* ``step``: the CPU its main thread spent in the spiking phase (``_spike``: the model's
  ``run_spk`` with its port receives and sends, and the status reply to the runtime);
* ``ports``: the CPU of that thread inside the dense ports' ``recv``/``send`` (copying the
  messages, the semaphores and their system calls);
* ``model``: ``step`` minus ``ports``: the model's own arithmetic (and the status reply).

The same runs for the network's wired floor (``benchmarks.lava_floor``: its processes, ports
and channels, no arithmetic). lava-sim minus the floor, per kind, is what the network's own
models add per step; the rest is Lava's per-process synchronisation. The figures are CPU, not
wall time: on a shared machine they move less than ms/step does, but run it on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CHECKPOINT = "spikformer_neuro/checkpoints/digits-tiny.pth"
_ENV_DIR = "SPIKEFORM_LAVA_PROFILE_DIR"   # where the forked children write their records
_STATS: Dict[str, float] = {}             # this process's record (one model per Lava process)


def install():
    """Wrap Lava's spiking-phase handler, stop handler and dense port recv/send; returns the
    function that puts the originals back (the wrappers sit in every step of every process,
    so they are only installed for the runs being profiled)."""
    from lava.magma.core.model.py import ports
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    model, recv, send = PyLoihiProcessModel, ports.PyInPortVectorDense, ports.PyOutPortVectorDense
    originals = [(model, "_spike", model._spike), (model, "_stop", model._stop),
                 (recv, "recv", recv.recv), (send, "send", send.send)]
    spike, stop = model._spike, model._stop

    def _spike(self):
        if not _STATS:
            _STATS.update(steps=0, step_cpu=0.0, port_cpu=0.0, cpu0=time.process_time())
        c0 = time.thread_time()
        spike(self)
        _STATS["step_cpu"] += time.thread_time() - c0
        _STATS["steps"] += 1

    def _stop(self):
        out = os.environ.get(_ENV_DIR)
        if _STATS and out:
            record = {"model": type(self).__name__, "steps": _STATS["steps"],
                      "cpu_s": time.process_time() - _STATS["cpu0"],
                      "step_cpu_s": _STATS["step_cpu"], "port_cpu_s": _STATS["port_cpu"]}
            Path(out, f"{os.getpid()}.json").write_text(json.dumps(record))
        stop(self)

    def timed(method):
        def wrapper(self, *args):
            t = time.thread_time()
            try:
                return method(self, *args)
            finally:
                if _STATS:
                    _STATS["port_cpu"] += time.thread_time() - t
        return wrapper

    model._spike, model._stop = _spike, _stop
    recv.recv, send.send = timed(recv.recv), timed(send.send)

    def restore() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return restore


def profiled(run_fn):
    """``run_fn()``'s result and the per-process records of the Lava run it makes."""
    restore = install()
    with tempfile.TemporaryDirectory(prefix="lava-profile-") as tmp:
        os.environ[_ENV_DIR] = tmp
        try:
            result = run_fn()
        finally:
            os.environ.pop(_ENV_DIR, None)
            restore()
        deadline = time.monotonic() + 10.0   # children write at stop; give stragglers time
        records = []
        while True:
            records = [json.loads(p.read_text()) for p in Path(tmp).glob("*.json")]
            if records or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return result, records


def by_kind(records: List[dict]) -> Dict[str, dict]:
    """Per model kind: process count and ms/step of CPU, step-phase CPU, its port part and
    the rest (the model's work)."""
    steps = max((r["steps"] for r in records), default=1) or 1
    kinds: Dict[str, dict] = {}
    for r in records:
        k = kinds.setdefault(r["model"], {"processes": 0, "cpu_ms": 0.0, "step_ms": 0.0,
                                          "ports_ms": 0.0, "model_ms": 0.0})
        k["processes"] += 1
        k["cpu_ms"] += 1e3 * r["cpu_s"] / steps
        k["step_ms"] += 1e3 * r["step_cpu_s"] / steps
        k["ports_ms"] += 1e3 * r["port_cpu_s"] / steps
        k["model_ms"] += 1e3 * (r["step_cpu_s"] - r["port_cpu_s"]) / steps
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["cpu_ms"]))


def table(label: str, ms_per_step: float, kinds: Dict[str, dict]) -> str:
    total = {key: sum(k[key] for k in kinds.values())
             for key in ("cpu_ms", "step_ms", "ports_ms", "model_ms")}
    procs = sum(k["processes"] for k in kinds.values())
    lines = [f"{label}: {ms_per_step:.2f} ms/step wall, {procs} processes",
             f"  {'model kind':<36} {'procs':>5} {'CPU/step':>9} {'step phase':>10} "
             f"{'ports':>7} {'model':>7}  (ms of CPU per Lava step, all processes of the kind)"]
    for name, k in list(kinds.items()) + [("total", {**total, "processes": procs})]:
        lines.append(f"  {name:<36} {k['processes']:>5} {k['cpu_ms']:>9.3f} "
                     f"{k['step_ms']:>10.3f} {k['ports_ms']:>7.3f} {k['model_ms']:>7.3f}")
    return "\n".join(lines)


def profile_checkpoint(checkpoint: str, samples: int) -> dict:
    """lava-sim and its wired floor on ``checkpoint``'s first test samples, profiled."""
    import numpy as np

    from benchmarks.lava_floor import measure_wired_floor
    from benchmarks.workloads import load_workload
    from compiler.encoding import encode_integer
    from compiler.reference import run_reference
    from deploy.lava import lower, run

    work = load_workload(checkpoint, samples)
    net = lower(work.graph)
    x_seq = encode_integer(work.graph, work.x.numpy())
    res, lava = profiled(lambda: run(net, x_seq, target="lava-sim"))
    ref = run_reference(work.graph, x_seq, encoded=True)
    exact = bool(np.array_equal(res.logits, np.asarray(ref.logits)))
    floor, wired = profiled(lambda: measure_wired_floor(net, res.num_steps))
    return {"workload": work.label, "samples": samples, "steps": res.num_steps,
            "logits_equal_reference": exact,
            "lava_sim": {"ms_per_step": res.ms_per_step, "kinds": by_kind(lava)},
            "wired_floor": {"ms_per_step": floor["ms_per_step"], "kinds": by_kind(wired)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    out = profile_checkpoint(args.checkpoint, args.samples)
    print(f"{out['workload']}: {out['samples']} samples, {out['steps']} steps; Lava logits "
          f"{'equal' if out['logits_equal_reference'] else 'DIFFER FROM'} the reference")
    for key, label in (("lava_sim", "lava-sim"), ("wired_floor", "wired floor")):
        print(table(label, out[key]["ms_per_step"], out[key]["kinds"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["logits_equal_reference"] else 1


if __name__ == "__main__":
    sys.exit(main())
