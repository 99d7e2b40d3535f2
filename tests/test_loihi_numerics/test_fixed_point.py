"""Tests for loihi_numerics/fixed_point.py: bit-exactness against Lava 0.10.

Three layers:
1. hand-computed cases;
2. hypothesis properties: against naive int loops, and against the stock Lava
   ProcessModel classes driven in-process (their ``run_spk`` called directly
   with stand-in ports that copy data the way Lava's int32 channels do);
3. a few real Lava runs (``Loihi2SimCfg(select_tag="fixed_pt")``) of small
   random networks, compared step by step, hop delays included.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from loihi_numerics import fixed_point as fp
from loihi_numerics.fixed_point import LifParams, conv_accumulate, lif_step, wrap_signed

from support.lava_replicas import dense_accumulate, dense_weights, lif_reset_due

I32 = np.iinfo(np.int32)
HYP = settings(max_examples=40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])


def lif1(u, v, a, **kw):
    """lif_step on one neuron (batch 1); returns python ints."""
    p = LifParams(**{"du": 0, "dv": 0, "vth": 131071, **kw})
    un, vn, s = lif_step(np.array([[u]]), np.array([[v]]), np.array([[a]]), p)
    return int(un[0, 0]), int(vn[0, 0]), bool(s[0, 0])


# ---------------------------------------------------------------------------
# 1. hand-computed cases
# ---------------------------------------------------------------------------
class TestLifHand:
    def test_voltage_decay_truncates_toward_zero(self):
        # dv=1: factor 4095. 5000*4095 = 20475000; >>12 = 4998 (.78)
        assert lif1(0, 5000, 0, dv=1)[1] == 4998
        # negative: sign-magnitude -> -4998, not floor (-4999)
        assert lif1(0, -5000, 0, dv=1)[1] == -4998
        # dv=4095: factor 1 -> |v| < 4096 decays to exactly 0
        assert lif1(0, -4095, 0, dv=4095)[1] == 0
        assert lif1(0, 4096, 0, dv=4095)[1] == 1

    def test_current_decay_uses_du_plus_one(self):
        # du=0: factor 4096 - 1 = 4095 (the ds_offset of 1)
        assert lif1(4096, 0, 0, du=0)[0] == 4095
        assert lif1(-4096, 0, 0, du=0)[0] == -4095
        assert lif1(-100, 0, 0, du=2048)[0] == -(100 * 2047 >> 12)

    def test_du_4095_means_u_is_input_shifted(self):
        for u0 in (0, 12345, -777777):
            assert lif1(u0, 0, 7, du=4095)[0] == 7 << 6
            assert lif1(u0, 0, -3, du=4095)[0] == -3 << 6

    def test_threshold_strict_and_shifted(self):
        # u = 10 << 6 = 640 == vth << 6: no spike, v stays 640
        assert lif1(0, 0, 10, du=4095, vth=10) == (640, 640, False)
        # one more (bias 1) -> 641 > 640 -> spike, v reset to 0
        assert lif1(0, 0, 10, du=4095, vth=10, bias_mant=1) == (640, 0, True)
        # vth = 0: any positive v spikes
        assert lif1(0, 0, 0, vth=0, bias_mant=1) == (0, 0, True)
        assert lif1(0, 0, 0, vth=0, bias_mant=0) == (0, 0, False)

    def test_bias_mantissa_exponent(self):
        assert lif1(0, 0, 0, bias_mant=-3, bias_exp=5)[1] == -96
        assert lif1(0, 0, 0, bias_mant=4095, bias_exp=7)[1] == 4095 * 128
        assert lif1(0, 0, 0, bias_mant=-4096, bias_exp=7)[1] == -4096 * 128

    def test_current_24bit_wrap_quirks(self):
        # a_in << 6 = 2**23 + 64 > 2**23 -> minus 2**24
        assert lif1(0, 0, (1 << 17) + 1, du=4095)[0] == -(1 << 23) + 64
        # exactly 2**23 is NOT wrapped (Lava tests `> 2**23`)
        assert lif1(0, 0, 1 << 17, du=4095)[0] == 1 << 23
        # -2**23 IS wrapped (`<= -2**23`) -> +2**23
        assert lif1(0, 0, -(1 << 17), du=4095)[0] == 1 << 23
        assert lif1(0, 0, -(1 << 17) - 1, du=4095)[0] == (1 << 23) - 64
        # one correction only: 2**25 -> 2**25 - 2**24 = 2**24 (out of range)
        assert lif1(0, 0, 1 << 19, du=4095)[0] == 1 << 24
        # a_in << 6 overflows int32 first: 2**26 << 6 = 2**32 -> 0
        assert lif1(0, 0, 1 << 26, du=4095)[0] == 0

    def test_voltage_24bit_saturates(self):
        vmax = (1 << 23) - 1
        # dv=0 keeps v; negative input drives it below -vmax -> clipped
        assert lif1(0, -vmax, -1, du=4095)[1] == -vmax
        assert lif1(0, -vmax + 10, -1000, du=4095)[1] == -vmax
        # positive saturation at +vmax (above vth << 6 = 8388544 -> spikes)
        assert lif1(0, vmax, 5, du=4095) == (320, 0, True)
        # with the bias exceeding the range too
        assert lif1(0, vmax - 5, 0, bias_mant=4095, bias_exp=7,
                    vth=131071) == (0, 0, True)

    def test_reset_mask_zeroes_before_integrating(self):
        p = LifParams(du=0, dv=0, vth=1000, bias_mant=1)
        u = np.array([[1000, 1000], [1000, 1000]])
        v = np.array([[5000, 5000], [5000, 5000]])
        a = np.full((2, 2), 2)
        # per-sample mask: sample 0 reset, sample 1 not
        un, vn, s = lif_step(u, v, a, p, reset_mask=np.array([True, False]))
        assert un[0].tolist() == [128, 128] and vn[0].tolist() == [129, 129]
        assert un[1].tolist() == [999 + 128] * 2
        assert vn[1].tolist() == [5000 + 999 + 128 + 1] * 2
        # full-shape mask and scalar mask
        un2, vn2, _ = lif_step(u, v, a, p, reset_mask=np.array(
            [[True, False], [False, False]]))
        assert (un2[0, 0], un2[0, 1]) == (128, 1127)
        un3, _, _ = lif_step(u, v, a, p, reset_mask=True)
        assert (un3 == 128).all()
        with pytest.raises(ValueError):
            lif_step(u, v, a, p, reset_mask=np.ones(3, bool))

    def test_reset_due(self):
        assert lif_reset_due(1, 1, 0)
        assert [t for t in range(1, 13) if lif_reset_due(t, 4, 0)] == [4, 8, 12]
        assert [t for t in range(1, 13) if lif_reset_due(t, 4, 5)] == [1, 5, 9]

    def test_batch_and_broadcast(self):
        p = LifParams(du=4095, dv=0, vth=[1, 2, 3], bias_mant=[[0], [1]],
                      bias_exp=0)
        a = np.ones((5, 2, 3), dtype=np.int64)
        u, v, s = lif_step(np.zeros_like(a), np.zeros_like(a), a, p)
        assert u.shape == v.shape == s.shape == (5, 2, 3)
        assert u.dtype == np.int64 and s.dtype == bool
        assert (v[:, 0] == 64).all() and (v[:, 1, 1:] == 65).all()
        assert (v[:, 1, 0] == 0).all() and s[:, 1, 0].all()


@pytest.mark.parametrize("name,value,legal", [
    ("du", 4096, "[0, 4095]"), ("du", -1, "[0, 4095]"),
    ("dv", 5000, "[0, 4095]"), ("vth", 1 << 17, "[0, 131071]"),
    ("vth", -1, "[0, 131071]"), ("bias_mant", 4096, "[-4096, 4095]"),
    ("bias_mant", [0, -4097], "[-4096, 4095]"), ("bias_exp", 8, "[0, 7]"),
    ("bias_exp", -1, "[0, 7]"),
])
def test_lif_params_validation(name, value, legal):
    kw = {"du": 0, "dv": 0, "vth": 0, name: value}
    with pytest.raises(ValueError) as e:
        LifParams(**kw)
    assert name in str(e.value) and legal in str(e.value)


def test_lif_params_reject_non_integers():
    with pytest.raises(ValueError, match="vth"):
        LifParams(du=0, dv=0, vth=1.5)
    with pytest.raises(TypeError):
        LifParams(du="a", dv=0, vth=1)
    p = LifParams(du=1.0, dv=np.int16(3), vth=np.uint8(4))
    assert p.du.dtype == np.int64 and int(p.effective_vth) == 256


def test_wrap_and_clip():
    assert wrap_signed([1 << 23, -(1 << 23) - 1, 5], 24).tolist() == [
        -(1 << 23), (1 << 23) - 1, 5]
    assert wrap_signed(1 << 31, 32) == -(1 << 31)
    assert fp.clip_signed([1 << 30, -(1 << 30), 7], 24).tolist() == [
        (1 << 23) - 1, -(1 << 23) + 1, 7]
    assert fp.wrap_lif_current([1 << 23, -(1 << 23), (1 << 23) + 1]).tolist() \
        == [1 << 23, 1 << 23, -(1 << 23) + 1]


@pytest.mark.lava
def test_dense_weights_hand():
    from lava.utils.weightutils import SignMode
    # mixed: clip to [-256, 255], drop 1 LSB (floor)
    assert dense_weights([[3, -3, 300, -300, 1]]).tolist() == [
        [2, -4, 254, -256, 0]]
    # excitatory: clip to [0, 255]; 6 bits drop 2 LSBs
    assert dense_weights([[3, 300, 0]]).tolist() == [[3, 255, 0]]
    assert dense_weights([[3, 300, 0]], num_weight_bits=6).tolist() == [
        [0, 252, 0]]
    # inhibitory: mirror of excitatory
    assert dense_weights([[-3, -300]]).tolist() == [[-3, -255]]
    assert dense_weights([[-5, -300]], num_weight_bits=7).tolist() == [
        [-4, -254]]
    # explicit sign mode overrides auto-detection
    assert dense_weights([[3, 5]], sign_mode=SignMode.MIXED).tolist() == [
        [2, 4]]
    with pytest.raises(ValueError, match="num_weight_bits"):
        dense_weights([[1]], num_weight_bits=9)
    with pytest.raises(ValueError, match="weights"):
        dense_weights([[1.5]])


def test_dense_accumulate_hand():
    w = np.array([[1, 2, 4], [-1, -2, -4]])
    s = np.array([[5, 0, -2]])
    # binary: any non-zero payload counts as one spike
    assert dense_accumulate(w, s).tolist() == [[5, -5]]
    # the SUM is shifted, arithmetic (floor) for negatives
    assert dense_accumulate(w, s, weight_exp=-1).tolist() == [[2, -3]]
    assert dense_accumulate(w, s, weight_exp=3).tolist() == [[40, -40]]
    # graded
    assert dense_accumulate(w, s, num_message_bits=8).tolist() == [[-3, 3]]
    # int32 wrap of the graded dot product
    big = dense_accumulate([[256, 256]], [[1 << 23, 1 << 22]],
                           num_message_bits=24)
    assert big.tolist() == [[-(1 << 31) + (1 << 30)]]


def test_conv_hand():
    x = np.arange(9).reshape(1, 1, 3, 3)          # graded values 0..8
    w = np.array([[[[1, 2], [3, 4]]]])            # correlation, not conv
    out = conv_accumulate(x, w, num_message_bits=8)
    # top-left: 0*1 + 1*2 + 3*3 + 4*4 = 27
    assert out.tolist() == [[[[27, 37], [57, 67]]]]
    # binary: x != 0
    assert conv_accumulate(x, w).tolist() == [[[[9, 10], [10, 10]]]]
    # 24-bit wrap and the float->int32 cast of out-of-range sums
    big = conv_accumulate(np.full((1, 1, 1, 1), 1 << 22), np.full(
        (1, 1, 1, 1), 3), num_message_bits=24)
    assert big.item() == wrap_signed(3 << 22, 24)  # = -(1 << 22)
    assert conv_accumulate(np.full((1, 1, 1, 1), 1 << 23), np.full(
        (1, 1, 1, 1), 256), num_message_bits=24).item() == 0  # INT32_MIN wraps to 0
    with pytest.raises(ValueError, match="2\\*\\*63"):
        conv_accumulate(np.full((1, 2, 1, 1), 1 << 31),
                        np.full((1, 2, 1, 1), 1 << 31), num_message_bits=24)


# ---------------------------------------------------------------------------
# 2a. properties against naive integer loops
# ---------------------------------------------------------------------------
def naive_conv(x, w, stride, padding, dilation, groups):
    B, C, H, W = x.shape
    Co, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((B, Co, Ho, Wo), dtype=object)
    for b in range(B):
        for o in range(Co):
            grp = o // (Co // groups)
            for i in range(Ho):
                for j in range(Wo):
                    acc = 0
                    for c in range(Cg):
                        for p in range(kh):
                            for q in range(kw):
                                r = i * sh + p * dh - ph
                                s = j * sw + q * dw - pw
                                if 0 <= r < H and 0 <= s < W:
                                    acc += int(x[b, grp * Cg + c, r, s]) * \
                                        int(w[o, c, p, q])
                    out[b, o, i, j] = acc
    return out


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 2]))
    cg = draw(st.integers(1, 2))
    co = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H = draw(st.integers(dil[0] * (kh - 1) + 1, 6))
    W = draw(st.integers(dil[1] * (kw - 1) + 1, 6))
    B = draw(st.integers(1, 2))
    graded = draw(st.booleans())
    # magnitudes exercising the float32 / float64 / int64 matmul paths
    xmax, wmax = draw(st.sampled_from([(3, 256), (1 << 20, 256),
                                       (1 << 30, 1 << 27)]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    x = rng.integers(-xmax, xmax, (B, cg * groups, H, W))
    x[rng.random(x.shape) < 0.3] = 0
    w = rng.integers(-wmax, wmax, (co, cg, kh, kw))
    return x, w, stride, pad, dil, groups, graded


@HYP
@given(conv_case())
def test_conv_matches_naive(case):
    x, w, stride, pad, dil, groups, graded = case
    out = conv_accumulate(x, w, stride, pad, dil, groups,
                          num_message_bits=8 if graded else 0)
    s = x if graded else (x != 0).astype(np.int64)
    ref = naive_conv(s, w, stride, pad, dil, groups)
    ref = np.where((ref < I32.min) | (ref > I32.max), I32.min, ref)
    ref = ((ref + (1 << 23)) % (1 << 24)) - (1 << 23)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ref.astype(np.int64))


@HYP
@given(st.integers(1, 4), st.integers(1, 7), st.integers(1, 5),
       st.integers(-6, 6), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_dense_matches_naive(B, n_in, n_out, wexp, graded, big, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-256, 256, (n_out, n_in))
    smax = (1 << 31) if big else 4
    s = rng.integers(-smax, smax, (B, n_in))
    out = dense_accumulate(w, s, weight_exp=wexp,
                           num_message_bits=16 if graded else 0)
    for b in range(B):
        for o in range(n_out):
            acc = sum(int(w[o, i]) * (int(s[b, i]) if graded else
                                      int(s[b, i] != 0)) for i in range(n_in))
            acc = ((acc + 2**31) % 2**32) - 2**31
            acc = acc << wexp if wexp > 0 else acc >> -wexp
            acc = ((acc + 2**31) % 2**32) - 2**31
            assert out[b, o] == acc


# ---------------------------------------------------------------------------
# 2b. properties against the stock Lava models, run_spk called in-process
# ---------------------------------------------------------------------------
class _Out:
    """OutPort + int32 channel: `buf[:] = data` as pypychannel.send does."""

    def __init__(self, shape, dtype=np.int32):
        self.shape, self.dtype, self.sent = tuple(shape), dtype, []

    def send(self, data):
        buf = np.zeros(self.shape, self.dtype)
        buf[:] = data
        self.sent.append(buf)


class _In:
    """InPort: `zeros(own dtype) + channel data` as PyInPortVectorDense.recv."""

    def __init__(self, shape, own_dtype, chan_dtype=np.int32):
        self.shape, self.own, self.chan, self.next = shape, own_dtype, \
            chan_dtype, None

    def recv(self):
        return np.zeros(self.shape, self.own) + np.asarray(self.next).astype(
            self.chan)


def _lava_lif(model_cls, params, u0, v0, inputs, proc_params=None):
    m = model_cls(proc_params or {})
    shape = u0.shape
    m.u = np.array(u0, np.int32)
    m.v = np.array(v0, np.int32)
    m.du, m.dv, m.vth = (int(params.du), int(params.dv), int(params.vth))
    m.bias_mant = np.zeros(shape, np.int16) + params.bias_mant.astype(np.int16)
    m.bias_exp = np.zeros(shape, np.int16) + params.bias_exp.astype(np.int16)
    m.a_in, m.s_out = _In(shape, np.int16), _Out(shape)
    us, vs = [], []
    for a in inputs:
        m.time_step += 1
        m.a_in.next = a
        m.run_spk()
        us.append(m.u.astype(np.int64).copy())
        vs.append(m.v.astype(np.int64).copy())
    return np.array(us), np.array(vs), np.array(m.s_out.sent, np.int64)


@st.composite
def lif_case(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    n, T = 6, 6
    corner = st.sampled_from([0, 1, 4094, 4095])
    du = draw(st.one_of(corner, st.integers(0, 4095)))
    dv = draw(st.one_of(corner, st.integers(0, 4095)))
    vth = draw(st.one_of(st.sampled_from([0, 1, 131071]),
                         st.integers(0, 131071)))
    p = LifParams(du=du, dv=dv, vth=vth,
                  bias_mant=rng.integers(-4096, 4096, n),
                  bias_exp=rng.integers(0, 8, n))
    u0 = rng.integers(-(1 << 23) + 1, (1 << 23) + 1, n)
    v0 = rng.integers(-(1 << 23) + 1, 1 << 23, n)
    scale = draw(st.sampled_from([1 << 8, 1 << 17, 1 << 20, 1 << 31]))
    a = rng.integers(-scale, scale, (T, n))
    a[:, 0] = [1 << 17, -(1 << 17), (1 << 17) + 1, 1 << 19, 1 << 26, 0][:T]
    return p, u0, v0, a


def _run_ours(p, u0, v0, a, reset_steps=None):
    u, v = u0[None], v0[None]
    us, vs, ss = [], [], []
    for t in range(a.shape[0]):
        mask = None if reset_steps is None else reset_steps(t + 1)
        u, v, s = lif_step(u, v, a[t][None], p, reset_mask=mask)
        us.append(u[0]), vs.append(v[0]), ss.append(s[0])
    return np.array(us), np.array(vs), np.array(ss, np.int64)


@pytest.mark.lava
@HYP
@given(lif_case())
def test_lif_matches_lava_model(case):
    from lava.proc.lif.models import PyLifModelBitAcc
    p, u0, v0, a = case
    ref = _lava_lif(PyLifModelBitAcc, p, u0, v0, a)
    ours = _run_ours(p, u0, v0, a)
    for r, o in zip(ref, ours):
        np.testing.assert_array_equal(o, r)


@pytest.mark.lava
def test_lif_corner_cases_match_lava_model():
    """The hand-computed 24-bit quirks, checked against Lava's own code."""
    from lava.proc.lif.models import PyLifModelBitAcc
    vmax = (1 << 23) - 1
    a = np.array([[1 << 17, -(1 << 17), (1 << 17) + 1, -(1 << 17) - 1,
                   1 << 19, 1 << 26, -1000, 5, -(1 << 25)]] * 3)
    n = a.shape[1]
    u0 = np.zeros(n, np.int64)
    v0 = np.array([0, 0, 0, 0, 0, 0, -vmax + 10, vmax, -vmax])
    for du, dv in ((4095, 0), (0, 0), (17, 4095)):
        p = LifParams(du=du, dv=dv, vth=131071)
        ref = _lava_lif(PyLifModelBitAcc, p, u0, v0, a)
        ours = _run_ours(p, u0, v0, a)
        for r, o in zip(ref, ours):
            np.testing.assert_array_equal(o, r)
        if du == 4095:   # u = wrap(a_in << 6) with Lava's one-shot wrap
            assert ref[0][0].tolist()[:6] == [
                1 << 23, 1 << 23, -(1 << 23) + 64, (1 << 23) - 64, 1 << 24, 0]


