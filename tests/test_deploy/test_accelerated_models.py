"""Bit-exactness of deploy.accelerated models against the stock Lava 0.10
fixed-point models.

Two levels:
* model level (no Lava runtime, fake ports): many random shapes per second,
  every computation path (float32 / float64 / reference) exercised and counted;
* network level: the same tiny network run under
  ``Loihi2SimCfg(select_tag="fixed_pt")`` and under ``accelerated_run_config()``;
  every recorded Var (LIF u/v, Conv a_buf) and the sink spikes must be
  identical, step by step.

There is no accelerated Dense model (the backend never lowers to Dense): a Dense
in a network keeps Lava's stock model.
"""

from __future__ import annotations

import typing as ty
import warnings
from collections import Counter

import numpy as np
import pytest

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv import utils as conv_utils
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDenseModelBitAcc
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as SinkBuffer
from lava.proc.io.source import RingBuffer as SourceBuffer
from lava.proc.lif.models import PyLifModelBitAcc, PyLifResetModelBitAcc
from lava.proc.lif.process import LIF, LIFReset

from deploy.accelerated import (ACCELERATED_MODELS, accelerated_run_config)
from loihi_numerics.exact_matmul import (PATH_FLOAT32, PATH_FLOAT64, PATH_INT64,
                                         ExactIntMatmul)
from deploy.accelerated.models import (PyConvModelFixedAccelerated,
                                       PyLifModelBitAccAccelerated,
                                       PyLifResetModelBitAccAccelerated,
                                       _trunc_shift_decay)

STOCK_CFG = dict(select_tag="fixed_pt")


# ============================================================================
# Model-level harness (fake ports, no runtime)
# ============================================================================
class _FakeIn:
    def __init__(self) -> None:
        self.queue: ty.List[np.ndarray] = []

    def recv(self) -> np.ndarray:
        return self.queue.pop(0)


class _FakeOut:
    def __init__(self) -> None:
        self.sent: ty.List[np.ndarray] = []

    def send(self, data: np.ndarray) -> None:
        self.sent.append(np.array(data, copy=True))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def _make_conv_model(cls, weight, in_shape, padding, stride, dilation, groups,
                     num_message_bits):
    m = cls({})
    ks = weight.shape[1:3]
    st, pd, dl = (conv_utils.make_tuple(v) for v in (stride, padding, dilation))
    out = conv_utils.output_shape(in_shape, weight.shape[0], ks, st, pd, dl)
    m.weight = weight.astype(np.int32)
    m.kernel_size = np.array(ks, np.int8)
    m.stride, m.padding = np.array(st, np.int8), np.array(pd, np.int8)
    m.dilation, m.groups = np.array(dl, np.int8), np.array([groups], np.int8)
    m.num_message_bits = np.array([num_message_bits], np.int8)
    m.weight_exp = np.array([0], np.int32)
    m.num_weight_bits = np.array([8], np.int8)
    m.a_buf = np.zeros(out, np.int32)
    m.s_in, m.a_out = _FakeIn(), _FakeOut()
    return m


def _step_all(models, s):
    for m in models:
        m.s_in.queue.append(s.copy())
        m.run_spk()


