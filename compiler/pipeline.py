"""The compile pipeline: checkpoint -> float IR -> passes -> quantized IR, and its fidelity.

Each stage is a function of the previous one's output; the CLI (compiler/cli.py) strings
them together and writes the artifact and report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional

import numpy as np
import torch

from spikformer_neuro.checkpoint import Checkpoint

from .calibration import detect_input_grid, observed_synaptic_max
from .float_exec import run_float
from .frontend import checkpoint_to_ir
from .ir import Graph
from .passes import float_passes
from .passes.quantize import QuantizeOptions, quantize
from .reference import run_reference


@dataclass
class Compiled:
    float_graph: Graph        # as the frontend built it (mirrors the PyTorch model)
    quantized: Graph          # Loihi fixed point: what the reference and Lava run
    seconds: float


def compile_checkpoint(ckpt: Checkpoint, calibration_x: Optional[torch.Tensor],
                       overflow: str = "worst-case", margin: float = 2.0) -> Compiled:
    """Float IR, float passes, calibration (input grid; observed maxima if calibrated), quantize."""
    start = time.perf_counter()
    float_graph = checkpoint_to_ir(ckpt)
    folded = float_passes(float_graph)
    levels, observed = None, None
    if calibration_x is not None and len(calibration_x):
        levels = detect_input_grid(folded, calibration_x)
        if overflow == "calibrated":
            observed = observed_synaptic_max(folded, calibration_x)
    if "loihi_hints" in folded.meta:
        levels = None  # QAT fixed the input encoding; quantize takes it from the hints
    q = quantize(folded, observed, QuantizeOptions(overflow=overflow, margin=margin,
                                                   input_levels=levels))
    return Compiled(float_graph, q, time.perf_counter() - start)


@dataclass
class Fidelity:
    """Float model vs reference executor on the same samples."""

    samples: int = 0
    correct_float: int = 0
    correct_reference: int = 0
    prediction_mismatches: int = 0
    spikes_total: Dict[str, int] = field(default_factory=dict)
    spikes_equal: Dict[str, int] = field(default_factory=dict)
    spikes_float: Dict[str, int] = field(default_factory=dict)
    spikes_reference: Dict[str, int] = field(default_factory=dict)
    seconds_float: float = 0.0
    seconds_reference: float = 0.0

    def add(self, labels: np.ndarray, float_out, ref_out, lif_names: Iterable[str]) -> None:
        fp = float_out.logits.argmax(1).cpu().numpy()
        rp = ref_out.predictions
        self.samples += len(labels)
        self.correct_float += int((fp == labels).sum())
        self.correct_reference += int((rp == labels).sum())
        self.prediction_mismatches += int((fp != rp).sum())
        for name in lif_names:
            a = float_out.outputs[name].cpu().numpy().astype(np.int64)
            b = ref_out.outputs[name]
            self.spikes_total[name] = self.spikes_total.get(name, 0) + a.size
            self.spikes_equal[name] = self.spikes_equal.get(name, 0) + int((a == b).sum())
            self.spikes_float[name] = self.spikes_float.get(name, 0) + int(a.sum())
            self.spikes_reference[name] = self.spikes_reference.get(name, 0) + int(b.sum())

    def layers(self) -> Dict[str, dict]:
        return {n: {"agreement": self.spikes_equal[n] / self.spikes_total[n],
                    "rate_float": self.spikes_float[n] / self.spikes_total[n],
                    "rate_reference": self.spikes_reference[n] / self.spikes_total[n]}
                for n in self.spikes_total}


def measure_fidelity(compiled: Compiled, batches: Iterable, progress: Callable = lambda it: it
                     ) -> Fidelity:
    """Run the float graph and the reference executor on (x, labels) batches and compare."""
    lif_names = [n.name for n in compiled.quantized.by_op("loihi_lif")]
    fid = Fidelity()
    for x, y in progress(batches):
        t0 = time.perf_counter()
        f = run_float(compiled.float_graph, x, record=lif_names)
        t1 = time.perf_counter()
        r = run_reference(compiled.quantized, x, record=lif_names)
        t2 = time.perf_counter()
        fid.seconds_float += t1 - t0
        fid.seconds_reference += t2 - t1
        fid.add(np.asarray(y), f, r, lif_names)
    return fid
