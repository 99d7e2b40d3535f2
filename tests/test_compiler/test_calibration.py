"""compiler.calibration: the input grid detected on real samples and the observed |W.x|."""
import numpy as np
import pytest
import torch

from compiler.calibration import detect_input_grid, observed_synaptic_max
from compiler.float_exec import run_float
from compiler.ir import Graph, IRError, Node


def _graph(encoding="analog", c=2, **input_attrs):
    g = Graph(meta={"time_steps": 2})
    w = np.arange(1, 2 * c + 1, dtype=np.float32).reshape(2, c, 1, 1) / 4
    for n in [Node("input", "input", [], (c, 2, 2), attrs={"encoding": encoding, **input_attrs}),
              Node("c", "conv2d", ["input"], (2, 2, 2), {"weight": w, "bias": np.full(2, 3.0,
                                                                                      np.float32)},
                   {"stride": 1, "padding": 0, "groups": 1}),
              Node("l", "lif", ["c"], (2, 2, 2), attrs={"tau": 2.0, "v_threshold": 1.0}),
              Node("m", "token_time_mean", ["l"], (2,)),
              Node("head", "affine", ["m"], (2,), {"weight": np.eye(2, dtype=np.float32)}),
              Node("output", "output", ["head"], (2,))]:
        g.add(n)
    return g.validate()


def test_grid_of_8_bit_and_16_level_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 2, 2, 2)) / 255
    assert detect_input_grid(_graph(), x) == 255
    assert detect_input_grid(_graph(), torch.from_numpy(rng.integers(0, 17, (4, 2, 2, 2)) / 16)) == 16
    assert detect_input_grid(_graph(), rng.random((4, 2, 2, 2))) is None
    assert detect_input_grid(_graph("spikes"), np.zeros((1, 2, 2, 2, 2))) is None


def test_grid_is_detected_after_the_per_channel_normalisation():
    # (x - mean) / std per channel: k/16 images with std 1/2 lie on the grid 1/8
    x = np.random.default_rng(1).integers(0, 17, (4, 2, 2, 2)) / 16
    assert detect_input_grid(_graph(mean=[0.0, 0.5], std=[0.5, 0.5]), x) == 8
    assert detect_input_grid(_graph(mean=[0.25, 0.0]), x) == 16
    with pytest.raises(IRError, match="mean/std need 2 values"):
        detect_input_grid(_graph(mean=[0.0]), x)


def test_observed_synaptic_max_excludes_the_bias_and_spans_batches():
    g = _graph()
    x = torch.from_numpy(np.random.default_rng(2).random((5, 2, 2, 2)))
    got = observed_synaptic_max(g, x, batch_size=2)
    y = run_float(g, x, record=["c"], dtype=torch.float64).outputs["c"] - 3.0
    assert got == {"c": float(y.abs().max())}
