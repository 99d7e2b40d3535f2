"""Lava backend (deploy/lava): the lowered network, run in Lava, equals the
reference executor spike for spike.

Every network test streams several samples back to back through one Lava run
and compares, with exact equality, every probed layer's spikes (re-aligned to
algorithmic time) and every sample's integer logits with
``compiler.reference.run_reference``. Random-weight models get randomised
BatchNorm statistics so that every LIF layer fires at a moderate rate (checked).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.source import RingBuffer

from loihi_numerics import fixed_point as fx
from compiler.frontend import checkpoint_to_ir, model_to_ir
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from compiler.encoding import encode_integer
from compiler.reference import attention_counts, run_reference
from deploy.lava import (LoihiUnavailableError, LoweringError, StageKind, lower, run,
                         run_config)
from deploy.lava.attention.models import attention_products
from deploy.lava.attention.process import SpikingAttention
from deploy.lava.build import build
from deploy.lava.graded.models import PyDelayedSumFixed
from deploy.lava.io.process import Tap
from deploy.lava.params import ungroup
from deploy.lava.runtime import LavaWorkerError, create_runtime, run_steps, stop_runtime
from deploy.lava.targets import loihi_extension_available
from spikformer_neuro.model import build_model
from spikformer_neuro.zoo import get_config
from spikformer_neuro.testing import densely_firing_model, random_input

from support.paths import ROOT
from support.signals import default_stop_signals
# the shipped checkpoint (tracked); runs/ holds the training run's copy (ignored by git)
DIGITS_CKPT = next((p for p in (ROOT / "spikformer_neuro" / "checkpoints" / "digits-tiny.pth",
                                ROOT / "runs" / "digits-tiny.pth") if p.exists()),
                   ROOT / "runs" / "digits-tiny.pth")
SPIKING = ("loihi_lif", "threshold")


# -- helpers -----------------------------------------------------------------------------------
def random_graph(cfg, seed: int = 0):
    """Quantized graph of a random model whose BN statistics make every LIF fire."""
    return quantize(float_passes(model_to_ir(densely_firing_model(cfg, seed))))


def spiking_nodes(graph):
    return [n.name for n in graph if n.op in SPIKING]


def assert_matches_reference(graph, x, target="lava-sim", probes=None, check_rates=True):
    """Run ``x`` through the lowered graph in Lava; everything must equal the reference."""
    net = lower(graph)
    probes = net.probe_names() if probes is None else probes
    ref = run_reference(graph, x, record=True)
    res = run(net, encode_integer(graph, x), target=target, probes=probes)
    for name in spiking_nodes(graph):
        rate = ref.outputs[name].mean()
        if check_rates:
            assert 0 < rate < 1, f"{name} fires at rate {rate}: the test would be weak"
    for name in probes:
        got, want = res.outputs[name], ref.outputs[name]
        assert got.shape == want.shape, name
        assert np.array_equal(got, want), (
            f"{name}: {int((got != want).sum())} mismatches, first at "
            f"[t, b, ...] = {np.argwhere(got != want)[0].tolist()}")
    assert np.array_equal(res.logits, ref.logits)
    assert np.array_equal(res.predictions, ref.predictions)
    return res, ref


def child_processes():
    """Live children of this process (Lava's workers and shared-memory manager)."""
    return mp.active_children()


# -- the attention process ---------------------------------------------------------------------
@pytest.mark.parametrize("heads,d,h,w", [(2, 16, 4, 4), (4, 32, 2, 3), (1, 8, 1, 2)])
def test_attention_products_equal_reference_counts(heads, d, h, w):
    """Both association orders (Q.(K^T.V) for d <= N, (Q.K^T).V otherwise)."""
    rng = np.random.default_rng(d * h + w)
    q, k, v = (rng.integers(0, 2, (3, d, h, w)) for _ in range(3))
    want = attention_counts(q, k, v, heads)
    assert np.array_equal(attention_products(q, k, v, heads), want)
    got_f = attention_products(*(a.astype(np.float64) for a in (q, k, v)), heads)
    assert np.array_equal(got_f, want.astype(np.float64))


def _attention_net(shape_chw, heads, gain, steps, seed, dtype):
    """RingBuffer q/k/v sources -> SpikingAttention -> Tap; returns the processes + data."""
    rng = np.random.default_rng(seed)
    lava = fx.to_lava_layout(np.zeros(shape_chw)).shape
    data = [rng.integers(0, 2, lava + (steps,)).astype(dtype) for _ in range(3)]
    attn = SpikingAttention(shape=lava, num_heads=heads, gain=gain)
    for port, arr in zip((attn.q, attn.k, attn.v), data):
        RingBuffer(data=arr).s_out.connect(port)
    tap = Tap(shape=lava, buffer_size=steps)
    attn.a_out.connect(tap.a_in)
    return attn, tap, data


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_attention_process_in_lava(tag):
    """The process, run by Lava, sends gain * attention_counts at the same step."""
    shape, heads, gain, steps = (8, 3, 4), 2, 4, 4
    attn, tap, data = _attention_net(shape, heads, gain, steps, seed=3,
                                     dtype=np.int32 if tag == "fixed_pt" else np.float64)
    try:
        create_runtime(attn, Loihi2SimCfg(select_tag=tag))
        run_steps(attn, steps)
        recv = tap.out.external_pipe_csp_recv_port
        got = [np.array(recv.recv()) for _ in range(steps)]
    finally:
        stop_runtime(attn._runtime)
    for t in range(steps):
        q, k, v = (fx.from_lava_layout(a[..., t])[None].astype(np.int64) for a in data)
        want = attention_counts(q, k, v, heads)[0] * gain
        assert np.array_equal(fx.from_lava_layout(got[t]), want), f"step {t + 1}"
    assert not child_processes()


def test_attention_process_rejects_bad_heads():
    with pytest.raises(ValueError, match="num_heads"):
        SpikingAttention(shape=(4, 4, 6), num_heads=4)


# -- lowering (no Lava run) --------------------------------------------------------------------
def test_lowering_aligns_every_join_and_resets_at_first_input():
    g = random_graph(get_config("test-micro"))
    net = lower(g)
    T = net.time_steps
    for st in net.stages.values():
        if st.kind is StageKind.LIF_RESET:
            # reset on the step a sample's first input arrives: s*T + 1 + lag
            assert st.params["reset_offset"] == (st.lag + 1) % T
            assert st.params["reset_interval"] == T
        arrivals = set()
        for src, port in st.inputs:
            s = net.stages[src]
            extra = st.params["delay"] if port == "a_delayed" else 0
            arrivals.add(s.lag + extra)
        hop = 1 if st.kind is StageKind.CONV else 0
        assert len(arrivals) <= 1, f"{st.name}: inputs arrive misaligned {arrivals}"
        if arrivals:
            assert st.lag == arrivals.pop() + hop, st.name
    # the SPS residual needs a 1-step skip delay, each block's residual 2 steps
    assert net.stages["sps.residual"].params["delay"] == 1
    assert net.stages["blocks.0.attn_residual"].params["delay"] == 2
    assert net.stages["blocks.0.mlp_residual"].params["delay"] == 2
    assert net.max_lag == net.lags["readout"] == 10


def test_lowering_and_input_checks():
    cfg = get_config("test-micro")
    with pytest.raises(LoweringError, match="quantize"):
        lower(float_passes(model_to_ir(build_model(cfg).eval())))
    g = random_graph(cfg)
    net = lower(g)
    xs = encode_integer(g, random_input(cfg, batch=2))
    with pytest.raises(ValueError, match=r"\[T=2, B, 1, 8, 8\]"):
        build(net, xs[:1])
    with pytest.raises(ValueError, match="cannot probe"):
        build(net, xs, probes=["head"])
    ev = get_config("test-micro-events")
    g_ev = random_graph(ev)
    bad = encode_integer(g_ev, random_input(ev, batch=1)) * 2
    with pytest.raises(ValueError, match="binary"):
        build(lower(g_ev), bad)


def test_ungrouped_conv_weights_are_equivalent():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (2, 6, 5, 5))
    for groups, w in ((6, np.ones((6, 1, 3, 3), np.int64)),
                      (3, rng.integers(-5, 6, (6, 2, 3, 3)))):
        want = fx.conv_accumulate(x, w, 2, 1, 1, groups)
        assert np.array_equal(fx.conv_accumulate(x, ungroup(w, groups), 2, 1, 1, 1), want)


