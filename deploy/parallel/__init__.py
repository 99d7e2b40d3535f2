"""Running a compiled network's samples over several Lava runtimes at once: local worker
processes (:func:`run_local_workers`) or Ray tasks (:func:`run_on_ray`, the optional
``[cluster]`` extra), merged in sample order into one :class:`ShardedResult` equal to a
single process's (:func:`run_in_process`, the same loop). docs/scaling.md has the design.

    from deploy.parallel import ArtifactFiles, array_inputs, run_sharded
    res = run_sharded(ArtifactFiles.of_graph(quantized_graph), array_inputs(x_seq),
                      x_seq.shape[1], workers=4, probes=["blocks.0.attn.q.lif"])

Importing this package does not import Lava (the worker processes and tasks do).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from deploy.parallel.artifact import ArtifactFiles
from deploy.parallel.errors import WorkerFailed, WorkerInterrupted
from deploy.parallel.execute import Inputs, array_inputs, run_chunk, run_in_process
from deploy.parallel.local import run_local_workers
from deploy.parallel.ray_cluster import (ClusterSpec, ClusterUnavailable, parse_cluster,
                                         run_on_ray)
from deploy.parallel.results import ShardedResult, WorkerTiming
from deploy.parallel.shards import Shard, plan_shards, shard_range


def run_sharded(artifact: ArtifactFiles, inputs: Inputs, count: int, *, workers: int = 1,
                chunk: Optional[int] = None, target: Optional[str] = None,
                probes: Iterable[str] = (), sample_ids: Optional[Sequence[int]] = None,
                on_samples: Optional[Callable[[int], None]] = None) -> ShardedResult:
    """One worker: in this process (the network lowered here); more: local worker
    processes. Either way the same result (see the module's docstring)."""
    if workers == 1:
        from deploy.lava import lower

        return run_in_process(lower(artifact.graph()), inputs, count, chunk=chunk,
                              target=target, probes=probes, sample_ids=sample_ids,
                              on_samples=on_samples)
    return run_local_workers(artifact, inputs, count, workers=workers, chunk=chunk,
                             target=target, probes=probes, sample_ids=sample_ids,
                             on_samples=on_samples)


__all__ = ["ArtifactFiles", "ClusterSpec", "ClusterUnavailable", "Inputs", "Shard",
           "ShardedResult", "WorkerFailed", "WorkerInterrupted", "WorkerTiming",
           "array_inputs", "parse_cluster", "plan_shards", "run_chunk", "run_in_process",
           "run_local_workers", "run_on_ray", "run_sharded", "shard_range"]
