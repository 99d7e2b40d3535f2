"""The torch reference executor (compiler.reference on compiler.exact) against the numpy
implementation it replaced (tests/support/numpy_reference.py) and against
loihi_numerics.fixed_point: the same integers for every output, logit and membrane, on every
arithmetic path (float32, float64, int64 fallbacks), every conv path (tap GEMMs, im2col,
groups) and every device present."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from compiler.encoding import encode_integer
from compiler.exact import values as exact_values
from compiler.exact.conv import ConvWeights, conv2d, sum_pool
from compiler.exact.device import exact_float_math, resolve_device
from compiler.exact.lif import float_plan, run_lif, state_bounds
from compiler.exact.values import IntSeq, from_numpy, to_numpy
from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import Node, OptionError
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.reference import run_reference
from loihi_numerics import exact_matmul, fixed_point as fx
from spikformer_neuro.testing import densely_firing_model, firing_model, random_input
from spikformer_neuro.zoo import get_config
from support.graphs import build_graph
from support.numpy_reference import run_numpy_reference

HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CIFAR_LIKE = dict(embed_dim=48, num_heads=4, depth=3)   # 32x32x3, 4 pools of the SPS, 3 blocks


def _zoo(name, dense=False, batch=4, **overrides):
    cfg = get_config(name).replace(**overrides) if overrides else get_config(name)
    model = densely_firing_model(cfg) if dense else firing_model(name, **overrides)
    return quantize(float_passes(model_to_ir(model))), random_input(cfg, batch)


def _digits():
    from compiler.pipeline import compile_checkpoint
    from spikformer_neuro.checkpoint import load_checkpoint
    from spikformer_neuro.data import load_dataset
    from support.paths import DIGITS_CKPT

    ckpt = load_checkpoint(DIGITS_CKPT)
    ds, _ = load_dataset(ckpt.dataset, "test")
    return compile_checkpoint(ckpt, None).quantized, torch.stack([ds[i][0] for i in range(12)])


GRAPHS = {
    "test-micro": lambda: _zoo("test-micro", batch=6),
    "test-micro-events": lambda: _zoo("test-micro-events", batch=6),
    "event-counts": lambda: _zoo("test-micro-events", batch=6, event_max_count=12),
    "digits-tiny checkpoint": _digits,
    "cifar-like, 3 blocks": lambda: _zoo("cifar10-4-384", batch=2, **CIFAR_LIKE),
    "cifar-like, dense firing": lambda: _zoo("cifar10-4-384", dense=True, batch=2, **CIFAR_LIKE),
}


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def graph_and_batch(request):
    return GRAPHS[request.param]()


def assert_same_run(got, want):
    """Every logit, recorded output and membrane equal, all int64."""
    assert got.logits.dtype == np.int64 and np.array_equal(got.logits, want.logits)
    assert got.outputs.keys() == want.outputs.keys()
    for n, v in want.outputs.items():
        assert got.outputs[n].dtype == np.int64 and got.outputs[n].shape == v.shape, n
        assert np.array_equal(got.outputs[n], v), n
    assert got.currents.keys() == want.currents.keys() == got.voltages.keys()
    for n in want.currents:
        assert np.array_equal(got.currents[n], want.currents[n]), n
        assert np.array_equal(got.voltages[n], want.voltages[n]), n


def test_equals_the_numpy_implementation(graph_and_batch):
    q, x = graph_and_batch
    got = run_reference(q, x, record=True, record_membrane=True)
    want = run_numpy_reference(q, x, record=True, record_membrane=True)
    assert_same_run(got, want)
    spikes = [want.outputs[n.name] for n in q.by_op("loihi_lif")]
    assert all(0 < s.mean() < 1 for s in spikes)     # not vacuous: every population fires
    # the logits-only run (no record) gives the same logits
    assert np.array_equal(run_reference(q, x).logits, want.logits)


@pytest.mark.parametrize("limits", [(0, exact_matmul.FLOAT64_EXACT_LIMIT), (0, 0)],
                         ids=["float64 everywhere", "int64 fallbacks everywhere"])
@pytest.mark.parametrize("name", ["test-micro", "event-counts", "cifar-like, 3 blocks"])
def test_every_arithmetic_path_gives_the_same_integers(monkeypatch, name, limits):
    """Lowering the exactness limits forces the float64 GEMMs and LIF state, or the int64
    fallbacks (fixed_point's conv_accumulate and lif_step, int64 GEMMs on the CPU)."""
    q, x = GRAPHS[name]()
    want = run_numpy_reference(q, x, record=True, record_membrane=True)
    monkeypatch.setattr(exact_matmul, "FLOAT32_EXACT_LIMIT", limits[0])
    monkeypatch.setattr(exact_matmul, "FLOAT64_EXACT_LIMIT", limits[1])
    assert exact_values.exact_dtype(1) == (torch.float64 if limits[1] else torch.int64)
    assert_same_run(run_reference(q, x, record=True, record_membrane=True), want)


# -- hand-built graphs: wraps, saturation, strides, groups, decays -------------------------------

def _lif(name, src, shape, vth, mant, exp=0, du=4095, dv=2048):
    def per_channel(a):
        return np.asarray(a, np.int64).reshape(-1, 1, 1) * np.ones((shape[0], 1, 1), np.int64)

    return Node(name, "loihi_lif", [src], shape,
                {"du": np.asarray(du), "dv": np.asarray(dv), "vth": np.asarray(vth),
                 "bias_mant": per_channel(mant), "bias_exp": per_channel(exp)},
                {"tau": 2.0, "v_threshold": 1.0})


def _conv(name, src, weight, shape, graded, stride=1, padding=0, groups=1):
    return Node(name, "conv2d", [src], shape, {"weight": np.asarray(weight, np.int64)},
                {"stride": [stride, stride], "padding": [padding, padding], "groups": groups,
                 "weight_exp": 0,
                 "graded_input": graded})


def wide_graph(seed: int, t: int = 5):
    """Large graded inputs (the conv's int32 cast and 24-bit wrap, the LIF current's wrap and
    the voltage's clip), then a strided grouped binary conv (im2col), a LIF with current
    memory and an odd voltage decay (float64 state), a 3x3/2 sum-pool, a fractional threshold,
    a kernel covering the whole map and a LIF without leak, per-neuron decays, a residual sum."""
    rng = np.random.default_rng(seed)
    c, side = 4, 6
    ints = lambda lo, hi, shape: rng.integers(lo, hi, shape)   # noqa: E731
    return build_graph([
        Node("input", "input", [], (2, side, side), {},
             {"encoding": "graded", "input_scale": 1.0, "max_abs": 1 << 23}),
        _conv("big", "input", ints(-127, 128, (c, 2, 3, 3)), (c, side, side), True, padding=1),
        _lif("l_wrap", "big", (c, side, side), vth=int(ints(1, 1 << 17, ())),
             mant=ints(-4096, 4096, c), exp=ints(0, 8, c), du=int(ints(0, 4096, ())),
             dv=int(ints(0, 4096, ()))),
        _conv("strided", "l_wrap", ints(-127, 128, (c, 2, 3, 3)), (c, 3, 3), False, stride=2,
              padding=1, groups=2),
        _lif("l_mem", "strided", (c, 3, 3), vth=int(ints(0, 400, ())), mant=ints(-900, 900, c),
             du=1000, dv=1365),
        Node("pool", "sumpool2d", ["l_mem"], (c, 2, 2), {},
             {"kernel": 3, "stride": 2, "padding": 1}),
        Node("thr", "threshold", ["pool"], (c, 2, 2), {}, {"threshold": 1.5}),
        _conv("whole", "pool", ints(-127, 128, (c, c, 2, 2)), (c, 1, 1), True),
        _lif("l_noleak", "whole", (c, 1, 1), vth=int(ints(0, 3000, ())), mant=ints(0, 4096, c),
             exp=7, dv=0),
        _conv("pointwise", "thr", ints(-127, 128, (c, c // 2, 1, 1)), (c, 2, 2), False,
              groups=2),
        Node("l_perneuron", "loihi_lif", ["pointwise"], (c, 2, 2),
             {"du": ints(0, 4096, (c, 1, 1)), "dv": ints(0, 4096, (c, 2, 2)),
              "vth": np.asarray(int(ints(0, 200, ()))), "bias_mant": ints(-500, 500, (c, 2, 2)),
              "bias_exp": ints(0, 3, (c, 1, 1))}, {"tau": 2.0, "v_threshold": 1.0}),
        Node("res", "sum", ["thr", "l_perneuron", "pool"], (c, 2, 2)),
        Node("acc", "token_time_sum", ["res"], (c,)),
        Node("acc2", "token_time_sum", ["l_noleak"], (c,)),
        Node("both", "sum", ["acc", "acc2"], (c,)),
        Node("head", "affine", ["both"], (3,),
             {"weight": ints(-127, 128, (3, c)), "bias": ints(-50, 50, 3)}),
        Node("output", "output", ["head"], (3,)),
    ], t, stage="quantized")


@HYP
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.sampled_from([4, 16, 23]))
def test_wide_graphs_equal_the_numpy_implementation(seed, batch, input_bits):
    g = wide_graph(seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(-(1 << input_bits), 1 << input_bits, (5, batch, 2, 6, 6))
    got = run_reference(g, x, encoded=True, record=True, record_membrane=True)
    assert_same_run(got, run_numpy_reference(g, x, encoded=True, record=True,
                                             record_membrane=True))


def test_wide_graph_reaches_the_wraps_it_is_built_for():
    """Not vacuous: sums beyond int32 and 24-bit wraps in the conv, a LIF whose current can
    wrap (the int64 fallback) and whose voltage saturates, and the float64 LIF state."""
    g = wide_graph(3)
    x = np.random.default_rng(4).integers(-(1 << 23), 1 << 23, (5, 2, 2, 6, 6))
    res = run_reference(g, x, encoded=True, record=True, record_membrane=True)
    exact = torch.nn.functional.conv2d(torch.from_numpy(x.reshape(10, 2, 6, 6)).double(),
                                       torch.from_numpy(g["big"].params["weight"]).double(),
                                       padding=1)   # float64: exact below 2**53
    assert exact.abs().max() > 2**31 and (exact.abs() >= 2**23).float().mean() > 0.5
    assert np.abs(res.outputs["big"]).max() <= 2**23
    p_wrap = fx.LifParams(**{k: g["l_wrap"].params[k] for k in ("du", "dv", "vth", "bias_mant",
                                                                  "bias_exp")})
    assert float_plan(2**23, p_wrap, 5) is None                 # int64: lif_step itself
    assert np.abs(res.voltages["l_wrap"]).max() == fx.V_MAX     # saturated
    p_mem = fx.LifParams(**{k: g["l_mem"].params[k] for k in ("du", "dv", "vth", "bias_mant",
                                                                "bias_exp")})
    assert float_plan(9 * 127 * 2, p_mem, 5).dtype == torch.float64


# -- the kernels one by one ----------------------------------------------------------------------

@HYP
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.sampled_from([1, 2]), st.booleans(),
       st.sampled_from([1, 2**10, 2**30]))
def test_conv_equals_conv_accumulate(seed, k, stride, groups_factor, padding, groups, graded,
                                     magnitude):
    rng = np.random.default_rng(seed)
    cin, cout, side = 2 * groups, 3 * groups, int(rng.integers(k, 9))
    if side + 2 * padding < k:
        return
    x = rng.integers(-magnitude, magnitude + 1, (3, 2, cin, side, side))
    w = rng.integers(-127, 128, (cout, cin // groups, k, k))
    got = conv2d(from_numpy(x, torch.device("cpu")), ConvWeights(w, torch.device("cpu")),
                 (stride, stride), (padding, padding), groups, graded)
    want = np.stack([fx.conv_accumulate(x[t], w, stride, padding, 1, groups,
                                        num_message_bits=1 if graded else 0) for t in range(3)])
    assert np.array_equal(to_numpy(got), want)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 40])
def test_im2col_chunks_do_not_change_the_integers(monkeypatch, chunk):
    """im2col copies are built for a few samples at a time: any chunking, the same integers."""
    from compiler.exact import conv as exact_conv
    rng = np.random.default_rng(chunk)
    x = rng.integers(0, 2, (3, 4, 3, 7, 7))
    w = rng.integers(-127, 128, (5, 3, 3, 3))
    want = np.stack([fx.conv_accumulate(x[t], w, 2, 1) for t in range(3)])
    monkeypatch.setattr(exact_conv, "IM2COL_CHUNK", chunk)
    got = conv2d(from_numpy(x, torch.device("cpu")), ConvWeights(w, torch.device("cpu")),
                 (2, 2), (1, 1), 1, graded=False)
    assert np.array_equal(to_numpy(got), want)


def test_sum_pool_counts_nonzero_inputs_with_zero_padding():
    x = np.random.default_rng(0).integers(-3, 4, (2, 3, 4, 5, 5))
    got = to_numpy(sum_pool(from_numpy(x, torch.device("cpu")), (3, 3), (2, 2), (1, 1)))
    ones = np.ones((4, 1, 3, 3), np.int64)
    want = np.stack([fx.conv_accumulate(x[t], ones, 2, 1, 1, 4) for t in range(2)])
    assert np.array_equal(got, want) and want.max() > 1


@HYP
@given(st.integers(0, 2**31 - 1), st.integers(0, 4095), st.integers(0, 4095),
       st.integers(0, (1 << 17) - 1), st.integers(-4096, 4095), st.integers(0, 7),
       st.sampled_from([1, 2**8, 2**14, 2**17, 2**24]), st.integers(1, 6))
def test_lif_equals_lif_step(seed, du, dv, vth, mant, exp, magnitude, steps):
    """Every path (float32, float64, fixed_point.lif_step) against lif_step itself, spikes and
    membranes, across input magnitudes that do and do not wrap."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-magnitude, magnitude + 1, (steps, 2, 3, 2, 2))
    p = fx.LifParams(du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=exp)
    spikes, (us, vs) = run_lif(from_numpy(a, torch.device("cpu")), p, keep=True)
    u = v = np.zeros(a.shape[1:], np.int64)
    for t in range(steps):
        v_old = v
        u, v, s = fx.lif_step(u, v, a[t], p)
        assert np.array_equal(to_numpy(spikes)[t], s), t
        assert np.array_equal(us[t], u) and np.array_equal(vs[t], fx.lif_voltage(v_old, u, p))


def test_lif_bounds_choose_the_arithmetic():
    tau2 = fx.LifParams(du=4095, dv=2048, vth=1000, bias_mant=4095, bias_exp=7)
    # du = 4095: u = 64 a; v <= (v / 2) + u + bias, a geometric series below 2 (u + bias)
    u_hi, v_hi = state_bounds(1000, tau2, 50)
    assert u_hi == 64_000 and v_hi < 2 * (64_000 + (4095 << 7))
    plan = float_plan(1000, tau2, 50)
    assert plan.dtype == torch.float32 and not plan.clip
    # an odd decay factor (tau = 3: dv = 1365, f = 2731) needs float64 products
    assert float_plan(1000, fx.LifParams(du=4095, dv=1365, vth=1000), 8).dtype == torch.float64
    # no leak: v grows with T and saturates -> clip kept
    assert float_plan(20_000, fx.LifParams(du=4095, dv=0, vth=1000), 8).clip
    # |64 a| reaching 2**23: the current could wrap -> the int64 semantics
    assert float_plan(1 << 17, tau2, 1) is None


def test_threshold_compares_integers_exactly():
    g = build_graph([
        Node("input", "input", [], (1, 1, 4), {}, {"encoding": "graded", "input_scale": 1.0,
                                                   "max_abs": 1 << 30}),
        Node("thr", "threshold", ["input"], (1, 1, 4), {}, {"threshold": 2.5}),
        Node("acc", "token_time_sum", ["thr"], (1,)),
        Node("output", "output", ["acc"], (1,))], 1, stage="quantized")
    x = np.array([[[[[2, 3, -(1 << 30), 1 << 30]]]]])
    res = run_reference(g, x, encoded=True, record=["thr"])
    assert res.outputs["thr"].reshape(-1).tolist() == [0, 1, 0, 1]


def test_values_keep_their_bound_honest():
    t = torch.zeros(3)
    with pytest.raises(ValueError, match="exceeds"):
        IntSeq(t, (1 << 24) + 1)
    IntSeq(t.double(), 1 << 40)
    big = from_numpy(np.array([[1 << 40, -3]]), torch.device("cpu"))
    assert big.data.dtype == torch.float64 and big.bound == 1 << 40
    assert from_numpy(np.array([[0, 1]]), torch.device("cpu")).binary


def test_exact_float_math_restores_the_callers_settings():
    before = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
              torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        with exact_float_math():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cuda.matmul.allow_tf32 = before[1]
        torch.backends.cudnn.allow_tf32 = before[2]


# -- devices -------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("run", [run_reference, run_float], ids=["reference", "float"])
def test_cuda_without_cuda_names_the_device_parameter(micro_quantized, run):
    q, x = micro_quantized
    with pytest.raises(OptionError, match=r"device 'cuda' was asked for.*is_available\(\) is "
                                          r"False.*device 'cpu'") as e:
        run(q, x, device="cuda")
    assert e.value.option == "device"


@pytest.mark.parametrize("bad", ["tpu", "gpu", 3.5])
def test_unknown_devices_are_refused(bad):
    with pytest.raises(OptionError, match="is not 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(bad)


@CUDA
def test_cuda_gives_the_cpu_integers(graph_and_batch):
    q, x = graph_and_batch
    cpu = run_reference(q, x, record=True, record_membrane=True)
    assert_same_run(run_reference(q, x, record=True, record_membrane=True, device="cuda"), cpu)


@CUDA
@pytest.mark.parametrize("limits", [(0, exact_matmul.FLOAT64_EXACT_LIMIT), (0, 0)])
def test_cuda_paths_give_the_cpu_integers(monkeypatch, limits):
    q, x = GRAPHS["cifar-like, 3 blocks"]()
    cpu = run_reference(q, x, record=True, record_membrane=True)
    monkeypatch.setattr(exact_matmul, "FLOAT32_EXACT_LIMIT", limits[0])
    monkeypatch.setattr(exact_matmul, "FLOAT64_EXACT_LIMIT", limits[1])
    assert_same_run(run_reference(q, x, record=True, record_membrane=True, device="cuda"), cpu)


@CUDA
def test_float_executor_runs_on_cuda():
    model = firing_model("test-micro")
    g = float_passes(model_to_ir(model))
    x = random_input(get_config("test-micro"), 4)
    cpu = run_float(g, x, record=True)
    gpu = run_float(g, x, record=True, device="cuda")
    assert gpu.logits.device.type == "cuda"
    assert torch.allclose(gpu.logits.cpu(), cpu.logits, rtol=1e-4, atol=1e-4)
    spikes = [n.name for n in g.by_op("lif")]
    agree = np.mean([(gpu.outputs[n].cpu() == cpu.outputs[n]).float().mean().item()
                     for n in spikes])
    assert agree > 0.99


def test_encoded_and_float_inputs_run_alike(micro_quantized):
    q, x = micro_quantized
    assert np.array_equal(run_reference(q, encode_integer(q, x), encoded=True).logits,
                          run_reference(q, x).logits)
