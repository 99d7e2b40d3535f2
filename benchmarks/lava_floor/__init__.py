"""The floor of a Lava run: empty networks stepped as many steps as a lowered network, in the
same simulator configuration as lava-sim.

On small networks Lava's per-process, per-step synchronisation -- not arithmetic -- sets the
pace (every process is an OS process, and the runtime exchanges phase messages with each of
them every step). Two floors say what that synchronisation alone costs:

* :func:`measure_floor` -- a chain of ``Relay`` processes (one int32 in, the same value out)
  with the network's process count: processes only;
* :func:`measure_wired_floor` -- the network itself with its arithmetic removed: one
  ``Mirror`` per stage with the stage's in-ports (each the shape of what feeds it), its
  out-port shape and every connection (fan-out included), receiving every message and sending
  zeros: processes and channels.

lava-sim over a floor says how much the network's own work adds.
"""
from __future__ import annotations

import time


def measure_floor(processes: int, steps: int) -> dict:
    """ms/step of a chain of ``processes`` Relays run ``steps`` steps (start-up excluded)."""
    from benchmarks.lava_floor.process import Relay

    if processes < 1 or steps < 1:
        raise ValueError(f"need processes >= 1 and steps >= 1, got {processes}, {steps}")
    chain = [Relay() for _ in range(processes)]
    for a, b in zip(chain, chain[1:]):
        a.s_out.connect(b.a_in)
    return {"processes": processes, **_timed_run(chain[-1], steps, processes)}


def _timed_run(anchor, steps: int, processes: int) -> dict:
    """Start-up and ms/step of the network connected to ``anchor``, run ``steps`` steps in
    lava-sim's configuration (the runtime always stopped)."""
    from deploy.lava.runtime import create_runtime, run_steps, runtime_of, stop_runtime
    from deploy.lava.targets import run_config

    try:
        t0 = time.perf_counter()
        create_runtime(anchor, run_config("lava-sim"))
        t1 = time.perf_counter()
        run_steps(anchor, steps)
        t2 = time.perf_counter()
    finally:
        stop_runtime(runtime_of(anchor))
    ms = 1e3 * (t2 - t1) / steps
    return {"steps": steps, "startup_s": t1 - t0, "ms_per_step": ms,
            "ms_per_process_step": ms / processes}


def measure_wired_floor(network, steps: int) -> dict:
    """ms/step of ``network`` (a ``deploy.lava.LavaNetwork``) with every stage replaced by a
    :class:`Mirror` (same ports, shapes and connections; no arithmetic), run ``steps`` steps."""
    from benchmarks.lava_floor.process import Mirror

    stages = network.stages
    procs = {}
    for st in stages.values():
        ports = list(dict.fromkeys(port for _, port in st.inputs))   # in-port order kept
        feeds = {port: stages[src].shape for src, port in st.inputs}
        out_shape = st.shape if st.kind.out_port is not None else (1,)
        procs[st.name] = (Mirror(out_shape=out_shape, in_shapes=[feeds[p] for p in ports],
                                 name=f"mirror:{st.name}"), ports)
    channels = 0
    for st in stages.values():
        mirror, ports = procs[st.name]
        for src, port in st.inputs:
            procs[src][0].out.connect(getattr(mirror, f"in{ports.index(port)}"))
            channels += 1
    return {"processes": len(stages), "channels": channels,
            **_timed_run(procs[network.readout][0], steps, len(stages))}


__all__ = ["measure_floor", "measure_wired_floor"]
