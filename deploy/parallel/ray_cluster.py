"""Shards as Ray tasks: a local Ray instance, or an existing cluster (Ray Client).

Ray is the optional ``[cluster]`` extra (``requirements-cluster.lock``); this module imports
it only when a run asks for it (:class:`ClusterUnavailable` names the install command).

What travels: the artifact's files as bytes, put once into the object store and checked by
every task against the manifest digest passed with the task (:mod:`deploy.parallel.artifact`),
and each shard's encoded inputs (packed into the smallest integer type): no path, no data set
is needed on the cluster's machines, only this project installed with the same versions
(the task function is shipped by reference to ``deploy.parallel.ray_cluster``).

Each task lowers the network and runs its shard in chunks in its own Lava runtime (the loop
of ``deploy.parallel.execute``), and returns its chunks; they are merged in sample order.
On an interrupt or a failed task every unfinished task is cancelled (a ``KeyboardInterrupt``
in the task stops its Lava runtime; a task still running after :data:`CANCEL_GRACE_S` is
killed, and its Lava workers die with its process), then a Ray instance this run started is
shut down; a cluster it connected to is only disconnected from.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from deploy.parallel.artifact import ArtifactFiles
from deploy.parallel.errors import WorkerFailed, WorkerInterrupted
from deploy.parallel.execute import Inputs, run_chunk
from deploy.parallel.results import (ChunkResult, ShardedResult, WorkerTiming, merge, pack,
                                     unpack)
from deploy.parallel.shards import Shard, chunk_bounds, plan_shards

INSTALL_HINT = ("install the [cluster] extra: .venv/bin/python -m pip install "
                "-c requirements.lock -r requirements-cluster.lock")
CANCEL_GRACE_S = 30.0
POLL_S = 0.2
TASK_KIND = "Ray task"


class ClusterUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where the tasks run: ``address`` None starts a local Ray instance for the run;
    ``"auto"`` is RAY_ADDRESS or the cluster ``ray start`` runs on this machine;
    ``"ray://HOST:PORT"`` an existing cluster through Ray Client."""

    text: str
    address: Optional[str]

    @property
    def local(self) -> bool:
        return self.address is None


def parse_cluster(text: str) -> ClusterSpec:
    """``ray``, ``ray:auto`` or ``ray://HOST:PORT``; a ValueError says which forms exist."""
    if text == "ray":
        return ClusterSpec(text, None)
    if text == "ray:auto":
        return ClusterSpec(text, "auto")
    if text.startswith("ray://") and len(text) > len("ray://"):
        return ClusterSpec(text, text)
    raise ValueError(f"'{text}' is not a cluster: use 'ray' (a local Ray instance started "
                     "for this run), 'ray://HOST:PORT' (an existing cluster through Ray "
                     "Client, port 10001 by default) or 'ray:auto' (the cluster in "
                     "RAY_ADDRESS, or the one `ray start` runs on this machine)")


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise ClusterUnavailable(f"Ray is not installed ({e}); {INSTALL_HINT}") from None
    return ray


# -- the task --------------------------------------------------------------------------------

def run_shard_task(artifact: ArtifactFiles, manifest_sha256: str, shard: Shard,
                   packed_inputs: Tuple, chunk: Optional[int], target: Optional[str],
                   probes: List[str]) -> Tuple[List[ChunkResult], WorkerTiming]:
    """One shard in a Ray worker: check the artifact, lower it, run the chunks."""
    from deploy.lava import lower

    started = time.perf_counter()
    network = lower(artifact.graph(manifest_sha256))
    timing = WorkerTiming(shard, startup_s=time.perf_counter() - started)
    x_seq = unpack(packed_inputs)
    chunks = []
    for r in chunk_bounds(shard.start, shard.stop, chunk):
        x = x_seq[:, r.start - shard.start:r.stop - shard.start]
        result = run_chunk(network, r.start, r.stop, x, target=target, probes=probes)
        timing.add(result)
        chunks.append(result)
    timing.wall_s = time.perf_counter() - started
    return chunks, timing


# -- the driver ------------------------------------------------------------------------------

