"""The Lava attention ProcessModels compute their arithmetic themselves, and it equals the
reference executor's exactly.

``deploy/lava/attention/models.py`` never imports ``compiler.reference``: its per-head
``Q.K^T.V`` (layout reshapes from ``compiler.layout``, exact integer products with the dtype
chosen by ``loihi_numerics.exact_matmul``) is compared here with
``compiler.reference.attention_counts`` on random binary q, k, v of several shapes and head
counts -- both association orders, batched and unbatched, integer and float inputs -- and
through the models' own ``run_spk`` on Lava-layout messages (no runtime).
"""
from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import deploy.lava.attention as attention_pkg
from compiler.reference import attention_counts
from deploy.lava.attention.models import (PySpikingAttentionFixed, PySpikingAttentionFloat,
                                          attention_products, lava_layout_products)
from loihi_numerics import fixed_point as fx

# (heads, D, H, W): d = D / heads channels per head, N = H * W tokens
SHAPES = [(1, 8, 4, 4), (2, 16, 4, 4), (4, 32, 4, 4), (8, 64, 2, 4), (3, 12, 3, 5),
          (1, 8, 1, 2), (4, 32, 2, 3), (2, 32, 2, 2), (16, 256, 4, 4), (1, 1, 1, 1)]


def _binary(rng, shape, p):
    return (rng.random(shape) < p).astype(np.int64)


@pytest.mark.parametrize("heads,d,h,w", SHAPES)
def test_products_equal_reference_counts_on_random_binary_maps(heads, d, h, w):
    rng = np.random.default_rng(1000 * heads + 10 * d + h * w)
    for batch in ((), (3,), (2, 2)):
        for p in (0.05, 0.5, 0.95):
            q, k, v = (_binary(rng, batch + (d, h, w), p) for _ in range(3))
            flat = [a.reshape((-1, d, h, w)) for a in (q, k, v)]
            want = attention_counts(*flat, heads).reshape(batch + (d, h, w))
            got = attention_products(q, k, v, heads)
            assert got.dtype == np.int64 and np.array_equal(got, want), (batch, p)
            got_f = attention_products(*(a.astype(np.float64) for a in (q, k, v)), heads)
            assert got_f.dtype == np.float64 and np.array_equal(got_f, want), (batch, p)
            got_b = attention_products(*(a.astype(bool) for a in (q, k, v)), heads)
            assert np.array_equal(got_b, want)


