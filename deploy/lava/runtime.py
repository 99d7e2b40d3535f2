"""Starting and (always) stopping Lava runtimes.

Lava runs every process in its own OS process (``multiprocessing``, fork).
Two hazards this module removes:

* **Ctrl-C.** SIGINT goes to the whole foreground process group; Lava's worker
  processes would die of ``KeyboardInterrupt`` and a later ``stop()`` would wait
  for them forever. The workers are forked while SIGINT is only *recorded*
  (:func:`sigint_deferred`), so they inherit a handler that ignores it; only
  this process sees Ctrl-C, and its ``finally`` stops the runtime cleanly.
* **Errors.** When a model raises in the middle of a step, Lava's error path
  joins *all* workers, but the crashed model's consumers are blocked forever
  waiting for its message (and so is the runtime service, which never reports
  the error): Lava's ``run`` never returns. :func:`run_steps` waits for the
  run itself, notices a worker that exits and terminates the others, and
  raises :class:`LavaWorkerError` with the worker's traceback. Afterwards Lava still thinks the runtime is
  started and ``Runtime.stop()`` would block on a dead channel (and before the
  first run ``stop()`` skips the STOP command, then joins workers that never
  exit). :func:`stop_runtime` handles every state and, as a last resort
  (timeout), terminates the runtime's own worker processes.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional

from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import RunConfig
from lava.magma.runtime.mgmt_token_enums import MGMT_RESPONSE, enum_equal

STOP_TIMEOUT_S = 60.0


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Record SIGINT instead of raising while the block runs (processes forked
    inside inherit the recording handler, i.e. ignore Ctrl-C); raise
    ``KeyboardInterrupt`` after the block if one arrived."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: List[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


def create_runtime(anchor: AbstractProcess, run_cfg: RunConfig) -> None:
    """Compile the network connected to ``anchor`` and start its workers."""
    with sigint_deferred():
        anchor.create_runtime(run_cfg=run_cfg)


class LavaWorkerError(RuntimeError):
    """A Lava worker process (a ProcessModel or a runtime service) died mid-run."""


def run_steps(anchor: AbstractProcess, num_steps: int, poll_s: float = 0.005) -> None:
    """Run the created runtime of ``anchor`` for ``num_steps`` steps.

    Like ``anchor.run(RunSteps(num_steps))``, but waits for the runtime
    services' DONE itself, checking the workers while it waits: if one exits
    (its model raised), the others are terminated and :class:`LavaWorkerError`
    carries the worker's traceback -- where Lava's own wait would hang.
    """
    runtime = anchor._runtime
    anchor.run(condition=RunSteps(num_steps=int(num_steps), blocking=False))
    pending = list(runtime.service_to_runtime)
    while pending:
        for port in list(pending):
            if port.probe():
                msg = port.recv()
                if not enum_equal(msg, MGMT_RESPONSE.DONE):
                    _fail_run(runtime, f"a runtime service answered {msg} instead of DONE")
                pending.remove(port)
        if pending:
            if any(not _alive(a) for a in _actors(runtime)):
                _fail_run(runtime, "a Lava worker process exited during the run")
            time.sleep(poll_s)
    runtime._is_running = False


def _fail_run(runtime, what: str) -> None:
    errors, traces = [], []
    for actor in _actors(runtime):
        try:
            exc = actor.exception if not getattr(actor, "_is_done", False) else actor._exception
        except (OSError, ValueError, EOFError):
            exc = None
        if exc:
            errors.append(repr(exc[0]))
            traces.append(str(exc[1]).strip())
    for actor in _actors(runtime):
        if _alive(actor):
            try:
                actor.terminate()
            except (ValueError, AttributeError):
                pass
    errors, traces = list(dict.fromkeys(errors)), list(dict.fromkeys(traces))
    headline = f"{what}: {'; '.join(errors)}" if errors else what
    raise LavaWorkerError(f"{headline}\nThe run was aborted and its workers terminated. "
                          f"Worker traceback(s):\n" + ("\n\n".join(traces) or "(none reported)"))


def _actors(runtime) -> list:
    mi = getattr(runtime, "_messaging_infrastructure", None)
    return list(getattr(mi, "actors", []) or [])


def _alive(actor) -> bool:
    if getattr(actor, "_is_done", False):
        return False
    try:
        return actor.is_alive()
    except ValueError:  # closed
        return False


def live_workers(runtime) -> int:
    """Number of the runtime's worker processes still alive."""
    return sum(_alive(a) for a in _actors(runtime)) if runtime is not None else 0


def stop_runtime(runtime, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop ``runtime`` in whatever state it is; never leaves workers behind.

    A Ctrl-C during the stop is held back until the workers are gone (the
    stop is bounded by ``timeout``, after which the workers are terminated)."""
    if runtime is None:
        return
    with sigint_deferred():
        _stop(runtime, timeout)


def _stop(runtime, timeout: float) -> None:
    actors = _actors(runtime)
    if actors and all(_alive(a) for a in actors):
        # Every worker is up: the regular protocol (STOP -> TERMINATED). Lava
        # only sends STOP to a started runtime, so mark it started if needed.
        runtime._is_started = True
        errors: List[BaseException] = []

        def graceful() -> None:
            try:
                runtime.stop()
            except BaseException as e:  # noqa: BLE001 - falls back to _force_stop
                errors.append(e)

        worker = threading.Thread(target=graceful, name="lava-stop", daemon=True)
        worker.start()
        worker.join(timeout)
        if not worker.is_alive() and not errors and live_workers(runtime) == 0:
            return
    _force_stop(runtime)


def _force_stop(runtime) -> None:
    """Terminate the runtime's remaining workers and release its resources."""
    for actor in _actors(runtime):
        if _alive(actor):
            actor.terminate()
    for actor in _actors(runtime):
        try:
            if not getattr(actor, "_is_done", False):
                actor.join()
        except Exception:  # noqa: BLE001 - best effort
            pass
    runtime._is_running = False
    runtime._is_started = False
    mi = getattr(runtime, "_messaging_infrastructure", None)
    for closer in (getattr(getattr(mi, "smm", None), "shutdown", None),
                   getattr(getattr(runtime, "_watchdog_manager", None), "stop", None)):
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001 - already gone
                pass


def runtime_of(anchor: Optional[AbstractProcess]):
    """The runtime ``anchor`` was compiled into (None before ``create_runtime``)."""
    return None if anchor is None else getattr(anchor, "_runtime", None)