def run_on_ray(artifact: ArtifactFiles, inputs: Inputs, count: int, *, cluster: ClusterSpec,
               tasks: Optional[int] = None, chunk: Optional[int] = None,
               target: Optional[str] = None, probes: Iterable[str] = (),
               sample_ids: Optional[Sequence[int]] = None,
               on_samples: Optional[Callable[[int], None]] = None,
               num_cpus: Optional[int] = None) -> ShardedResult:
    """``count`` samples as ``tasks`` Ray tasks (default: one per CPU of the cluster, at most
    one per sample), ``chunk`` samples per Lava run in each; ``num_cpus``: the CPUs of a
    local instance (default: this machine's)."""
    ray = import_ray()
    from deploy.lava.runtime import signals_deferred

    probes = list(probes)
    start = time.perf_counter()
    with signals_deferred():
        owned = _connect(ray, cluster, num_cpus)
    pending: Dict[object, Shard] = {}
    try:
        with _stop_signal_noted() as seen:
            try:
                n = tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
                shards = plan_shards(count, n, sample_ids)
                task = ray.remote(num_cpus=1, max_retries=0)(run_shard_task)
                artifact_ref = ray.put(artifact)
                for shard in shards:
                    x = pack(inputs(shard.start, shard.stop))
                    ref = task.remote(artifact_ref, artifact.manifest_sha256, shard, x, chunk,
                                      target, probes)
                    pending[ref] = shard
                chunks, timings = _gather(ray, pending, on_samples)
            except KeyboardInterrupt as e:
                raise _as_signalled(e, seen) from None
    finally:
        with signals_deferred():
            _cancel(ray, list(pending))
            if owned:
                ray.shutdown()
    timings.sort(key=lambda t: t.shard.index)
    return merge(chunks, count, probes, timings, time.perf_counter() - start)


@contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with its own (``sys.exit``); the caller's
    (the command line's: an interrupt like Ctrl-C) must stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextmanager
def _started_deaf_to(signals: Tuple[int, ...]) -> Iterator[None]:
    """Processes started in the block begin with ``signals`` blocked (the mask survives
    fork and exec). Ray starts its own processes with SIGINT blocked, so that a terminal's
    Ctrl-C to the process group reaches only this process, which cancels the tasks before it
    shuts Ray down; SIGTERM and SIGHUP to the group (``timeout``, Slurm, a closed terminal)
    must not kill the raylet under the running tasks either (their Lava runtimes would die
    unstopped, and Ray kills their resource trackers with them: leaked segments)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _stop_signal_noted() -> Iterator[List[int]]:
    """The stop signals that arrive in the block, in order. Ray's blocking calls turn any
    exception a signal handler raises into a plain ``KeyboardInterrupt`` (so SIGTERM would
    read as SIGINT): :func:`_as_signalled` restores the signal from this record."""
    seen: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(signum)
        if callable(handler):
            def noting(num, frame, handler=handler):
                seen.append(num)
                handler(num, frame)
            previous[signum] = handler
            signal.signal(signum, noting)
    try:
        yield seen
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _as_signalled(e: KeyboardInterrupt, seen: List[int]) -> KeyboardInterrupt:
    if getattr(e, "signum", None) is None and seen and seen[0] != signal.SIGINT:
        return WorkerInterrupted(seen[0])
    return e


def _connect(ray, cluster: ClusterSpec, num_cpus: Optional[int]) -> bool:
    """Connect (or start a local instance); True when this run must shut Ray down again."""
    if ray.is_initialized():
        return False          # the caller's own Ray session: use it, leave it running
    # task output stays on the workers (it would mix into this command's --json stdout);
    # Ray's start-up notices are not this command's to print (failures raise)
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    try:
        with _keep_sigterm_handler():
            if cluster.local:
                with _started_deaf_to((signal.SIGTERM, signal.SIGHUP)):
                    ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
            else:
                ray.init(address=cluster.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "start a local Ray instance" if cluster.local else \
            f"connect to the Ray cluster at {cluster.text}"
        raise ClusterUnavailable(f"cannot {where}: {type(e).__name__}: {e}") from None
    return True


def _gather(ray, pending: Dict[object, Shard], on_samples: Optional[Callable[[int], None]]
            ) -> Tuple[List[ChunkResult], List[WorkerTiming]]:
    """Results as tasks finish; a finished task leaves ``pending``."""
    chunks: List[ChunkResult] = []
    timings: List[WorkerTiming] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            shard = pending.pop(ref)
            try:
                task_chunks, timing = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None) or e
                raise WorkerFailed(shard, f"raised {type(cause).__name__}: {cause}", str(e),
                                   kind=TASK_KIND) from None
            except ray.exceptions.RayError as e:   # its worker process died, node lost, ...
                raise WorkerFailed(shard, f"failed: {type(e).__name__}: {e}",
                                   kind=TASK_KIND) from None
            chunks += task_chunks
            timings.append(timing)
            if on_samples is not None:
                on_samples(shard.size)
    return chunks, timings


def _cancel(ray, refs: List[object]) -> None:
    """Cancel unfinished tasks: an interrupt first (their Lava runtimes stop cleanly), then
    their processes are killed."""
    if not refs:
        return
    for ref in refs:
        _quietly(ray.cancel, ref)
    _quietly(ray.wait, refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
    ready, stuck = _quietly(ray.wait, refs, num_returns=len(refs), timeout=0) or ([], refs)
    for ref in stuck:
        _quietly(ray.cancel, ref, force=True)


def _quietly(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the cluster may already be gone (a signal to it)
        return None
