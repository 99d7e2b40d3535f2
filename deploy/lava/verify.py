"""Verify a Lava run against the reference executor: every probed spike and every logit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from compiler.ir import Graph
from compiler.reference import run_reference
from deploy.lava.lowering import lower
from deploy.lava.runner import LavaResult, run


@dataclass
class LavaCheck:
    lava: LavaResult
    reference_logits: np.ndarray
    spikes_compared: int = 0
    layer_mismatches: Dict[str, int] = field(default_factory=dict)  # node -> differing values
    logit_mismatches: int = 0          # samples whose integer logits differ anywhere
    prediction_mismatches: int = 0     # samples whose argmax differs

    @property
    def spike_mismatches(self) -> int:
        return sum(self.layer_mismatches.values())

    @property
    def exact(self) -> bool:
        return self.spike_mismatches == 0 and self.logit_mismatches == 0


def verify_against_reference(graph: Graph, x_seq: np.ndarray, target: str,
                             progress: Optional[Callable[[int, int], None]] = None) -> LavaCheck:
    """Stream ``x_seq`` ([T, B, ...] integers) through Lava on ``target``, probing every LIF
    population, and compare with the reference executor on the same integers."""
    network = lower(graph)
    probes = [n.name for n in graph.by_op("loihi_lif")]
    lava = run(network, x_seq, target=target, probes=probes,
               chunk_steps=max(1, x_seq.shape[0] * 8), callback=progress)
    ref = run_reference(graph, x_seq, record=probes, encoded=True)
    check = LavaCheck(lava=lava, reference_logits=ref.logits)
    for name in probes:
        a, b = lava.outputs[name], ref.outputs[name]
        check.spikes_compared += b.size
        check.layer_mismatches[name] = int((a != b).sum())
    check.logit_mismatches = int((lava.logits != ref.logits).any(axis=1).sum())
    check.prediction_mismatches = int((lava.predictions != ref.predictions).sum())
    return check
