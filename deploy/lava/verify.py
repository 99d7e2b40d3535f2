"""Verify a Lava run against its ground truth, every probed spike and every logit: the
reference executor for a quantized graph (``verify_against_reference``), the float executor
in float64 for a float graph on ``lava-sim-float`` (``verify_float_against_float_exec``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np

from compiler.ir import Graph
from compiler.reference import run_reference
from compiler.encoding import encode_float
from deploy.lava.lowering import lower, lower_float
from deploy.lava.runner import LavaResult, run
from deploy.lava.targets import FLOAT_TARGET


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
                             progress: Optional[Callable[[int, int], None]] = None,
                             workers: int = 1,
                             probes: Optional[Sequence[str]] = None) -> LavaCheck:
    """Stream ``x_seq`` ([T, B, ...] integers) through Lava on ``target``, probing every LIF
    population (or the in-loop nodes named in ``probes``, e.g. the memoryless ``threshold``
    neurons too), and compare with the reference executor on the same integers. ``workers``
    > 1 spreads the samples over that many local Lava runtimes (``deploy.parallel``: the same
    spikes and logits in the same order); ``progress(done, total)`` counts steps, or samples
    with several workers."""
    if probes is None:
        probes = [n.name for n in graph.by_op("loihi_lif")]
    probes = list(probes)
    if workers > 1:
        lava = _run_on_workers(graph, x_seq, target, probes, workers, progress)
    else:
        lava = run(lower(graph), x_seq, target=target, probes=probes,
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


def _run_on_workers(graph: Graph, x_seq: np.ndarray, target: str, probes, workers: int,
                    progress: Optional[Callable[[int, int], None]]):
    """``deploy.parallel.run_sharded`` of the graph (shipped as its artifact files), read
    like a LavaResult; progress in samples."""
    from deploy.parallel import ArtifactFiles, array_inputs, run_sharded

    total, done = int(x_seq.shape[1]), [0]

    def on_samples(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    return run_sharded(ArtifactFiles.of_graph(graph), array_inputs(x_seq), total,
                       workers=workers, target=target, probes=probes, on_samples=on_samples)


def verify_float_against_float_exec(graph: Graph, x, target: str = FLOAT_TARGET,
                                    progress: Optional[Callable[[int, int], None]] = None,
                                    extra_probes: Iterable[str] = ()) -> LavaCheck:
    """Stream ``x`` (a batch as ``compiler.float_exec.run_float`` takes it) through a float
    graph on Lava's floating-point models, probing every ``lif`` and ``threshold``, and
    compare with ``run_float`` in float64: spikes and predictions exactly, and the float
    logits with ``==`` too (``logit_mismatches`` counts samples whose logits differ in any
    bit; the two compute the head in different summation orders, so a last-bit difference
    there is possible without any spike differing). ``extra_probes``: more nodes recorded in
    ``check.lava.outputs`` (not compared)."""
    import torch  # the float executor's dependency; the fixed-point path does not need it

    from compiler.float_exec import run_float

    network = lower_float(graph)
    probes = [n.name for n in graph.by_op("lif", "threshold")]
    lava = run(network, encode_float(graph, x), target=target,
               probes=probes + [p for p in extra_probes if p not in probes],
               chunk_steps=max(1, network.time_steps * 8), callback=progress)
    ref = run_float(graph, torch.as_tensor(x), record=probes, dtype=torch.float64)
    ref_logits = ref.logits.numpy()
    check = LavaCheck(lava=lava, reference_logits=ref_logits)
    for name in probes:
        a, b = lava.outputs[name], ref.outputs[name].numpy()
        check.spikes_compared += b.size
        check.layer_mismatches[name] = int((a != b).sum())
    check.logit_mismatches = int((lava.logits != ref_logits).any(axis=1).sum())
    check.prediction_mismatches = int((lava.predictions != ref_logits.argmax(axis=1)).sum())
    return check
