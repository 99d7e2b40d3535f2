"""compiler.encoding: the batch shapes users give (images, event frames, and vectors [B, K] /
spike trains [B, T, K] for a network whose input is a vector), and check_samples, the one
check of a user's batch that spikeform-compile, -report and -run share."""
import numpy as np
import pytest
import torch

from compiler.encoding import (SAMPLE_SHAPE, as_maps, batch_kind, check_batch, check_samples,
                               describe_input, encode_float, encode_integer, expected_batch,
                               is_flat, sample_shape)
from compiler.float_exec import run_float
from compiler.ir import Graph, IRError, Node


def vector_graph(encoding="analog", k=3, steps=2, flat=True, stage="float"):
    """input (k, 1, 1) -> conv 1x1 -> lif -> readout -> output; ``flat``: the input is the
    vector [k] (graph meta sample_shape), as the NIR import makes of an Input (k,)."""
    g = Graph(meta={"time_steps": steps, "stage": stage, "num_classes": 2,
                    **({SAMPLE_SHAPE: [k]} if flat else {})})
    attrs = {"encoding": encoding}
    if stage == "quantized":
        attrs = {"encoding": "spikes" if encoding == "spikes" else "graded", "input_scale": 16}
    g.add(Node("input", "input", [], (k, 1, 1), {}, attrs))
    w = np.arange(2 * k, dtype=np.float64).reshape(2, k, 1, 1) / (2 * k)
    g.add(Node("fc", "conv2d", ["input"], (2, 1, 1), {"weight": w},
               {"stride": [1, 1], "padding": [0, 0], "groups": 1}))
    g.add(Node("lif", "lif", ["fc"], (2, 1, 1), {}, {"tau": 2.0, "v_threshold": 0.25}))
    g.add(Node("mean", "token_time_mean", ["lif"], (2,)))
    g.add(Node("head", "affine", ["mean"], (2,), {"weight": np.eye(2)}))
    g.add(Node("output", "output", ["head"], (2,)))
    return g.validate() if stage == "float" else g


def test_sample_shape_and_descriptions():
    g = vector_graph()
    assert sample_shape(g) == (3,) and is_flat(g) and batch_kind(g) == "vectors"
    assert expected_batch(g) == "[B, 3]"
    assert describe_input(g) == "vectors [B, 3] with values in [0, 1]"
    s = vector_graph("spikes")
    assert batch_kind(s) == "spike trains" and expected_batch(s) == "[B, 2, 3]"
    assert describe_input(s) == "spike trains [B, 2, 3] of 0s and 1s"
    # without the meta, a (K, 1, 1) input is an image of 1x1 pixels, as before
    img = vector_graph(flat=False)
    assert sample_shape(img) == (3, 1, 1) and not is_flat(img)
    assert expected_batch(img) == "[B, 3, 1, 1]" and batch_kind(img) == "images"
    bad = vector_graph()
    bad.meta[SAMPLE_SHAPE] = [4]
    with pytest.raises(IRError, match=r"'sample_shape' \[4\] does not describe the \[3, 1, 1\]"):
        sample_shape(bad)


def test_check_batch_takes_vectors_and_the_map_form():
    g = vector_graph()
    assert check_batch(g, (5, 3)) == "analog" and check_batch(g, (5, 3, 1, 1)) == "analog"
    with pytest.raises(ValueError, match=r"expected vectors \[B, 3\], got \[5, 4\]"):
        check_batch(g, (5, 4))
    with pytest.raises(ValueError, match=r"expected vectors \[B, 3\], got \[3\]"):
        check_batch(g, (3,))
    s = vector_graph("spikes")
    assert check_batch(s, (5, 2, 3)) == "spikes"
    with pytest.raises(ValueError, match=r"expected spike trains \[B, 2, 3\], got \[5, 4, 3\]: "
                                         r"the graph runs 2 time steps, the spike trains have 4"):
        check_batch(s, (5, 4, 3))
    with pytest.raises(ValueError, match=r"expected spike trains \[B, 2, 3\], got \[5, 3\]"):
        check_batch(s, (5, 3))
    x = np.arange(15.0).reshape(5, 3)
    assert as_maps(g, x).shape == (5, 3, 1, 1)
    assert tuple(as_maps(g, torch.from_numpy(x)).shape) == (5, 3, 1, 1)
    assert as_maps(s, np.zeros((5, 2, 3))).shape == (5, 2, 3, 1, 1)