def test_conv_model_level_random_shapes_all_paths():
    rng = np.random.default_rng(1234)
    totals: Counter = Counter()
    n_cases = 0
    with warnings.catch_warnings():
        # huge graded sums overflow stock's float64 -> int32 cast (both sides)
        warnings.simplefilter("ignore", RuntimeWarning)
        for trial in range(120):
            k = int(rng.choice([1, 2, 3, 5]))
            g = int(rng.choice([1, 1, 2, 3]))
            cin, cout = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
            x, y = int(rng.integers(k, 9)), int(rng.integers(k, 9))
            pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
            stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            dil = int(rng.integers(1, 3))
            if min(x + 2 * pad[0], y + 2 * pad[1]) < dil * (k - 1) + 1:
                continue
            nmb = int(rng.choice([0, 8, 24]))
            big = rng.random() < 0.3
            lim = 2 ** 20 if big else 128
            w = rng.integers(-lim, lim, (cout, k, k, cin // g))
            models = [_make_conv_model(c, w, (x, y, cin), pad, stride, dil, g, nmb)
                      for c in (PyConvModelFixed, PyConvModelFixedAccelerated)]
            acc = models[1]
            if trial % 3 == 0:       # force past the R*max|s| bound
                acc.float32_limit = acc.float64_limit = 0
            if trial % 9 == 0:       # ... and past the tight bound: reference
                acc.tight_limit = 0
            for _ in range(4):
                if nmb == 0:
                    s = (rng.random((x, y, cin)) < 0.3).astype(np.int32)
                else:
                    lo = -2 ** (nmb - 1) if rng.random() < 0.5 else -3
                    s = rng.integers(lo, 2 ** (nmb - 1), (x, y, cin)).astype(np.int32)
                _step_all(models, s)
            ref, got = models[0].a_out.sent, models[1].a_out.sent
            assert len(ref) == len(got) == 4
            for a, b in zip(ref, got):
                assert _same(a, b), (trial, k, g, cin, cout, x, y, pad, stride, dil, nmb)
            assert _same(models[0].a_buf, models[1].a_buf)
            totals.update(acc.path_counts)
            n_cases += 1
    assert n_cases > 80
    # every path must have been exercised (float64 includes the tight check)
    for path in ("float32", "float64", "reference"):
        assert totals[path] > 0, totals


def test_conv_non_integral_float_input_uses_reference():
    rng = np.random.default_rng(5)
    w = rng.integers(-50, 50, (2, 3, 3, 2))
    models = [_make_conv_model(c, w, (4, 5, 2), 1, 1, 1, 1, 8)
              for c in (PyConvModelFixed, PyConvModelFixedAccelerated)]
    s = rng.normal(size=(4, 5, 2)) * 10        # float source with fractions
    _step_all(models, s)
    _step_all(models, np.round(s))             # integral floats: fast path
    assert _same(models[0].a_buf, models[1].a_buf)
    assert models[1].path_counts["reference"] == 1
    assert models[1].path_counts["float32"] == 1


def _make_lif_model(cls, n, du, dv, vth, bias_mant, bias_exp, params):
    m = cls(dict(params))
    m.u, m.v = np.zeros(n, np.int32), np.zeros(n, np.int32)
    m.du, m.dv, m.vth = du, dv, vth
    m.bias_mant, m.bias_exp = bias_mant.astype(np.int16), bias_exp.astype(np.int16)
    m.a_in, m.s_out = _FakeIn(), _FakeOut()
    return m


def test_lif_and_lifreset_model_level_random():
    rng = np.random.default_rng(7)
    for trial in range(120):
        n = int(rng.integers(1, 50))
        reset = trial % 2 == 1
        du = int(rng.choice([0, 1, 4095, int(rng.integers(0, 4096))]))
        dv = int(rng.choice([0, 4095, int(rng.integers(0, 4096))]))
        if trial % 7 == 0:
            du = np.uint16(du)
        if trial % 11 == 0:
            dv = np.int64(dv)
        vth = int(rng.integers(0, 2 ** 17)) if rng.random() < 0.5 \
            else int(rng.integers(0, 50))
        bias_mant = rng.integers(-4096, 4096, n)
        bias_exp = rng.integers(-3 if trial % 5 == 0 else 0, 8, n)
        params = {"reset_interval": int(rng.integers(1, 5)),
                  "reset_offset": int(rng.integers(0, 5))} if reset else {}
        classes = (PyLifResetModelBitAcc, PyLifResetModelBitAccAccelerated) \
            if reset else (PyLifModelBitAcc, PyLifModelBitAccAccelerated)
        models = [_make_lif_model(c, n, du, dv, vth, bias_mant, bias_exp,
                                  params) for c in classes]
        for t in range(8):
            big = rng.random() < 0.3
            lim = 2 ** 23 if big else 3000
            a = rng.integers(-lim, lim, n).astype(np.int32)
            if t == 4 and trial % 3 == 0:       # bias Var set mid-run
                nb = rng.integers(-4096, 4096, n).astype(np.int16)
                for m in models:
                    m.bias_mant[:] = nb
                    m.on_var_update()
            for m in models:
                m.time_step = t + 1
                m.a_in.queue.append(a.copy())
                m.run_spk()
            for var in ("u", "v"):
                assert _same(getattr(models[0], var), getattr(models[1], var)), \
                    (trial, t, var)
        for a, b in zip(models[0].s_out.sent, models[1].s_out.sent):
            assert _same(a, b)


@pytest.mark.parametrize("dv", [0, 1, 1024, 2048, 3072, 3000, 4094, 4095])
@pytest.mark.parametrize("reset", [False, True])
def test_lean_lif_step_equals_stock_at_the_wrap_and_clip_edges(dv, reset):
    """du = 4095 (no current memory) takes the lean step; it must be stock's bits where
    stock wraps the current (a << 6 beyond +-2**23, and beyond int32) and clips v."""
    rng = np.random.default_rng(dv + 7 * reset)
    n = 64
    edge = np.array([0, 1, -1, 2 ** 17, 2 ** 17 + 1, -2 ** 17, -2 ** 17 - 1, 2 ** 23 - 1,
                     -2 ** 23, 2 ** 25, -2 ** 25, 2 ** 31 - 1, -2 ** 31, 131_071, -131_071,
                     70_000, -70_000], dtype=np.int64)
    params = {"reset_interval": 3, "reset_offset": 1} if reset else {}
    classes = (PyLifResetModelBitAcc, PyLifResetModelBitAccAccelerated) if reset \
        else (PyLifModelBitAcc, PyLifModelBitAccAccelerated)
    bias_mant = rng.integers(-4096, 4096, n) * (rng.random(n) < 0.5)
    bias_exp = rng.integers(0, 8, n)
    models = [_make_lif_model(c, n, 4095, dv, 100, bias_mant, bias_exp, params)
              for c in classes]
    v0 = rng.integers(-2 ** 23 + 1, 2 ** 23, n)              # start anywhere in range
    for m in models:
        m.v[:] = v0
    for t in range(12):
        scale = [2 ** 10, 2 ** 17, 2 ** 18, 2 ** 24][t % 4]
        a = rng.integers(-scale, scale, n)
        a[:len(edge)] = rng.permutation(edge) if t % 2 else 0
        a = a.astype(np.int32)
        for m in models:
            m.time_step = t + 1
            m.a_in.queue.append(a.copy())
            m.run_spk()
        for var in ("u", "v"):
            assert _same(getattr(models[0], var), getattr(models[1], var)), (t, var)
    for a, b in zip(models[0].s_out.sent, models[1].s_out.sent):
        assert _same(a, b)
    assert models[1]._lean is not None and models[1]._lean.ok     # the lean step ran


def test_lean_lif_plan_follows_var_updates():
    """A Var set through the runtime (new object + on_var_update) rebuilds the lean plan:
    du leaving 4095 falls back to the general path, coming back re-enters the lean one."""
    n = 8
    models = [_make_lif_model(c, n, 4095, 2048, 3, np.arange(n) - 4, np.zeros(n), {})
              for c in (PyLifModelBitAcc, PyLifModelBitAccAccelerated)]
    acc = models[1]
    for t, du in enumerate([4095, 4095, 100, 100, 4095, 4095]):
        for m in models:
            if m.du != du:
                m.du = du
                m.on_var_update()
            m.a_in.queue.append(np.full(n, 40 * (t + 1) - 90, np.int32))
            m.run_spk()
        assert _same(models[0].u, acc.u) and _same(models[0].v, acc.v), t
        assert (acc._lean is not None and acc._lean.ok) == (du == 4095), t


def test_binary_conv_path_equals_stock_and_respects_its_bound():
    """Binary spikes with R < 2**23 take the one-matmul path; R >= 2**23 must not (stock
    wraps to 24 bits there)."""
    rng = np.random.default_rng(3)
    for lim, groups in ((128, 1), (128, 2), (2 ** 20, 1)):
        w = rng.integers(-lim, lim, (4, 3, 3, 4 // groups))
        models = [_make_conv_model(c, w, (5, 6, 4), 1, 1, 1, groups, 0)
                  for c in (PyConvModelFixed, PyConvModelFixedAccelerated)]
        for _ in range(4):
            _step_all(models, (rng.random((5, 6, 4)) < 0.4).astype(np.int32))
        for a, b in zip(models[0].a_out.sent, models[1].a_out.sent):
            assert _same(a, b), (lim, groups)
        assert _same(models[0].a_buf, models[1].a_buf)
        plan = models[1]._plan
        assert plan.binary_exact == (plan.mm.bound < 2 ** 23), (lim, plan.mm.bound)
    assert plan.mm.bound >= 2 ** 23                 # the last case was the wrap case


def _stock_decay(x: np.ndarray, f: int, shift: int = 12) -> np.ndarray:
    d = np.int64(x) * f
    d = np.sign(d) * np.right_shift(np.abs(d), shift)
    return np.int32(d)


@pytest.mark.parametrize("factor", [0, 1, -1, 2, 2047, 2048, 4095, 4096, -4096,
                                    4097, -4097, 123_457, 2 ** 30])
def test_trunc_shift_decay_matches_stock_expression(factor):
    rng = np.random.default_rng(factor & 0xFFFF)
    edge = np.array([0, 1, -1, 4095, -4095, 4096, -4096, 2 ** 23 - 1, -2 ** 23,
                     2 ** 31 - 1, -2 ** 31, -2 ** 31 + 1], dtype=np.int32)
    x = np.concatenate([edge, rng.integers(-2 ** 31, 2 ** 31, 2000).astype(np.int32)])
    assert _same(_trunc_shift_decay(x, factor, 12), _stock_decay(x, factor))


# ============================================================================
# ExactIntMatmul
# ============================================================================
def test_exact_matmul_bound_and_path_choice():
    m = np.array([[3, -4], [-5, 6], [7, 0]])        # column |sums|: 15, 10
    mm = ExactIntMatmul(m)
    assert mm.bound == 15
    assert mm.choose(1) == PATH_FLOAT32
    assert mm.choose((2 ** 24) // 15) == PATH_FLOAT32
    assert mm.choose((2 ** 24) // 15 + 1) == PATH_FLOAT64
    assert mm.choose(2 ** 53 // 15 + 1) == PATH_INT64
    assert ExactIntMatmul(np.zeros((2, 2), np.int32)).choose(2 ** 23) == PATH_FLOAT32


def test_exact_matmul_int64_fallback_is_exact_where_float64_is_not():
    rng = np.random.default_rng(11)
    m = rng.integers(-2 ** 30, 2 ** 30, (64, 5))
    x = rng.integers(-2 ** 26, 2 ** 26, (3, 64))
    exact = (x.astype(object) @ m.astype(object))          # Python ints
    mm = ExactIntMatmul(m)
    path = mm.choose(int(np.abs(x).max()))
    assert path == PATH_INT64                              # bound > 2**53
    got = mm.matmul(x.astype(np.int64), path)
    assert got.dtype == np.int64 and (got.astype(object) == exact).all()
    # ...and the bound was needed: float64 BLAS gets this wrong.
    assert not (np.rint(x.astype(float) @ m.astype(float)).astype(object) == exact).all()
    # forcing the fallback on small numbers is exact too
    mm2 = ExactIntMatmul(m[:, :2] >> 24)
    mm2.float32_limit = mm2.float64_limit = 0
    xs = x >> 20
    assert mm2.choose(int(np.abs(xs).max())) == PATH_INT64
    assert np.array_equal(mm2.matmul(xs.astype(np.int64), PATH_INT64),
                          xs @ (m[:, :2] >> 24))


# ============================================================================
# Network level: stock vs accelerated in the Lava runtime
# ============================================================================
class _ForcedConvNoFloat(PyConvModelFixedAccelerated):
    """Never trusts the R*max|s| bound: tight check + float64 every step."""
    float32_limit = 0
    float64_limit = 0


class _ForcedConvReference(PyConvModelFixedAccelerated):
    """Fails every bound: the stock reference runs every step."""
    float32_limit = 0
    float64_limit = 0
    tight_limit = 0


def _run_network(build: ty.Callable[[], ty.Dict[str, ty.Any]], run_cfg,
                 steps: int, probes: ty.Sequence[ty.Tuple[str, str]],
                 var_sets: ty.Optional[ty.Dict[int, ty.Callable]] = None):
    """Run ``build()``'s network one step at a time; return the probed Vars
    per step, the sink contents and the selected ProcessModel classes."""
    procs = build()
    root = procs["src"]
    records: ty.Dict[str, ty.List[np.ndarray]] = {f"{p}.{v}": [] for p, v in probes}
    try:
        for t in range(steps):
            if var_sets and t in var_sets:
                var_sets[t](procs)
            root.run(condition=RunSteps(num_steps=1), run_cfg=run_cfg)
            for p, v in probes:
                records[f"{p}.{v}"].append(getattr(procs[p], v).get())
        records["sink.data"] = [procs["sink"].data.get()]
        classes = {name: proc.model_class for name, proc in procs.items()}
    finally:
        root.stop()
    return records, classes


def _as_int(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    assert np.all(np.isfinite(a)) and np.array_equal(a, np.round(a))
    return a.astype(np.int64)


def _compare_stock_vs_accelerated(build, steps, probes, extra=None,
                                  var_sets=None, expect=None):
    ref, ref_cls = _run_network(build, Loihi2SimCfg(**STOCK_CFG), steps,
                                probes, var_sets)
    got, got_cls = _run_network(build, accelerated_run_config(extra=extra),
                                steps, probes, var_sets)
    for key in ref:
        assert len(ref[key]) == len(got[key])
        for t, (a, b) in enumerate(zip(ref[key], got[key])):
            assert np.array_equal(_as_int(a), _as_int(b)), f"{key} differs at step {t}"
    for name, cls in (expect or {}).items():
        assert got_cls[name] is cls, (name, got_cls[name])
    return ref, ref_cls, got_cls


def _conv_net(weight, in_shape, steps, *, padding=0, stride=1, dilation=1,
              groups=1, graded=False, seed=0):
    def build():
        rng = np.random.default_rng(seed + 1)     # same data on every build
        if graded:
            data = rng.integers(-3000, 3000, in_shape + (steps,))
        else:
            data = rng.random(in_shape + (steps,)) < 0.35
        src = SourceBuffer(data=data.astype(np.int32))
        conv = Conv(weight=weight, input_shape=in_shape, padding=padding,
                    stride=stride, dilation=dilation, groups=groups,
                    num_message_bits=24 if graded else 0)
        lif = LIF(shape=conv.output_shape, du=1024, dv=600, vth=30,
                  bias_mant=5, bias_exp=1)
        sink = SinkBuffer(shape=conv.output_shape, buffer=steps)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        lif.s_out.connect(sink.a_in)
        return {"src": src, "conv": conv, "lif": lif, "sink": sink}

    return build


CONV_PROBES = [("conv", "a_buf"), ("lif", "u"), ("lif", "v")]

CONV_CASES = [
    # id, weight shape (out, kx, ky, in), input (X, Y, C), kwargs
    ("k3_s1_p1_binary", (4, 3, 3, 3), (5, 4, 3), dict(padding=1)),
    ("k1_s1_p0_binary_identity", (5, 1, 1, 6), (4, 6, 6), dict()),
    ("k3_s2_p0_binary", (3, 3, 3, 2), (7, 5, 2), dict(stride=2)),
    ("k3_s2_p1_groups2_binary", (6, 3, 3, 2), (6, 5, 4),
     dict(stride=2, padding=1, groups=2)),
    ("k1_s2_p1_graded", (2, 1, 1, 3), (5, 6, 3),
     dict(stride=2, padding=1, graded=True)),
    ("k3_dil2_stride_xy_graded", (3, 3, 3, 2), (8, 6, 2),
     dict(stride=(1, 2), padding=(2, 1), dilation=2, graded=True)),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_network_bit_exact(case):
    _, wshape, in_shape, kw = case
    seed = sum(map(ord, case[0]))
    w = np.random.default_rng(seed).integers(-120, 120, wshape)
    steps = 10
    build = _conv_net(w, in_shape, steps, seed=seed, **kw)
    ref, ref_cls, _ = _compare_stock_vs_accelerated(
        build, steps, CONV_PROBES,
        expect={"conv": PyConvModelFixedAccelerated,
                "lif": PyLifModelBitAccAccelerated})
    assert ref_cls["conv"] is PyConvModelFixed
    assert ref_cls["lif"] is PyLifModelBitAcc
    assert np.any(_as_int(ref["sink.data"][0]) != 0), "test net never spiked"


@pytest.mark.parametrize("forced", [_ForcedConvNoFloat, _ForcedConvReference],
                         ids=["tight_check_float64", "stock_reference"])
def test_conv_network_forced_fallbacks(forced):
    w = np.random.default_rng(17).integers(-120, 120, (4, 3, 3, 3))
    steps = 8
    build = _conv_net(w, (6, 5, 3), steps, padding=1, graded=True, seed=17)
    _compare_stock_vs_accelerated(build, steps, CONV_PROBES,
                                  extra={Conv: forced},
                                  expect={"conv": forced})


def test_conv_network_weight_set_mid_run():
    rng = np.random.default_rng(23)
    w = rng.integers(-120, 120, (3, 3, 3, 2))
    w2 = rng.integers(-120, 120, (3, 3, 3, 2))
    steps = 8
    build = _conv_net(w, (5, 5, 2), steps, padding=1, seed=23)
    _compare_stock_vs_accelerated(
        build, steps, CONV_PROBES,
        var_sets={4: lambda procs: procs["conv"].weight.set(w2)})


def test_chained_conv_lif_dense_lifreset_network():
    """Accelerated Conv/LIF/LIFReset in a chain with a Dense, which keeps Lava's stock
    model: every Var equals the all-stock run."""
    steps = 10
    rng = np.random.default_rng(77)
    wc = rng.integers(-100, 100, (4, 3, 3, 2))
    in_shape = (4, 5, 2)

    def build():
        r = np.random.default_rng(78)
        src = SourceBuffer(data=(r.random(in_shape + (steps,)) < 0.4).astype(np.int32))
        conv = Conv(weight=wc, input_shape=in_shape, padding=1)
        lif1 = LIF(shape=conv.output_shape, du=4095, dv=2048, vth=8)
        n_hidden = int(np.prod(conv.output_shape))
        wd = np.random.default_rng(79).integers(-80, 80, (6, n_hidden))
        dense = Dense(weights=wd, weight_exp=-1)
        lif2 = LIFReset(shape=(6,), du=4095, dv=1024, vth=4,
                        reset_interval=5, reset_offset=2)
        sink = SinkBuffer(shape=(6,), buffer=steps)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(lif1.a_in)
        lif1.s_out.flatten().connect(dense.s_in)
        dense.a_out.connect(lif2.a_in)
        lif2.s_out.connect(sink.a_in)
        return {"src": src, "conv": conv, "lif1": lif1, "dense": dense,
                "lif2": lif2, "sink": sink}

    ref, _, got_cls = _compare_stock_vs_accelerated(
        build, steps, [("conv", "a_buf"), ("lif1", "v"), ("dense", "a_buff"),
                       ("lif2", "u"), ("lif2", "v")])
    assert got_cls["conv"] is ACCELERATED_MODELS[Conv]
    assert got_cls["lif1"] is ACCELERATED_MODELS[LIF]
    assert got_cls["dense"] is PyDenseModelBitAcc            # not accelerated: stock
    assert got_cls["lif2"] is ACCELERATED_MODELS[LIFReset]
    assert np.any(_as_int(ref["lif1.v"][-1]) != 0)


# ============================================================================
# Run-config API
# ============================================================================
def test_accelerated_run_config_mapping():
    cfg = accelerated_run_config()
    assert isinstance(cfg, Loihi2SimCfg)
    assert cfg.select_tag == "fixed_pt"
    assert cfg.exception_proc_model_map == ACCELERATED_MODELS
    assert set(ACCELERATED_MODELS) == {Conv, LIF, LIFReset}   # never Dense (never lowered to)
    # float simulation keeps stock float models
    assert accelerated_run_config("floating_pt").exception_proc_model_map == {}
    # bit_accurate_loihi: stock has no such Conv model, nor do we
    assert Conv not in accelerated_run_config(
        "bit_accurate_loihi").exception_proc_model_map
    # extra wins
    cfg = accelerated_run_config(extra={Conv: _ForcedConvReference})
    assert cfg.exception_proc_model_map[Conv] is _ForcedConvReference
    assert Dense not in cfg.exception_proc_model_map
    # same ports/Vars as stock (the builder looks them up by name)
    for stock, acc in ((PyConvModelFixed, PyConvModelFixedAccelerated),
                       (PyLifModelBitAcc, PyLifModelBitAccAccelerated),
                       (PyLifResetModelBitAcc, PyLifResetModelBitAccAccelerated)):
        for name in ("s_in", "a_out", "a_buf", "weight", "a_in", "s_out", "u", "v", "du", "dv", "vth", "bias_mant",
                     "bias_exp", "num_message_bits", "weight_exp",
                     "kernel_size", "stride", "padding", "dilation", "groups",
                     "num_weight_bits"):
            s_t, a_t = getattr(stock, name, None), getattr(acc, name, None)
            if s_t is None:
                continue
            assert (a_t.cls, a_t.d_type, a_t.precision) == \
                (s_t.cls, s_t.d_type, s_t.precision), (acc, name)
        assert "fixed_pt" in acc.tags
