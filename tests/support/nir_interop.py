"""Shared steps of the real-library interop tests (tests/test_compiler/nir/test_norse.py,
test_sinabs.py): digits images, quantization as spikeform-compile does it, the integer
reference measured against the library's own spikes, and Lava against the reference."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np
import torch

from compiler.calibration import detect_input_grid
from compiler.float_exec import run_float
from compiler.ir import Graph
from compiler.passes import float_passes
from compiler.passes.quantize import QuantizeOptions, quantize
from compiler.reference import run_reference
from spikformer_neuro.data import load_dataset


def digits(split: str, n: int = 0) -> torch.Tensor:
    """The first ``n`` (all when 0) scikit-learn digits images of a split, [n, 1, 8, 8]."""
    ds, _ = load_dataset("digits", split)
    n = n or len(ds)
    return torch.stack([ds[i][0] for i in range(n)])


def quantized_on_digits(ir: Graph):
    """(folded float graph, quantized graph), the input grid detected on training images (the
    digits' 16 grey levels) as spikeform-compile does, worst-case overflow bounds."""
    folded = float_passes(ir)
    levels = detect_input_grid(folded, digits("train", 256).reshape(-1, *ir.input_node.shape))
    assert levels == 16
    return folded, quantize(folded, None, QuantizeOptions(input_levels=levels))


def dequantised(folded: Graph, q: Graph) -> Graph:
    """The float graph with the quantized graph's integer weights and biases, back in float
    units (W = w_int * 64 tau k / (S r), b = bias_int * tau / (S r)): what the integer grid
    computes, for measuring how much of a difference the weight rounding explains."""
    deq = folded.copy()
    layers = q.meta["quantization"]["layers"]
    levels = float(q.input_node.attrs["input_scale"])
    for lif in q.by_op("loihi_lif"):
        conv = layers[lif.name]["input"]
        s, tau, r = layers[lif.name]["scale"], folded[lif.name].attrs["tau"], \
            folded[lif.name].attrs["r"]
        k = levels if folded[conv].inputs == [q.input_node.name] else 1.0
        w_int = q[conv].params["weight"].astype(np.float64)
        deq[conv].params["weight"] = w_int * 64 * tau * k / (s * r)
        bias = (lif.params["bias_mant"].astype(np.int64) << lif.params["bias_exp"]).ravel()
        deq[conv].params["bias"] = bias * tau / (s * r)
    return deq


@dataclass
class ReferenceVsLibrary:
    spikes_differ: Dict[str, int]        # spike values [T, B, ...] where reference != library
    spikes_total: Dict[str, int]
    predictions_differ: int              # argmax of output spike counts
    # the reference against the float network with the quantized (rounded) weights, float64:
    # zero here means every difference from the library is the weight rounding
    rounded_float_differ: Dict[str, int]
    rounded_float_predictions_differ: int


def reference_vs_library(ir: Graph, folded: Graph, q: Graph, x: torch.Tensor,
                         theirs: Dict[str, torch.Tensor], output_lif: str) -> ReferenceVsLibrary:
    """``theirs``: the library's spikes per LIF (IR names), [T, B, ...] in any layout of the
    same size; ``x``: [B, ...] images."""
    names: Sequence[str] = list(theirs)
    xs = x.reshape(len(x), *ir.input_node.shape)
    ref = run_reference(q, xs, record=names)
    lib = {n: theirs[n].reshape(ref.outputs[n].shape).numpy() for n in names}
    steps = ref.outputs[output_lif].shape[0]
    lib_pred = lib[output_lif].reshape(steps, len(x), -1).sum(0).argmax(1)
    deq = run_float(dequantised(folded, q), xs, record=names, dtype=torch.float64)
    return ReferenceVsLibrary(
        spikes_differ={n: int((ref.outputs[n] != lib[n]).sum()) for n in names},
        spikes_total={n: int(lib[n].size) for n in names},
        predictions_differ=int((ref.predictions != lib_pred).sum()),
        rounded_float_differ={n: int((ref.outputs[n] != deq.outputs[n].numpy()).sum())
                              for n in names},
        rounded_float_predictions_differ=int(
            (ref.predictions != deq.logits.argmax(1).numpy()).sum()))


def assert_lava_equals_reference(q: Graph, x: torch.Tensor) -> None:
    """``lava-sim`` (fixed point) against the reference executor on the same integers: every
    LIF spike, logit and prediction equal, and no layer silent."""
    from compiler.encoding import encode_integer
    from deploy.lava.verify import verify_against_reference

    check = verify_against_reference(q, encode_integer(q, x), "lava-sim")
    assert check.spikes_compared > 0
    assert check.layer_mismatches == {n: 0 for n in check.layer_mismatches}
    assert (check.spike_mismatches, check.logit_mismatches,
            check.prediction_mismatches) == (0, 0, 0)
    for name, spikes in check.lava.outputs.items():
        assert spikes.mean() > 0.02, (name, spikes.mean())
