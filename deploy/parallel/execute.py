"""Running samples through a lowered network in this process: the one loop behind a single
worker, each local worker process and each Ray task, so that all of them compute the same."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from deploy.parallel.results import ChunkResult, ShardedResult, WorkerTiming, merge, pack
from deploy.parallel.shards import chunk_bounds, plan_shards

#: ``inputs(start, stop)``: the encoded integer input ``[T, stop - start, ...]`` of the run's
#: samples at positions start..stop-1 (``compiler.encoding.encode_integer``)
Inputs = Callable[[int, int], np.ndarray]


def array_inputs(x_seq: np.ndarray) -> Inputs:
    """:data:`Inputs` over an already encoded ``[T, B, ...]`` array."""
    return lambda start, stop: x_seq[:, start:stop]


def run_chunk(network, start: int, stop: int, x_seq: np.ndarray, *, target: Optional[str],
              probes: Sequence[str]) -> ChunkResult:
    """One Lava run (``deploy.lava.run``: the runtime is stopped on return, error and
    interrupt) over the samples at positions ``start..stop-1``."""
    from deploy.lava.runner import run

    if x_seq.shape[1] != stop - start:
        raise ValueError(f"inputs for positions {start}..{stop - 1} hold {x_seq.shape[1]} "
                         "samples")
    res = run(network, np.asarray(x_seq, dtype=np.int64), target=target, probes=probes)
    return ChunkResult(start, stop, pack(res.logits),
                       {p: pack(res.outputs[p]) for p in probes},
                       res.num_steps, res.compile_s, res.run_s)


def run_in_process(network, inputs: Inputs, count: int, *, chunk: Optional[int] = None,
                   target: Optional[str] = None, probes: Iterable[str] = (),
                   sample_ids: Optional[Sequence[int]] = None,
                   on_samples: Optional[Callable[[int], None]] = None) -> ShardedResult:
    """``count`` samples through ``network`` in this process, ``chunk`` samples per Lava run
    (None: one run); ``on_samples(n)`` after each run of n samples."""
    probes = list(probes)
    (shard,) = plan_shards(count, 1, sample_ids)
    timing = WorkerTiming(shard)
    start = time.perf_counter()
    chunks = []
    for r in chunk_bounds(0, count, chunk):
        result = run_chunk(network, r.start, r.stop, inputs(r.start, r.stop), target=target,
                           probes=probes)
        timing.add(result)
        chunks.append(result)
        if on_samples is not None:
            on_samples(len(r))
    timing.wall_s = time.perf_counter() - start
    return merge(chunks, count, probes, [timing], timing.wall_s)
