"""Streaming a batch of samples through a lowered network in Lava.

Samples run back to back, one every T Lava steps, with no idle gap: each
LIFReset layer zeroes its state on the step its sample's first input arrives
(offset = lag + 1), everything else is stateless or a pure delay line, so no
state leaks from one sample into the next. The stream takes
``B * T + max_lag`` steps (the last ``max_lag`` drain the pipeline).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional

import numpy as np

from deploy.lava.build import BuiltNetwork, build, realign
from deploy.lava.stages import LavaNetwork
from deploy.lava.runtime import create_runtime, run_steps, runtime_of, stop_runtime
from deploy.lava.targets import DEFAULT_TARGET, FLOAT_TARGET, numeric_of, run_config


@dataclass
class LavaResult:
    logits: np.ndarray                                   # [B, K] int64 (float64: float target)
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)  # node -> [T, B, *shape]
    num_steps: int = 0                                   # Lava steps run
    compile_s: float = 0.0                               # compile + start workers
    run_s: float = 0.0                                   # stepping (+ reading results)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def ms_per_step(self) -> float:
        return 1e3 * self.run_s / max(self.num_steps, 1)

    @property
    def samples_per_s(self) -> float:
        return self.logits.shape[0] / self.run_s if self.run_s > 0 else float("inf")


def run(network: LavaNetwork, x_seq, *, target: Optional[str] = None,
        probes: Iterable[str] = (), chunk_steps: Optional[int] = None,
        callback: Optional[Callable[[int, int], None]] = None) -> LavaResult:
    """Stream ``x_seq`` (integer input [T, B, C, H, W], e.g. from
    ``compiler.encoding.encode_integer``) through ``network`` on ``target``.

    ``probes``: node names (see ``network.probe_names()``) whose per-step
    outputs are returned re-aligned to algorithmic time, ``[T, B, *shape]`` in
    the compiler's ``[C, H, W]`` layout -- directly comparable with
    ``run_reference(...).outputs``. ``chunk_steps``: run in chunks of this many
    steps, calling ``callback(steps_done, steps_total)`` after each. The Lava
    runtime is stopped on return, on error and on Ctrl-C.

    ``target`` defaults to ``lava-sim`` for a fixed-point network (``lower``) and
    ``lava-sim-float`` for a floating-point one (``lower_float``, with float input from
    ``compiler.encoding.encode_float``).
    """
    if target is None:
        target = FLOAT_TARGET if network.numeric == "float" else DEFAULT_TARGET
    if numeric_of(target) != network.numeric:
        if network.numeric == "float":
            hint = (f"this network was lowered by lower_float for Lava's floating-point "
                    f"models: run it on target '{FLOAT_TARGET}'")
        else:
            hint = ("this network was lowered by lower for the fixed-point models: run it on "
                    f"'{DEFAULT_TARGET}' (or lower_float the float graph for '{target}')")
        raise ValueError(f"target '{target}' does not fit the network: {hint}")
    cfg = run_config(target)
    built = build(network, x_seq, probes)
    anchor = built.readout
    total = built.num_steps
    chunk = total if not chunk_steps else max(1, int(chunk_steps))
    try:
        t0 = time.perf_counter()
        create_runtime(anchor, cfg)
        t1 = time.perf_counter()
        done = 0
        while done < total:
            n = min(chunk, total - done)
            run_steps(anchor, n)
            done += n
            if callback is not None:
                callback(done, total)
        result = _collect(built)
        t2 = time.perf_counter()
    finally:
        stop_runtime(runtime_of(anchor))
    result.num_steps, result.compile_s, result.run_s = total, t1 - t0, t2 - t1
    return result


#: how long a message sent before the run ended may take through the pipe (a loaded machine
#: delivers the last one after ``run`` returns: probing once lost it, seen in CI)
DELIVERY_TIMEOUT_S = 30.0


def receive_messages(port, count: int, timeout_s: float = DELIVERY_TIMEOUT_S) -> np.ndarray:
    """``count`` messages from an external pipe (all sent before the run ended), each waited
    for up to ``timeout_s`` seconds."""
    recv = port.external_pipe_csp_recv_port
    out = []
    for i in range(count):
        deadline = time.monotonic() + timeout_s
        while not recv.probe():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{port.process.name}: expected {count} messages, got {i} "
                                   f"(none for {timeout_s:g} s)")
            time.sleep(0.001)
        out.append(np.array(recv.recv(), copy=True))
    return np.stack(out)


def _collect(built: BuiltNetwork) -> LavaResult:
    dtype = np.float64 if built.network.numeric == "float" else np.int64
    logits = receive_messages(built.readout.logits, built.num_samples).astype(dtype)
    outputs = {node: realign(built.network, node, receive_messages(tap.out, built.num_steps),
                             built.num_samples)
               for node, tap in built.taps.items()}
    return LavaResult(logits=logits, outputs=outputs)