def test_threshold_lif_is_memoryless_count_threshold():
    """The max-pool threshold as LIF du = dv = 4095, vth = ceil(thr) - 1 gives
    count >= thr at every step, whatever came before (all count sequences)."""
    for thr in (1, 2, 5):
        params = fx.LifParams(du=4095, dv=4095, vth=thr - 1)
        counts = np.array(np.meshgrid(*[np.arange(10)] * 3, indexing="ij")).reshape(3, -1).T
        u = v = np.zeros(len(counts), np.int64)
        for t in range(3):
            u, v, s = fx.lif_step(u, v, counts[:, t], params)
            assert np.array_equal(s, counts[:, t] >= thr)


# -- networks in Lava --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_network_matches_reference(name):
    cfg = get_config(name)
    g = random_graph(cfg)
    res, _ = assert_matches_reference(g, random_input(cfg, batch=3))
    assert res.num_steps == 3 * cfg.time_steps + lower(g).max_lag


GEOMETRIES = {  # name -> (config changes to test-micro, seed giving every layer spikes)
    # 2 blocks, 4 heads (d = 8 <= N = 16), T = 3, 16x16 signed (normalised) input
    "depth2-heads4-T3": (dict(depth=2, num_heads=4, time_steps=3, img_size=16, embed_dim=32,
                              pool_stages=(2, 3), input_mean=(0.5,), input_std=(0.25,)), 2),
    # 2x2 tokens with d = 8 > N = 4: the attention takes the (Q.K^T).V order; 1 head
    "tokens2x2-heads1-T2": (dict(num_heads=1, time_steps=2, embed_dim=8, pool_stages=(2, 3)), 3),
    # T = 1 (every LIFReset resets every step); D = 256: the sum pool over 256 channels
    # exceeds Lava Conv's int8 `groups`, so it is lowered as a block-diagonal conv
    "dim256-heads8-T1": (dict(time_steps=1, embed_dim=256, num_heads=8), 2),
}


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_other_geometries_match_reference(geometry):
    changes, seed = GEOMETRIES[geometry]
    cfg = get_config("test-micro").replace(name=f"test-{geometry}", **changes)
    assert_matches_reference(random_graph(cfg, seed=seed), random_input(cfg, batch=3))


