"""Graphs of the shape foreign NIR imports produce (issue 6), on the fixed-point Lava target.

An snntorch-style network -- no attention, no residuals, vectors as (K, 1, 1) maps, Flatten +
Linear as a full-kernel conv, a Linear on a vector as a 1x1 conv, LIFs with r = tau and
spike_if ">", and the readout token_time_mean -> identity affine -> output over a 1x1 token
grid -- quantized by compiler.passes.quantize and run on ``lava-sim`` gives exactly the
reference executor's spikes, logits and predictions (deploy/lava/verify.py), on real digits
images. Built by hand here, and through snntorch.export_to_nir + compiler.nir.foreign once
that importer exists.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.calibration import detect_input_grid
from compiler.ir import Graph, Node
from compiler.passes.quantize import QuantizeOptions, quantize
from compiler.encoding import encode_integer
from deploy.lava import StageKind, lower
from deploy.lava.verify import verify_against_reference
from spikformer_neuro.data import load_dataset

T = 6
SAMPLES = 48
BETA = 1 - 410 / 4096          # on Loihi's decay grid: dv = 410 exactly


def digits(split: str, count: int) -> torch.Tensor:
    ds, _ = load_dataset("digits", split)
    return torch.stack([ds[i][0] for i in range(count)])


def _lif(name: str, src: str, shape) -> Node:
    tau = 1.0 / (1.0 - BETA)                 # snntorch Leaky(beta): tau = 1/(1-beta), r = tau
    return Node(name, "lif", [src], shape,
                attrs={"tau": tau, "v_threshold": 1.0, "r": tau, "spike_if": ">"})


def _conv(name: str, src: str, shape, weight: np.ndarray, bias: np.ndarray, **attrs) -> Node:
    return Node(name, "conv2d", [src], shape, params={"weight": weight, "bias": bias},
                attrs={"stride": 1, "padding": 0, "groups": 1, **attrs})


def snntorch_style_graph(kind: str, seed: int = 0) -> Graph:
    """mlp: Flatten -> Linear(64, 32) -> Leaky -> Linear(32, 10) -> Leaky;
    cnn: Conv2d(1, 6, 3, padding 1) -> Leaky -> Flatten -> Linear(384, 10) -> Leaky."""
    rng = np.random.default_rng(seed)
    g = Graph(meta={"time_steps": T, "num_classes": 10, "model": f"snntorch-{kind}",
                    "dataset": "digits"})
    g.add(Node("input", "input", [], (1, 8, 8), attrs={"encoding": "analog"}))
    if kind == "mlp":
        g.add(_conv("fc1", "input", (32, 1, 1), rng.normal(0, 0.25, (32, 1, 8, 8)),
                    rng.normal(0, 0.1, 32)))
        g.add(_lif("lif1", "fc1", (32, 1, 1)))
        g.add(_conv("fc2", "lif1", (10, 1, 1), rng.normal(0, 0.5, (10, 32, 1, 1)),
                    rng.normal(0, 0.1, 10)))
    else:
        g.add(_conv("conv1", "input", (6, 8, 8), rng.normal(0, 0.8, (6, 1, 3, 3)),
                    rng.normal(0, 0.1, 6), padding=1))
        g.add(_lif("lif1", "conv1", (6, 8, 8)))
        g.add(_conv("fc2", "lif1", (10, 1, 1), rng.normal(0, 0.15, (10, 6, 8, 8)),
                    rng.normal(0, 0.1, 10)))
    g.add(_lif("lif2", "fc2", (10, 1, 1)))
    g.add(Node("mean", "token_time_mean", ["lif2"], (10,)))
    g.add(Node("head", "affine", ["mean"], (10,), params={"weight": np.eye(10)}))
    g.add(Node("out", "output", ["head"], (10,)))
    return g.validate()


def quantize_for_digits(graph: Graph) -> Graph:
    """As the compile pipeline does: the input grid from training images, then quantize."""
    levels = detect_input_grid(graph, digits("train", 64))
    assert levels == 16                      # scikit-learn digits: 16 levels per unit
    return quantize(graph, None, QuantizeOptions(input_levels=levels))


def check_lava_equals_reference(q: Graph) -> None:
    x = digits("test", SAMPLES)
    check = verify_against_reference(q, encode_integer(q, x), "lava-sim")
    assert check.spikes_compared > 0
    assert check.layer_mismatches == {name: 0 for name in check.layer_mismatches}
    assert (check.spike_mismatches, check.logit_mismatches,
            check.prediction_mismatches) == (0, 0, 0)
    for name, spikes in check.lava.outputs.items():
        assert 0.02 < spikes.mean() < 0.98, (name, spikes.mean())   # neither silent nor saturated
    # the readout over the 1x1 token grid: integer logits = identity head on spike counts
    assert len(set(check.lava.predictions.tolist())) > 1


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_snntorch_style_graph_quantized_on_lava_sim(kind):
    q = quantize_for_digits(snntorch_style_graph(kind))
    assert q["lif1"].op == "loihi_lif" and q["mean"].op == "token_time_sum"
    net = lower(q)
    # no attention, no residual: a plain chain, one Conv hop per layer, no delay lines
    K = StageKind
    assert [s.kind for s in net.stages.values()] == \
        [K.SOURCE, K.CONV, K.LIF_RESET, K.CONV, K.LIF_RESET, K.READOUT]
    first = "fc1" if kind == "mlp" else "conv1"
    assert net.lags == {"input": 0, first: 1, "lif1": 1, "fc2": 2, "lif2": 2, "mean": 2}
    check_lava_equals_reference(q)


def test_snntorch_export_to_nir_quantized_on_lava_sim():
    """The same check on a graph imported from snntorch's own NIR export."""
    foreign = pytest.importorskip("compiler.nir.foreign",
                                  reason="compiler/nir/foreign.py (NIR import) not present yet")
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    def leaky(shape):
        return snn.Leaky(beta=torch.full(shape, BETA), threshold=torch.ones(shape),
                         init_hidden=True, reset_mechanism="zero")

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), leaky((32,)),
                              torch.nn.Linear(32, 10), leaky((10,)))
    with torch.no_grad():
        net[1].weight.mul_(2.0)
        net[3].weight.mul_(3.0)
    nir_graph = export_to_nir(net, digits("test", 1), ignore_dims=[0])
    graph = foreign.foreign_nir_to_ir(nir_graph, convention="snntorch", time_steps=T,
                                      dataset="digits", dt=None, source="snntorch-mlp")
    check_lava_equals_reference(quantize_for_digits(graph))
