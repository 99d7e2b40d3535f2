"""Samples spread over local worker processes, each with its own Lava runtime.

    from deploy.parallel import ArtifactFiles, array_inputs, run_local_workers
    res = run_local_workers(ArtifactFiles.read("runs/digits-tiny.compiled"),
                            array_inputs(x_seq), x_seq.shape[1], workers=3, chunk=64)
    res.predictions, res.logits, res.outputs       # in sample order, as from one process

Each worker gets one contiguous, balanced shard of the samples (``plan_shards``) and is fed
its chunks one at a time (``inputs(start, stop)`` is called here, in this process, when the
worker is ready for the next one: the data set is read and encoded only here). Results are
merged in sample order, so they equal a single process's, chunking included.

Stopping: when this process is interrupted (Ctrl-C, or SIGTERM/SIGHUP turned into an
interrupt by the command line), when a worker fails, and on return, every live worker gets
SIGINT (it stops its Lava runtime and exits), and SIGKILL if it has not exited after
:data:`STOP_GRACE_S` (its Lava workers die with it; their shared memory is unlinked by its
resource tracker). A signal that arrives while the workers are being started or stopped is
held back until that is done (``deploy.lava.runtime.signals_deferred``). A worker that
raises or dies raises :class:`~deploy.parallel.errors.WorkerFailed` naming it and its
samples; one stopped by a stop signal sent to it raises
:class:`~deploy.parallel.errors.WorkerInterrupted`. If this process is killed outright, the
workers die with it (``PR_SET_PDEATHSIG``). Workers are started by the calling thread, which
must outlive the run (the kernel's parent-death signal follows the thread).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Callable, Deque, Dict, Iterable, List, Optional, Sequence

from deploy.parallel.artifact import ArtifactFiles
from deploy.parallel.errors import WorkerFailed, WorkerInterrupted, signal_name
from deploy.parallel.execute import Inputs
from deploy.parallel.results import ChunkResult, ShardedResult, WorkerTiming, merge, pack
from deploy.parallel.shards import Shard, chunk_bounds, plan_shards

#: a worker's own Lava stop is bounded by deploy.lava.runtime.STOP_TIMEOUT_S (60 s)
STOP_GRACE_S = 75.0
POLL_S = 0.2
LOG_TAIL = 2000
PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class _Worker:
    shard: Shard
    proc: subprocess.Popen
    conn: Connection
    log: IO[bytes]                   # its stdout and stderr, shown only when it fails
    chunks: Deque[range]
    started: float
    timing: WorkerTiming = field(init=False)
    done: bool = False

    def __post_init__(self):
        self.timing = WorkerTiming(self.shard)

    def log_tail(self) -> str:
        try:
            self.log.seek(0)
            return self.log.read().decode(errors="replace")[-LOG_TAIL:].strip()
        except (OSError, ValueError):
            return ""


def run_local_workers(artifact: ArtifactFiles, inputs: Inputs, count: int, *, workers: int,
                      chunk: Optional[int] = None, target: Optional[str] = None,
                      probes: Iterable[str] = (), sample_ids: Optional[Sequence[int]] = None,
                      on_samples: Optional[Callable[[int], None]] = None) -> ShardedResult:
    """``count`` samples over ``min(workers, count)`` worker processes, ``chunk`` samples
    per Lava run (None: one run per worker); ``sample_ids`` number the samples in messages
    (default 0..count-1); ``on_samples(n)`` after each chunk of n samples arrives."""
    from deploy.lava.runtime import signals_deferred

    probes = list(probes)
    shards = plan_shards(count, workers, sample_ids)
    spec = {"artifact": artifact, "manifest_sha256": artifact.manifest_sha256,
            "target": target, "probes": probes}
    pool: List[_Worker] = []
    start = time.perf_counter()
    try:
        for shard in shards:
            with signals_deferred():    # no worker started without being in the pool
                pool.append(_start(shard, chunk_bounds(shard.start, shard.stop, chunk)))
        for w in pool:
            _send(w, ("start", spec))
        chunks = _collect(pool, inputs, on_samples)
        _wait_for_exit(pool)
    finally:
        with signals_deferred():
            _stop(pool)
    return merge(chunks, count, probes, [w.timing for w in pool], time.perf_counter() - start)


def _start(shard: Shard, chunks: List[range]) -> _Worker:
    ours, theirs = Pipe(duplex=True)
    log = tempfile.TemporaryFile(prefix="spikeform-worker-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH"))
                                        if p)
    fd = theirs.fileno()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.parallel.worker", str(fd), str(os.getpid()),
             shard.describe().replace(" ", "-")],       # for ps: worker-1-(samples-12..23)
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True)
    except BaseException:
        ours.close()
        log.close()
        raise
    finally:
        theirs.close()
    return _Worker(shard, proc, ours, log, deque(chunks), time.perf_counter())


def _send(w: _Worker, message: tuple) -> None:
    try:
        w.conn.send(message)
    except OSError:            # it is gone: say why
        raise _ended(w) from None


def _feed(w: _Worker, inputs: Inputs) -> None:
    """The worker's next chunk, or "done" when it has had them all."""
    if w.chunks:
        r = w.chunks.popleft()
        _send(w, ("chunk", r.start, r.stop, pack(inputs(r.start, r.stop))))
    else:
        _send(w, ("done",))
        w.done = True
        w.timing.wall_s = time.perf_counter() - w.started