def test_stock_models_match_reference():
    """lava-sim-stock: Lava's own Conv/LIF models (slow, tiny shapes only)."""
    cfg = get_config("test-micro")
    g = random_graph(cfg, seed=5)
    probes = ["sps.stages.0.lif", "sps.pool3", "blocks.0.attn.attn_lif", "blocks.0.mlp.fc2.lif"]
    assert_matches_reference(g, random_input(cfg, batch=2), target="lava-sim-stock",
                             probes=probes)


@pytest.mark.skipif(not DIGITS_CKPT.exists(), reason="no digits-tiny checkpoint")
def test_digits_checkpoint_matches_reference():
    from spikformer_neuro.data import load_dataset
    g = quantize(float_passes(checkpoint_to_ir(DIGITS_CKPT)))
    ds, _ = load_dataset("digits", "test")
    x = torch.stack([ds[i][0] for i in range(16)])
    probes = spiking_nodes(g) + ["blocks.0.attn.attention", "blocks.0.mlp_residual"]
    res, ref = assert_matches_reference(g, x, probes=probes)
    labels = np.array([int(ds[i][1]) for i in range(16)])
    assert (res.predictions == labels).mean() >= 0.75


# -- targets -----------------------------------------------------------------------------------
def test_loihi2_target_without_extension_explains():
    if loihi_extension_available():
        pytest.skip("lava-loihi is installed here")
    with pytest.raises(LoihiUnavailableError, match="lava-loihi.*INRC.*lava-sim"):
        run_config("loihi2")
    with pytest.raises(ValueError, match="unknown target"):
        run_config("gpu")


# -- the runtime is always stopped -------------------------------------------------------------
@pytest.fixture(scope="module")
def micro():
    cfg = get_config("test-micro")
    g = random_graph(cfg)
    return lower(g), encode_integer(g, random_input(cfg, batch=2))


def test_runtime_stopped_after_model_error(micro, monkeypatch):
    net, xs = micro
    original = PyDelayedSumFixed.run_spk

    def failing(self):
        if self.time_step == 4:
            raise ValueError("injected failure")
        original(self)

    monkeypatch.setattr(PyDelayedSumFixed, "run_spk", failing)
    t0 = time.monotonic()
    with pytest.raises(LavaWorkerError, match="injected failure"):
        run(net, xs)
    assert time.monotonic() - t0 < 60
    assert not child_processes()


