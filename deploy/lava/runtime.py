"""Starting and (always) stopping Lava runtimes.

Lava runs every process in its own OS process (``multiprocessing``, fork): one per
ProcessModel, one per runtime service and a shared-memory manager; their channels are
``/dev/shm/psm_*`` segments (``multiprocessing.shared_memory``) that this process creates
(through Lava's ``SharedMemoryManager`` client) and multiprocessing's resource tracker records.
Hazards this module removes:

* **Signals.** SIGINT (Ctrl-C), SIGTERM and SIGHUP may go to the whole process group
  (a terminal, ``timeout``, Slurm); Lava's worker processes would die mid-message and a
  later ``stop()`` would wait for them forever. The workers are forked while these signals
  are only *recorded* (:func:`signals_deferred`) and ignore them for their whole life
  (:func:`_child_after_fork`): only this process acts on a signal, and its ``finally`` stops
  the runtime cleanly. The recorded signal is re-delivered after the block, to whatever
  handler this process has (the command line turns SIGTERM/SIGHUP into an interrupt like
  Ctrl-C: ``spikeform_cli.exit_codes``).
* **Death of this process** (SIGKILL, a crash). Every process forked while a runtime is
  created gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux), so the kernel kills it when
  this process dies; the resource tracker (started first, not a fork of this kind, and
  immune to SIGINT/SIGTERM/SIGHUP) then sees its last writer go and unlinks every segment.
* **Errors.** When a model raises in the middle of a step, Lava's error path
  joins *all* workers, but the crashed model's consumers are blocked forever
  waiting for its message (and so is the runtime service, which never reports
  the error): Lava's ``run`` never returns. :func:`run_steps` waits for the
  run itself, notices a worker that exits and kills the others, and
  raises :class:`LavaWorkerError` with the worker's traceback. Afterwards Lava still thinks the runtime is
  started and ``Runtime.stop()`` would block on a dead channel (and before the
  first run ``stop()`` skips the STOP command, then joins workers that never
  exit). :func:`stop_runtime` handles every state and, as a last resort
  (timeout), kills the runtime's own worker processes and unlinks its segments.

The workers ignore SIGTERM, so they are stopped with SIGKILL where force is needed. A runtime
must be created and stopped by the same thread (as :func:`deploy.lava.runner.run` does): the
kernel's parent-death signal fires when the *thread* that forked a worker exits.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import RunConfig
from lava.magma.runtime.mgmt_token_enums import MGMT_RESPONSE, enum_equal

STOP_TIMEOUT_S = 60.0

#: the signals that stop a run: recorded while workers are forked or stopped, ignored by workers
STOP_SIGNALS: Tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Record SIGINT, SIGTERM and SIGHUP instead of acting on them while the block runs;
    after it, deliver each recorded signal again to this process's own handler (Ctrl-C
    raises ``KeyboardInterrupt``; the command line's SIGTERM handler raises its own
    interrupt; a default disposition ends the process, whose workers then die with it).
    In a thread other than the main one (which cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: List[int] = []
    old = {}
    for signum in STOP_SIGNALS:
        previous = signal.signal(signum, lambda num, frame: hit.append(num))
        old[signum] = signal.SIG_DFL if previous is None else previous  # None: set outside Python
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        # also when the block failed: a stop request outranks the error (its context)
        for signum in dict.fromkeys(hit):
            signal.raise_signal(signum)


# -- workers die with this process ---------------------------------------------------------------
_PR_SET_PDEATHSIG = 1
_LIBC = None
if sys.platform.startswith("linux"):
    try:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong]
        _LIBC.prctl.restype = ctypes.c_int
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        _LIBC = None

#: thread id -> pid, of each thread creating a runtime right now. A fork's child has a copy; it
#: is the worker of such a thread when its own thread id is there (the id survives the fork).
_CREATING: Dict[int, int] = {}


def _child_after_fork() -> None:
    """In every child forked while a runtime is created (Lava's workers, runtime services,
    shared-memory manager): die with the parent (SIGKILL on its death; if it already died
    between the fork and here, exit now), and ignore the signals the parent handles."""
    if not _CREATING:
        return
    parent = _CREATING.get(threading.get_ident())
    _CREATING.clear()   # the child's copy: its own children are not the parent's workers
    if parent is None:
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``; it fires when the parent *thread* that started this process exits);
    exit at once when the parent (pid ``parent``) died before this call. Lava's workers call
    it after the fork, ``deploy.parallel``'s worker processes first thing."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_child_after_fork)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if not yet running) before any worker: every
    segment this process creates is recorded there, and it unlinks what is left once this
    process and all its workers are gone, however they ended. It ignores SIGINT and SIGTERM
    itself; started with SIGHUP blocked it keeps it blocked (a hang-up of the terminal's
    process group must not take the cleanup with it)."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask") or not hasattr(signal, "SIGHUP"):
        resource_tracker.ensure_running()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _creating_workers() -> Iterator[None]:
    """Processes this thread forks in the block are workers (:func:`_child_after_fork`)."""
    ident = threading.get_ident()
    _CREATING[ident] = os.getpid()
    try:
        yield
    finally:
        _CREATING.pop(ident, None)


def create_runtime(anchor: AbstractProcess, run_cfg: RunConfig) -> None:
    """Compile the network connected to ``anchor`` and start its workers (which ignore
    SIGINT/SIGTERM/SIGHUP and die with this process; a signal during the start is acted on
    once the runtime exists, so that the caller's ``finally`` can stop it)."""
    with signals_deferred():
        _start_resource_tracker()
        with _creating_workers():
            anchor.create_runtime(run_cfg=run_cfg)


class LavaWorkerError(RuntimeError):
    """A Lava worker process (a ProcessModel or a runtime service) died mid-run."""


def run_steps(anchor: AbstractProcess, num_steps: int, poll_s: float = 0.005) -> None:
    """Run the created runtime of ``anchor`` for ``num_steps`` steps.

    Like ``anchor.run(RunSteps(num_steps))``, but waits for the runtime
    services' DONE itself, checking the workers while it waits: if one exits
    (its model raised), the others are killed and :class:`LavaWorkerError`
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
    _kill_workers(runtime)
    errors, traces = list(dict.fromkeys(errors)), list(dict.fromkeys(traces))
    headline = f"{what}: {'; '.join(errors)}" if errors else what
    raise LavaWorkerError(f"{headline}\nThe run was aborted and its workers stopped. "
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

    A signal (SIGINT, SIGTERM, SIGHUP) during the stop is held back until the workers are
    gone (the stop is bounded by ``timeout``, after which the workers are killed)."""
    if runtime is None:
        return
    with signals_deferred():
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


def _kill_workers(runtime) -> None:
    """SIGKILL every live worker (they ignore SIGTERM: see :func:`_child_after_fork`)."""
    for actor in _actors(runtime):
        if _alive(actor):
            try:
                actor.kill()
            except (ValueError, AttributeError, OSError):
                pass


def _force_stop(runtime) -> None:
    """Kill the runtime's remaining workers and release its resources: the shared-memory
    manager (which unlinks the channel segments), and any segment still there after it."""
    _kill_workers(runtime)
    for actor in _actors(runtime):
        try:
            if not getattr(actor, "_is_done", False):
                actor.join()
        except Exception:  # noqa: BLE001 - best effort
            pass
    runtime._is_running = False
    runtime._is_started = False
    mi = getattr(runtime, "_messaging_infrastructure", None)
    smm = getattr(mi, "smm", None)
    segments = list(getattr(smm, "_shared_memory_handles", None) or [])
    server = getattr(getattr(smm, "_manager", None), "_process", None)
    for closer in (getattr(smm, "shutdown", None),
                   getattr(getattr(runtime, "_watchdog_manager", None), "stop", None)):
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001 - already gone
                pass
    if server is not None:  # a manager that did not answer its shutdown ignores SIGTERM too
        try:
            if server.is_alive():
                server.kill()
                server.join(5)
        except (ValueError, AttributeError, OSError):
            pass
    for segment in segments:  # the manager unlinks them; not when it was gone already
        try:
            segment.unlink()
        except (FileNotFoundError, OSError, AttributeError):
            pass


def runtime_of(anchor: Optional[AbstractProcess]):
    """The runtime ``anchor`` was compiled into (None before ``create_runtime``)."""
    return None if anchor is None else getattr(anchor, "_runtime", None)