def _collect(pool: List[_Worker], inputs: Inputs,
             on_samples: Optional[Callable[[int], None]]) -> List[ChunkResult]:
    results: List[ChunkResult] = []
    busy: Dict[Connection, _Worker] = {w.conn: w for w in pool}
    while busy:
        for conn in wait(list(busy), timeout=POLL_S):
            w = busy[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                raise _ended(w) from None
            kind = message[0]
            if kind == "error":
                raise WorkerFailed(w.shard, f"raised {message[1]}", message[2])
            if kind == "ready":
                w.timing.startup_s = message[1]
            elif kind == "result":
                chunk: ChunkResult = message[1]
                w.timing.add(chunk)
                results.append(chunk)
                if on_samples is not None:
                    on_samples(chunk.stop - chunk.start)
            else:
                raise WorkerFailed(w.shard, f"sent an unknown message {kind!r}")
            _feed(w, inputs)
            if w.done:
                del busy[conn]
        for conn, w in list(busy.items()):
            if w.proc.poll() is not None and not conn.poll():
                raise _ended(w)
    return results


def _ended(w: _Worker) -> BaseException:
    """Why a worker stopped before its last result: the exception to raise."""
    try:
        code = w.proc.wait(5)
    except subprocess.TimeoutExpired:   # closed its connection but still running
        return WorkerFailed(w.shard, "closed its connection before finishing", w.log_tail())
    # 130: it stopped cleanly on a SIGINT; -N: a signal N ended it (it handles no other)
    stopped_by = signal.SIGINT if code == 128 + signal.SIGINT else -code
    if stopped_by in STOP_SIGNALS:      # sent to it, not to this process: an interruption
        return WorkerInterrupted(stopped_by, w.shard)
    what = f"was killed by {signal_name(-code)}" if code < 0 else \
        f"exited with status {code} before finishing"
    return WorkerFailed(w.shard, what, w.log_tail())


def _wait_for_exit(pool: List[_Worker]) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    for w in pool:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return   # _stop takes it down


def _stop(pool: List[_Worker]) -> None:
    """SIGINT to every live worker, SIGKILL to any still there after STOP_GRACE_S; then
    release the connections and logs."""
    live = [w for w in pool if w.proc.poll() is None]
    for w in live:
        try:
            w.proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_S
    for w in live:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
    for w in pool:
        w.conn.close()
        w.log.close()