@pytest.mark.parametrize("exc", [RuntimeError("host-side failure"), KeyboardInterrupt()])
def test_runtime_stopped_after_host_exception_mid_run(micro, exc):
    net, xs = micro
    seen = []

    def callback(done, total):
        seen.append(done)
        if len(seen) == 2:
            assert len(child_processes()) > 1  # the workers are up
            raise exc

    with pytest.raises(type(exc)):
        run(net, xs, chunk_steps=3, callback=callback)
    assert seen == [3, 6]
    assert not child_processes()


def _ignored_signals(pid: int) -> set:
    """The signals process ``pid`` ignores (SigIgn of /proc/<pid>/status)."""
    mask = next(int(line.split()[1], 16) for line in open(f"/proc/{pid}/status")
                if line.startswith("SigIgn:"))
    return {signum for signum in range(1, 64) if mask >> (signum - 1) & 1}


def _segments(runtime) -> list:
    """The names of the runtime's shared-memory channel segments."""
    smm = runtime._messaging_infrastructure.smm
    return [h.name for h in smm._shared_memory_handles]


def test_runtime_stopped_when_never_run(micro):
    """stop before any step (Lava itself would join workers that never exit)."""
    net, xs = micro
    built = build(net, xs)
    linux = sys.platform.startswith("linux")
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    # what this process ignores was decided by whoever started it (a background job ignores
    # SIGINT): creating a runtime must not change it
    ignored_before = _ignored_signals(os.getpid()) & stops if linux else set()
    try:
        create_runtime(built.readout, run_config("lava-sim"))
        workers = child_processes()
        assert len(workers) > 1
        if linux:
            # only this process acts on a stop signal; the workers ignore all three
            assert all(stops <= _ignored_signals(w.pid) for w in workers)
            assert _ignored_signals(os.getpid()) & stops == ignored_before
    finally:
        stop_runtime(built.readout._runtime, timeout=30)
    assert not child_processes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, /dev/shm")
def test_hung_stop_kills_workers_and_unlinks_segments(micro, monkeypatch):
    """Lava's stop() hangs: after the timeout the workers (which ignore SIGTERM) are killed,
    and the channels' shared-memory segments are released."""
    from lava.magma.runtime.runtime import Runtime

    net, xs = micro
    built = build(net, xs)
    try:
        create_runtime(built.readout, run_config("lava-sim"))
        runtime = built.readout._runtime
        segments = _segments(runtime)
        assert segments and all(os.path.exists(f"/dev/shm/{name}") for name in segments)
        monkeypatch.setattr(Runtime, "stop", lambda self: time.sleep(3600))
    finally:
        t0 = time.monotonic()
        stop_runtime(built.readout._runtime, timeout=0.5)
    assert time.monotonic() - t0 < 20
    assert not child_processes()
    assert not [name for name in segments if os.path.exists(f"/dev/shm/{name}")]


def test_signals_deferred_delivers_after_the_block():
    """A stop signal during the block reaches this process's own handler after it, also when
    the block fails; the handlers are restored."""
    from deploy.lava.runtime import signals_deferred

    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    # Python's own Ctrl-C handler, even when this test runs with SIGINT ignored (a background job)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            assert seen == []
        assert seen == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):   # Ctrl-C during a failing block: interrupted
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                raise ValueError("the block failed")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)


CTRL_C_SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, time, torch
    from spikformer_neuro.zoo import get_config
    from spikformer_neuro.model import build_model
    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize
    from compiler.encoding import encode_integer
    from deploy.lava import lower, run
    g = quantize(float_passes(model_to_ir(build_model(get_config("test-micro")).eval())))
    # 800+ steps: SIGINT lands mid-stream even when a loaded machine delays the sender by seconds
    xs = encode_integer(g, torch.rand(400, 1, 8, 8))

    def callback(done, total):
        if done == 1:
            print("RUNNING", flush=True)

    try:
        run(lower(g), xs, chunk_steps=1, callback=callback)
        print("FINISHED before the interrupt", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", len(mp.active_children()), flush=True)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_ctrl_c_stops_runtime_and_workers():
    """SIGINT to the whole process group (what Ctrl-C does): the run stops
    cleanly, no worker process survives."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=default_stop_signals)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "RUNNING", proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "INTERRUPTED 0" in out, err[-3000:]
    # nothing of that session is left running (exited-but-unreaped zombies aside;
    # multiprocessing's resource tracker may take a moment to notice its parent is gone)
    deadline = time.monotonic() + 20
    while True:
        rows = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(proc.pid)],
                              capture_output=True, text=True).stdout.splitlines()
        left = [r for r in rows if r.split()[1:2] and not r.split()[1].startswith("Z")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, left
