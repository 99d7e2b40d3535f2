"""Splitting a run's samples into contiguous, balanced shards (one per worker or task)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence


def shard_range(total: int, i: int, n: int) -> range:
    """Contiguous, balanced shards whose concatenation over i = 0..n-1 is range(total)."""
    return range(total * i // n, total * (i + 1) // n)


@dataclass(frozen=True)
class Shard:
    """Worker ``index``'s part of a run: positions ``start..stop-1`` of the run's samples,
    whose own numbers (a data set's indices, for messages) are ``first..last``."""

    index: int
    start: int
    stop: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def describe(self, kind: str = "worker") -> str:
        """``worker 1 (samples 12..23)``: how errors name it."""
        samples = f"sample {self.first}" if self.first == self.last else \
            f"samples {self.first}..{self.last}"
        return f"{kind} {self.index} ({samples})"


def plan_shards(count: int, workers: int, sample_ids: Optional[Sequence[int]] = None
                ) -> List[Shard]:
    """``min(workers, count)`` non-empty shards of ``count`` samples (more workers than
    samples would leave some idle); ``sample_ids[k]`` is the number of the run's k-th sample
    (default k)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if count < 1:
        raise ValueError(f"nothing to run: {count} samples")
    ids = list(range(count)) if sample_ids is None else [int(i) for i in sample_ids]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} sample ids for {count} samples")
    n = min(workers, count)
    shards = []
    for i in range(n):
        r = shard_range(count, i, n)
        shards.append(Shard(i, r.start, r.stop, ids[r.start], ids[r.stop - 1]))
    return shards


def chunk_bounds(start: int, stop: int, chunk: Optional[int]) -> List[range]:
    """``start..stop`` in runs of ``chunk`` samples (None: one run)."""
    step = (stop - start) if chunk is None else int(chunk)
    if step < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return [range(a, min(a + step, stop)) for a in range(start, stop, step)]