@pytest.mark.lava
@settings(max_examples=15, deadline=None)
@given(lif_case(), st.integers(1, 4), st.integers(0, 6))
def test_lif_reset_matches_lava_model(case, interval, offset):
    from lava.proc.lif.models import PyLifResetModelBitAcc
    p, u0, v0, a = case
    ref = _lava_lif(PyLifResetModelBitAcc, p, u0, v0, a,
                    {"reset_interval": interval, "reset_offset": offset})
    ours = _run_ours(p, u0, v0, a, lambda t: lif_reset_due(
        t, interval, offset))
    for r, o in zip(ref, ours):
        np.testing.assert_array_equal(o, r)


@pytest.mark.lava
@HYP
@given(st.integers(1, 6), st.integers(1, 5), st.integers(-5, 5),
       st.integers(1, 8), st.sampled_from([0, 8, 24]),
       st.sampled_from([4, 300, 1 << 12, 1 << 24]), st.sampled_from(["mixed", "pos",
                                                           "neg"]),
       st.integers(0, 2**31))
def test_dense_matches_lava_model(n_in, n_out, wexp, nwb, nmb, smax, sign,
                                  seed):
    from lava.proc.dense.models import PyDenseModelBitAcc
    rng = np.random.default_rng(seed)
    w = rng.integers(-300, 301, (n_out, n_in))
    w = {"mixed": w, "pos": np.abs(w), "neg": -np.abs(w)}[sign]
    T = 3
    s = rng.integers(-smax, smax, (T, n_in)) * (rng.random((T, n_in)) < 0.6)
    m = PyDenseModelBitAcc({"weight_exp": wexp, "num_weight_bits": nwb})
    m.weights = w.astype(np.int32)
    m.num_message_bits = np.array([nmb])
    m.a_buff = np.zeros(n_out, np.int32)
    m.s_in, m.a_out = _In((n_in,), bool), _Out((n_out,))
    for t in range(T + 1):
        m.s_in.next = s[min(t, T - 1)]
        m.run_spk()
    w_eff = dense_weights(w, num_weight_bits=nwb)
    np.testing.assert_array_equal(w_eff, m.weights)
    ours = dense_accumulate(w_eff, s, weight_exp=wexp, num_message_bits=nmb)
    sent = np.array(m.a_out.sent, np.int64)
    assert (sent[0] == 0).all()                    # one-step delay
    np.testing.assert_array_equal(ours, sent[1:])


