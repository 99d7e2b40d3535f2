"""What a worker sends back for each chunk of samples, and the merged result of a run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple

import numpy as np

from deploy.parallel.shards import Shard


def pack(array: np.ndarray) -> Tuple[np.ndarray, str]:
    """An integer array in the smallest integer type that holds its values (spikes: one byte
    instead of eight), with its own dtype to restore; other arrays as they are."""
    array = np.asarray(array)
    if array.dtype.kind in "iu" and array.size:
        small = np.result_type(np.min_scalar_type(int(array.min())),
                               np.min_scalar_type(int(array.max())))
        return array.astype(small), array.dtype.str
    return array, array.dtype.str


def unpack(packed: Tuple[np.ndarray, str]) -> np.ndarray:
    array, dtype = packed
    return np.asarray(array).astype(np.dtype(dtype), copy=False)


@dataclass
class ChunkResult:
    """One Lava run over positions ``start..stop-1`` of the run (packed for the trip back)."""

    start: int
    stop: int
    logits: Tuple[np.ndarray, str]
    outputs: Dict[str, Tuple[np.ndarray, str]]
    num_steps: int
    compile_s: float
    run_s: float


@dataclass
class WorkerTiming:
    """One worker's (or Ray task's) share of a run and its times."""

    shard: Shard
    startup_s: float = 0.0     # from its start until the network was lowered
    compile_s: float = 0.0     # Lava compile + worker start, summed over its chunks
    run_s: float = 0.0         # Lava stepping, summed over its chunks
    num_steps: int = 0
    wall_s: float = 0.0        # from its start until its last result arrived

    def add(self, chunk: ChunkResult) -> None:
        self.compile_s += chunk.compile_s
        self.run_s += chunk.run_s
        self.num_steps += chunk.num_steps

    def as_dict(self) -> dict:
        s = self.shard
        return {"worker": s.index, "sample_indices": [s.first, s.last + 1], "samples": s.size,
                "startup_s": self.startup_s, "lava_compile_s": self.compile_s,
                "lava_run_s": self.run_s, "lava_steps": self.num_steps,
                "samples_per_s": s.size / self.run_s if self.run_s else None,
                "wall_s": self.wall_s}


@dataclass
class ShardedResult:
    """A run over one or more workers, merged in sample order; reads like
    ``deploy.lava.LavaResult`` (``logits``, ``outputs``, ``predictions``, ``num_steps``,
    ``run_s``, ``ms_per_step``, ``samples_per_s``).

    ``run_s`` is the stepping time of the slowest worker: the workers step side by side, so
    ``samples_per_s`` (samples / ``run_s``) is the throughput of the whole run, and with one
    worker exactly ``LavaResult``'s. ``ms_per_step`` is the time of one Lava step in a worker
    (all workers' stepping over all their steps). ``wall_s``: the whole run, start-ups
    included."""

    logits: np.ndarray                                   # [B, K]
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)   # node -> [T, B, *shape]
    workers: List[WorkerTiming] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def num_steps(self) -> int:
        return sum(w.num_steps for w in self.workers)

    @property
    def compile_s(self) -> float:
        return sum(w.compile_s for w in self.workers)

    @property
    def run_s(self) -> float:
        return max((w.run_s for w in self.workers), default=0.0)

    @property
    def ms_per_step(self) -> float:
        return 1e3 * sum(w.run_s for w in self.workers) / max(self.num_steps, 1)

    @property
    def samples_per_s(self) -> float:
        return self.logits.shape[0] / self.run_s if self.run_s > 0 else float("inf")


def merge(chunks: Iterable[ChunkResult], count: int, probes: Iterable[str],
          workers: List[WorkerTiming], wall_s: float) -> ShardedResult:
    """The chunks (in any order) as one result in sample order; they must cover positions
    0..count-1 exactly once."""
    ordered = sorted(chunks, key=lambda c: c.start)
    covered = [(c.start, c.stop) for c in ordered]
    expected_start = 0
    for start, stop in covered:
        if start != expected_start or stop <= start:
            raise RuntimeError(f"the workers' results do not cover the samples in order: "
                               f"{covered} (of {count})")
        expected_start = stop
    if expected_start != count:
        raise RuntimeError(f"the workers returned {expected_start} of {count} samples")
    logits = np.concatenate([unpack(c.logits) for c in ordered])
    outputs = {p: np.concatenate([unpack(c.outputs[p]) for c in ordered], axis=1)
               for p in probes}
    return ShardedResult(logits, outputs, workers, wall_s)