def test_both_association_orders_are_exercised():
    """d <= N takes Q.(K^T.V), d > N takes (Q.K^T).V: SHAPES has both."""
    orders = {d // heads <= h * w for heads, d, h, w in SHAPES}
    assert orders == {True, False}


def test_graded_and_large_integers_are_exact():
    """Non-binary integers: the dtype follows the bound N d max|q| max|k| max|v| (float32,
    float64 or int64), and the result equals exact Python-int arithmetic."""
    rng = np.random.default_rng(7)
    for lim in (3, 300, 2 ** 12, 2 ** 18):           # float32, float64, float64, int64
        for heads, d, h, w in ((2, 8, 2, 2), (1, 4, 3, 3), (2, 4, 1, 3)):
            q, k, v = (rng.integers(-lim, lim + 1, (2, d, h, w)) for _ in range(3))
            dh, n = d // heads, h * w

            def heads_of(a):
                return a.reshape(2, heads, dh, n).transpose(0, 1, 3, 2).astype(object)

            qh, kh, vh = heads_of(q), heads_of(k), heads_of(v)
            exact = (qh @ kh.swapaxes(-1, -2)) @ vh                   # Python ints
            want = exact.transpose(0, 1, 3, 2).reshape(2, d, h, w)
            got = attention_products(q, k, v, heads)
            assert got.dtype == np.int64 and (got.astype(object) == want).all(), (lim, d)


@pytest.mark.parametrize("heads,d,h,w", SHAPES)
def test_lava_layout_products_equal_the_map_layout_ones(heads, d, h, w):
    """The fixed model's per-step path (Lava layout in and out, no [D, H, W] round trip)
    gives attention_products' integers, binary and graded (float32, float64, int64)."""
    rng = np.random.default_rng(17 * heads + d + 3 * h + w)
    for lim in (1, 1, 300, 2 ** 18):
        maps = [rng.integers(0 if lim == 1 else -lim, lim + 1, (d, h, w)) for _ in range(3)]
        want = fx.to_lava_layout(attention_products(*maps, heads))
        got = lava_layout_products(*(fx.to_lava_layout(m).astype(np.int32) for m in maps),
                                   heads)
        assert got.dtype == np.int64 and got.shape == want.shape
        assert np.array_equal(got, want), lim


def _model(cls, heads, gain, lava_shape, saturation=0):
    class _Port:
        def __init__(self):
            self.queue, self.sent = [], []

        def recv(self):
            return self.queue.pop(0)

        def send(self, data):
            self.sent.append(np.array(data, copy=True))

    m = cls({"gain": gain, "name": "attn"})
    m.num_heads, m.gain = np.array([heads]), np.array([gain])
    m.saturation = np.array([saturation])
    m.q, m.k, m.v, m.a_out = _Port(), _Port(), _Port(), _Port()
    return m


@pytest.mark.parametrize("heads,d,h,w", [(2, 16, 4, 4), (2, 32, 2, 2), (3, 12, 3, 5)])
def test_models_send_gain_times_reference_counts(heads, d, h, w):
    """run_spk on Lava-layout (W, H, D) messages: the fixed model sends int32
    gain * counts, the float model float64 gain * counts, at the same step."""
    rng = np.random.default_rng(d + h)
    lava = fx.lava_shape((d, h, w))
    fixed = _model(PySpikingAttentionFixed, heads, 8, lava)
    flt = _model(PySpikingAttentionFloat, heads, 0.375, lava)
    wants = []
    for step in range(4):
        maps = [_binary(rng, (d, h, w), 0.4) for _ in range(3)]
        if step == 2:
            maps[1][:] = 0                                     # an empty key map
        counts = attention_counts(*(m[None] for m in maps), heads)[0]
        wants.append(counts)
        for model, dtype in ((fixed, np.int32), (flt, np.float64)):
            for port, m in zip((model.q, model.k, model.v), maps):
                port.queue.append(fx.to_lava_layout(m).astype(dtype))
            model.run_spk()
    for counts, a, b in zip(wants, fixed.a_out.sent, flt.a_out.sent):
        assert a.dtype == np.int32 and a.shape == lava
        assert np.array_equal(fx.from_lava_layout(a), 8 * counts)
        assert b.dtype == np.float64 and b.shape == lava
        assert np.array_equal(fx.from_lava_layout(b), 0.375 * counts)
    assert not wants[2].any()


def test_fixed_model_saturates_the_counts():
    """saturation s: counts above s are sent as s (the quantizer's proof: they fire the
    attention LIF whatever its state); 0 means none."""
    rng = np.random.default_rng(3)
    heads, d, h, w = 2, 16, 4, 4
    lava = fx.lava_shape((d, h, w))
    for saturation in (0, 1, 5, 40):
        model = _model(PySpikingAttentionFixed, heads, 4, lava, saturation)
        maps = [_binary(rng, (d, h, w), 0.5) for _ in range(3)]
        counts = attention_counts(*(m[None] for m in maps), heads)[0]
        assert counts.max() > 5
        for port, m in zip((model.q, model.k, model.v), maps):
            port.queue.append(fx.to_lava_layout(m).astype(np.int32))
        model.run_spk()
        want = counts if not saturation else np.minimum(counts, saturation)
        assert np.array_equal(fx.from_lava_layout(model.a_out.sent[0]), 4 * want)


def test_attention_package_never_imports_the_reference_executor():
    """The agreement above is checked, not built in: no module of deploy/lava/attention
    imports compiler.reference (or anything from it)."""
    root = Path(attention_pkg.__file__).parent
    modules = [root / f"{m.name}.py" for m in pkgutil.iter_modules([str(root)])]
    assert {p.stem for p in modules} >= {"models", "process"}
    for path in modules + [root / "__init__.py"]:
        text = path.read_text()
        assert "compiler.reference" not in text, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("compiler.reference"), path
                assert not (node.module == "compiler" and
                            any(a.name == "reference" for a in node.names)), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("compiler.reference") for a in node.names)