def _lava_conv_model(w_lava, in_whc, stride, pad, dil, groups, nmb):
    from lava.proc.conv.models import PyConvModelFixed
    from lava.proc.conv import utils
    k = w_lava.shape[1:3]
    sx, px, dx = (fp.to_lava_xy(stride), fp.to_lava_xy(pad),
                  fp.to_lava_xy(dil))
    out_shape = utils.output_shape(in_whc, w_lava.shape[0], k, sx, px, dx)
    m = PyConvModelFixed({})
    m.weight = w_lava.astype(np.int32)
    m.kernel_size = np.array(k, np.int8)
    m.stride, m.padding, m.dilation = (np.array(sx, np.int8),
                                       np.array(px, np.int8),
                                       np.array(dx, np.int8))
    m.groups = np.array([groups], np.int8)
    m.num_message_bits = np.array([nmb], np.int8)
    m.a_buf = np.zeros(out_shape, np.int32)
    m.s_in, m.a_out = _In(in_whc, np.int32), _Out(out_shape)
    return m


@pytest.mark.lava
@settings(max_examples=25, deadline=None)
@given(conv_case())
def test_conv_matches_lava_model(case):
    x, w, stride, pad, dil, groups, graded = case
    x = np.clip(x, I32.min, I32.max)
    w = np.clip(w, -(1 << 18), 1 << 18)   # float64 inside Lava stays exact
    nmb = 8 if graded else 0
    ours = conv_accumulate(x, w, stride, pad, dil, groups,
                           num_message_bits=nmb)
    m = _lava_conv_model(fp.to_lava_conv_weight(w),
                         fp.to_lava_layout(x[0]).shape, stride, pad, dil,
                         groups, nmb)
    with np.errstate(invalid="ignore"):
        for b in range(x.shape[0] + 1):
            m.s_in.next = fp.to_lava_layout(x[min(b, x.shape[0] - 1)])
            m.run_spk()
    sent = m.a_out.sent
    assert (sent[0] == 0).all()
    for b in range(x.shape[0]):
        np.testing.assert_array_equal(ours[b], fp.from_lava_layout(sent[b + 1]))