def test_vector_batches_run_like_their_map_form():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(6, 3)) / 16.0
    g = vector_graph()
    flat = run_float(g, torch.from_numpy(x).float(), record=["lif"])
    maps = run_float(g, torch.from_numpy(x.reshape(6, 3, 1, 1)).float(), record=["lif"])
    assert torch.equal(flat.logits, maps.logits)
    assert torch.equal(flat.outputs["lif"], maps.outputs["lif"])
    assert flat.outputs["lif"].shape == (2, 6, 2, 1, 1) and float(flat.outputs["lif"].sum()) > 0
    assert np.array_equal(encode_float(g, x), encode_float(g, x.reshape(6, 3, 1, 1)))
    q = vector_graph(stage="quantized")
    ints = encode_integer(q, x)
    assert ints.shape == (2, 6, 3, 1, 1) and np.array_equal(ints[0, :, :, 0, 0], x * 16)
    s = vector_graph("spikes", stage="quantized")
    spikes = (rng.random((6, 2, 3)) < 0.5).astype(np.float32)
    assert np.array_equal(encode_integer(s, spikes)[:, :, :, 0, 0], spikes.transpose(1, 0, 2))


@pytest.mark.parametrize("bad, needles", [
    (np.zeros((2, 4)), ("--data 'x.npy' does not fit this network: shape [2, 4]",
                        "expected vectors [B, 3] with values in [0, 1]")),
    (np.zeros((2, 1, 3)), ("shape [2, 1, 3]", "expected vectors [B, 3]")),
    (np.zeros((0, 3)), ("--data 'x.npy' holds no samples (shape [0, 3])", "expected vectors")),
    (np.float32(0.5), ("holds a single number", "expected vectors [B, 3]")),
    (np.array([[0.5, np.nan, 0.0]]), ("1 NaN or infinite value", "sample 0 at [1]",
                                      "expected vectors [B, 3]")),
    (np.full((2, 3), "a"), ("dtype <U1 (text)", "expected vectors [B, 3]")),
    (np.zeros((2, 3), complex), ("complex128", "expected vectors [B, 3]")),
    (np.full((2, 3), 255.0), ("values must lie in [0, 1] (found 255..255; divide 8-bit "
                              "images by 255)", "expected vectors [B, 3]")),
    (np.full((2, 3), -0.5), ("values must lie in [0, 1] (found -0.5..-0.5)",)),
])
def test_check_samples_names_the_batch_and_the_expected_shape(bad, needles):
    with pytest.raises(ValueError) as e:
        check_samples(vector_graph(), bad, "--data 'x.npy'")
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))


def test_check_samples_of_spike_trains():
    s = vector_graph("spikes")
    ok = np.zeros((4, 2, 3), np.uint8)
    assert check_samples(s, ok, "x") is ok
    assert check_samples(s, ok.astype(bool), "x").dtype == bool
    with pytest.raises(ValueError, match=r"x holds 1 value\(s\) that are not spikes \(the "
                                         r"first: 0\.5 in sample 1\); expected spike trains "
                                         r"\[B, 2, 3\] of 0s and 1s"):
        check_samples(s, np.where(np.arange(24).reshape(4, 2, 3) == 7, 0.5, 0.0), "x")
    with pytest.raises(ValueError, match=r"shape \[4, 5, 3\]: the network runs 2 time steps, "
                                         r"the spike trains have 5"):
        check_samples(s, np.zeros((4, 5, 3)), "x")
    # the images a network without the vector meta takes
    img = vector_graph(flat=False)
    check_samples(img, np.zeros((2, 3, 1, 1)), "x")
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 1, 1\] with values"):
        check_samples(img, np.zeros((2, 3)), "x")
