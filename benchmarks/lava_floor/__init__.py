"""The floor of a Lava run: an empty network with a given number of processes, stepped a given
number of steps in the same simulator configuration as lava-sim.

On small networks Lava's per-process, per-step synchronisation -- not arithmetic -- sets the
pace (every process is an OS process, and the runtime exchanges phase messages with each of
them every step). The floor is what that synchronisation alone costs: a chain of ``Relay``
processes (one int32 in, the same value out) with the lowered network's process count, run for
its step count. lava-sim over the floor says how much the network's own work adds.
"""
from __future__ import annotations

import time


def measure_floor(processes: int, steps: int) -> dict:
    """ms/step of a chain of ``processes`` Relays run ``steps`` steps (start-up excluded)."""
    from benchmarks.lava_floor.process import Relay
    from deploy.lava.runtime import create_runtime, run_steps, runtime_of, stop_runtime
    from deploy.lava.targets import run_config

    if processes < 1 or steps < 1:
        raise ValueError(f"need processes >= 1 and steps >= 1, got {processes}, {steps}")
    chain = [Relay() for _ in range(processes)]
    for a, b in zip(chain, chain[1:]):
        a.s_out.connect(b.a_in)
    anchor = chain[-1]
    try:
        t0 = time.perf_counter()
        create_runtime(anchor, run_config("lava-sim"))
        t1 = time.perf_counter()
        run_steps(anchor, steps)
        t2 = time.perf_counter()
    finally:
        stop_runtime(runtime_of(anchor))
    ms = 1e3 * (t2 - t1) / steps
    return {"processes": processes, "steps": steps, "startup_s": t1 - t0,
            "ms_per_step": ms, "ms_per_process_step": ms / processes}


__all__ = ["measure_floor"]