# ---------------------------------------------------------------------------
# 3. real Lava runs (stock models, Loihi2SimCfg fixed_pt), hop delays included
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _run_lava(anchor, steps):
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.magma.core.run_conditions import RunSteps
    try:
        anchor.run(condition=RunSteps(num_steps=steps),
                   run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        yield
    finally:
        anchor.stop()


def _lif_kwargs(p, u0, v0):
    return dict(du=int(p.du), dv=int(p.dv), vth=int(p.vth),
                bias_mant=p.bias_mant, bias_exp=p.bias_exp, u=u0, v=v0)


def _delayed(acc_t):
    """What a Dense/Conv sends per step: zeros, then acc of step t-1."""
    return np.concatenate([np.zeros_like(acc_t[:1]), acc_t[:-1]])


def _random_lif(rng, shape, big=False):
    p = LifParams(du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                  vth=int(rng.integers(0, 200 if not big else 131072)),
                  bias_mant=rng.integers(-60, 60, shape),
                  bias_exp=rng.integers(0, 4, shape))
    u0 = rng.integers(-5000, 5000, shape)
    v0 = rng.integers(-5000, 5000, shape)
    return p, u0, v0


def _check_lif_trace(p, u0, v0, a_seq, mon, name, spikes=None, reset=None):
    """Step our LIF over a_seq [T, *shape] and compare with Monitor data."""
    u, v = u0[None], v0[None]
    for t in range(a_seq.shape[0]):
        mask = None if reset is None else lif_reset_due(t + 1, *reset)
        u, v, s = lif_step(u, v, a_seq[t][None], p, reset_mask=mask)
        np.testing.assert_array_equal(u[0], mon[name]["u"][t], f"u @ t={t}")
        np.testing.assert_array_equal(v[0], mon[name]["v"][t], f"v @ t={t}")
        if spikes is not None:
            np.testing.assert_array_equal(s[0], spikes[t], f"s @ t={t}")


class _Probes:
    """One Monitor per probe (PyMonitorModel only implements ref_port_0 /
    in_port_0, so a second probe on one Monitor fails to compile)."""

    def __init__(self, T, *targets):
        from lava.proc.monitor.process import Monitor
        self.mons = []
        for tgt in targets:
            m = Monitor()
            m.probe(tgt, T)
            self.mons.append(m)

    def get(self):
        out = {}
        for m in self.mons:
            for k, d in m.get_data().items():
                for n, a in d.items():
                    out.setdefault(k, {})[n] = np.asarray(a).astype(np.int64)
        return out


@pytest.mark.lava
def test_lava_run_dense_binary_lif_and_lifreset():
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF, LIFReset
    rng = np.random.default_rng(1)
    T, n_in, n = 16, 20, 7
    x = (rng.random((T, n_in)) < 0.4).astype(np.int64)
    w = rng.integers(-300, 301, (n, n_in))
    wexp, nwb = -1, 7
    p, u0, v0 = _random_lif(rng, (n,))
    p2, u2, v2 = _random_lif(rng, (n,))
    src = Source(data=x.T.copy())
    dense = Dense(weights=w, weight_exp=wexp, num_weight_bits=nwb)
    lif = LIF(shape=(n,), name="lif", **_lif_kwargs(p, u0, v0))
    lifr = LIFReset(shape=(n,), name="lifr", reset_interval=3, reset_offset=2,
                    **_lif_kwargs(p2, u2, v2))
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    dense.a_out.connect(lifr.a_in)
    mon = _Probes(T, lif.u, lif.v, lifr.u, lifr.v, lif.s_out)
    with _run_lava(lif, T):
        data = mon.get()
        w_lava = dense.weights.get()
    w_eff = dense_weights(w, num_weight_bits=nwb)
    np.testing.assert_array_equal(w_eff, w_lava)
    a = _delayed(dense_accumulate(w_eff, x, weight_exp=wexp))
    _check_lif_trace(p, u0, v0, a, data, "lif", spikes=data["lif"]["s_out"])
    _check_lif_trace(p2, u2, v2, a, data, "lifr", reset=(3, 2))
    assert data["lif"]["s_out"].sum() > 0


@pytest.mark.lava
def test_lava_run_dense_graded_overflow():
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF
    rng = np.random.default_rng(2)
    T, n_in, n = 14, 9, 6
    x = rng.integers(-3000, 3000, (T, n_in)) * (rng.random((T, n_in)) < 0.7)
    w = np.abs(rng.integers(0, 256, (n, n_in)))          # excitatory
    w[:, ::2] *= -1                                       # -> mixed
    wexp = 2
    # big drive: u wraps past 2**23 and v saturates at -(2**23 - 1)
    p, u0, v0 = _random_lif(rng, (n,), big=True)
    p = LifParams(du=int(rng.integers(0, 200)), dv=int(p.dv), vth=int(p.vth),
                  bias_mant=p.bias_mant, bias_exp=p.bias_exp)
    src = Source(data=x.T.copy())
    dense = Dense(weights=w, weight_exp=wexp, num_message_bits=16)
    lif = LIF(shape=(n,), name="lif", **_lif_kwargs(p, u0, v0))
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    mon = _Probes(T, lif.u, lif.v, dense.a_out)
    with _run_lava(lif, T):
        data = mon.get()
    w_eff = dense_weights(w)
    acc = dense_accumulate(w_eff, x, weight_exp=wexp, num_message_bits=16)
    a = _delayed(acc)
    np.testing.assert_array_equal(a, data[dense.name]["a_out"])
    _check_lif_trace(p, u0, v0, a, data, "lif")
    # the run really went through the 24-bit corners
    assert np.abs(a).max() << 6 > 1 << 23


@pytest.mark.lava
def test_lava_run_conv_lif_and_graded_conv_wrap():
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIF
    rng = np.random.default_rng(3)
    T = 10
    C, H, W, Co, groups = 4, 6, 5, 6, 2
    stride, pad, dil = (1, 2), (1, 0), (2, 1)
    x = (rng.random((T, C, H, W)) < 0.4).astype(np.int64)
    w = rng.integers(-255, 256, (Co, C // groups, 2, 2))
    out_hw = fp.conv_output_hw((H, W), (2, 2), stride, pad, dil)
    src = Source(data=np.stack([fp.to_lava_layout(f) for f in x], -1))
    conv = Conv(weight=fp.to_lava_conv_weight(w), input_shape=(W, H, C),
                stride=fp.to_lava_xy(stride), padding=fp.to_lava_xy(pad),
                dilation=fp.to_lava_xy(dil), groups=groups,
                weight_exp=3)                           # ignored by Lava
    lshape = tuple(int(n) for n in conv.output_shape)
    assert lshape == (out_hw[1], out_hw[0], Co)
    p, u0, v0 = _random_lif(rng, lshape)
    lif = LIF(shape=lshape, name="lif", **_lif_kwargs(p, u0, v0))
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(lif.a_in)
    mon = _Probes(T, lif.u, lif.v, conv.a_out)
    with _run_lava(lif, T):
        data = mon.get()
    acc = conv_accumulate(x, w, stride, pad, dil, groups)
    a = _delayed(np.stack([fp.to_lava_layout(f) for f in acc]))
    np.testing.assert_array_equal(a, data[conv.name]["a_out"])
    _check_lif_trace(p, u0, v0, a, data, "lif")

    # graded conv (3x3, padding 1) with sums beyond 24 and 32 bits;
    # a separate run: Lava only runs what is connected to the anchor process
    xg = rng.integers(-(1 << 22), 1 << 22, (T, 2, 4, 3))
    wg = rng.integers(-256, 256, (3, 2, 3, 3))
    srcg = Source(data=np.stack([fp.to_lava_layout(f) for f in xg], -1))
    convg = Conv(weight=fp.to_lava_conv_weight(wg), input_shape=(3, 4, 2),
                 padding=1, num_message_bits=24)
    srcg.s_out.connect(convg.s_in)
    mon = _Probes(T, convg.a_out)
    with _run_lava(convg, T), np.errstate(invalid="ignore"):
        data = mon.get()
    accg = conv_accumulate(xg, wg, padding=1, num_message_bits=24)
    ag = _delayed(np.stack([fp.to_lava_layout(f) for f in accg]))
    np.testing.assert_array_equal(ag, data[convg.name]["a_out"])
    exact = np.abs(naive_conv(xg, wg, (1, 1), (1, 1), (1, 1), 1)
                   ).astype(np.float64)
    assert (exact > 2**31).any() and ((exact > 2**23) & (exact < 2**31)).any()


def test_conv_speed_spikformer_sized():
    import time
    rng = np.random.default_rng(0)
    x = (rng.random((16, 384, 8, 8)) < 0.2).astype(np.int8)
    w1 = rng.integers(-255, 256, (384, 384, 1, 1))
    w3 = rng.integers(-255, 256, (384, 384, 3, 3))
    t0 = time.perf_counter()
    out1 = conv_accumulate(x, w1)
    out3 = conv_accumulate(x, w3, padding=1)
    dt = time.perf_counter() - t0
    assert out1.shape == out3.shape == (16, 384, 8, 8)
    # spot-check one output of each against the plain definition
    s = (x != 0).astype(np.int64)
    assert out1[3, 7, 2, 5] == int((w1[7, :, 0, 0] * s[3, :, 2, 5]).sum())
    ref = sum(int(w3[9, c, i, j]) * int(s[5, c, 4 + i - 1, 0 + j - 1])
              for c in range(384) for i in range(3) for j in range(3)
              if 0 <= 0 + j - 1 < 8)
    assert out3[5, 9, 4, 0] == ref
    assert dt < 5.0, dt
