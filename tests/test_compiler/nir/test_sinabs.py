"""The real sinabs 3.1.3 -> its own NIR writer -> our import: sinabs' spikes, exactly.

sinabs is installed from requirements-interop.lock into .venv/interop without its declared
dependencies (it pins nir<=1.0.4 and samna; tests/support/requirements.py skips this module
where it is missing, or fails it under SPIKEFORM_REQUIRE_TEST_DEPS=1 as in CI).

Networks of sinabs' own layers, run by sinabs the way it runs a network (the "Squeeze"
layers take the batch and time folded into one axis, [B * T, ...]; the digits image is the
input current at every step):

    mlp: Linear(64, 32) -> LIFSqueeze -> Linear(32, 10) -> LIFSqueeze      (flat input)
    cnn: Conv2d(1, 8, 3, padding=1) -> LIFSqueeze -> SumPool2d(2) -> Flatten
         -> Linear(128, 10) -> LIFSqueeze

Every LIF is sinabs' exponential-leak ``LIFSqueeze(tau_mem, spike_threshold,
spike_fn=SingleSpike, reset_fn=MembraneReset(), norm_input=False)``: ``v = exp(-1/tau_mem) v
+ x``, a spike where ``v >= threshold``, reset to 0 -- the network the sinabs convention
means (NIR cannot carry the spike/reset functions or norm_input; last test). Per-neuron
tau_mem and threshold tensors: nir.write cannot store sinabs' default scalar parameters.
Each is exported with ``sinabs.nir.to_nir``, written with ``nir.write`` after NIR's own
``graph.infer_types()`` (sinabs leaves the Conv2d, SumPool2d and Flatten types unset, which
nir 1.0.8 cannot write), read with ``compiler.nir.read_nir_file(convention="sinabs")`` and
run by ``compiler.float_exec.run_float``: every LIF spike equals sinabs'. Then quantized, the
integer reference's differences from sinabs are measured, and Lava equals the reference.
"""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from support.requirements import import_interop

sinabs = import_interop("sinabs")

import sinabs.layers as sl  # noqa: E402  (after import_interop put it on sys.path)
from sinabs.activation import MembraneReset, SingleSpike  # noqa: E402
from sinabs.nir import to_nir  # noqa: E402

from compiler.float_exec import run_float  # noqa: E402
from compiler.nir import read_nir_file  # noqa: E402
from support.nir_interop import (assert_lava_equals_reference, digits,  # noqa: E402
                                 quantized_on_digits, reference_vs_library)

# the libraries call nirtorch 2.6's old API (extract_nir_graph, load), which warns
pytestmark = pytest.mark.filterwarnings(r"ignore:nirtorch\..*deprecated:DeprecationWarning")

T = 16


def lif(shape, tau_mem: float, **kw) -> "sl.LIFSqueeze":
    full = lambda v: torch.full(shape, float(v))  # noqa: E731
    options = dict(spike_fn=SingleSpike, reset_fn=MembraneReset(), norm_input=False)
    options.update(kw)
    return sl.LIFSqueeze(tau_mem=full(tau_mem), spike_threshold=full(1.0), num_timesteps=T,
                         **options)


def network(kind: str, tau_mem: float, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    if kind == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), lif((32,), tau_mem),
                                  torch.nn.Linear(32, 10), lif((10,), tau_mem))
        gains = (3.0, 3.0)
    else:
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), lif((8, 8, 8), tau_mem),
                                  sl.SumPool2d(2), torch.nn.Flatten(), torch.nn.Linear(128, 10),
                                  lif((10,), tau_mem))
        gains = (3.0, 1.5)
    with torch.no_grad():    # larger weights than torch's default init: lively spiking
        layers = [m for m in net if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        for layer, gain in zip(layers, gains):
            layer.weight.mul_(gain)
    return net


def as_input(kind: str, x: torch.Tensor, steps: int = T) -> torch.Tensor:
    """[B, 1, 8, 8] images -> sinabs' [B * T, ...] (the image at every step; flat for the
    MLP)."""
    x = x.reshape(len(x), 64) if kind == "mlp" else x
    return x.unsqueeze(1).expand(len(x), steps, *x.shape[1:]).reshape(-1, *x.shape[1:])


def sinabs_spikes(net, x: torch.Tensor, kind: str):
    """Every LIFSqueeze's spikes as {module name: [T, B, ...]}."""
    cells = [(n, m) for n, m in net.named_modules() if isinstance(m, sl.LIFSqueeze)]
    rec = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rec.__setitem__(n, o.detach()))
             for n, m in cells]
    try:
        for _, m in cells:
            m.reset_states()
        with torch.no_grad():
            net(as_input(kind, x))
    finally:
        for h in hooks:
            h.remove()
    return {n: v.reshape(len(x), T, *v.shape[1:]).transpose(0, 1) for n, v in rec.items()}


def export(net, kind: str, path):
    """sinabs' own writer (a sample of T steps of one image), NIR's type inference, write."""
    graph = to_nir(net, as_input(kind, digits("test", 1)))
    graph.infer_types()
    nir.write(path, graph)
    return path


LIFS = {"mlp": ("1", "3"), "cnn": ("1", "5")}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("tau_mem", [3.0, 8.0])
def test_float_spikes_equal_sinabs(tmp_path, kind, tau_mem):
    net = network(kind, tau_mem)
    ir = read_nir_file(export(net, kind, tmp_path / f"sinabs-{kind}.nir"), convention="sinabs",
                       time_steps=T, dataset="digits")
    ops = [n.op for n in ir]
    assert ops == (["input", "conv2d", "lif", "conv2d", "lif"] if kind == "mlp" else
                   ["input", "conv2d", "lif", "sumpool2d", "conv2d", "lif"]) \
        + ["token_time_mean", "affine", "output"]
    alpha = torch.exp(-1.0 / torch.full((10,), tau_mem))[0]   # sinabs' float32 decay
    for name in LIFS[kind]:
        attrs = ir[name].attrs
        assert attrs["spike_if"] == ">=" and attrs["r"] == attrs["tau"]
        assert np.float32(1 - 1 / attrs["tau"]) == alpha.numpy()
    x = digits("test")
    res = run_float(ir, x.reshape(len(x), *ir.input_node.shape), record=list(LIFS[kind]))
    theirs = sinabs_spikes(net, x, kind)
    for name in LIFS[kind]:
        ours = res.outputs[name]
        other = theirs[name].reshape(ours.shape)
        assert torch.equal(ours, other), (name, int((ours != other).sum()))
        assert 0.02 < float(other.mean()) < 0.6, (name, float(other.mean()))   # not vacuous
    counts = theirs[LIFS[kind][1]].sum(0).reshape(len(x), 10)
    assert torch.equal(res.logits.argmax(1), counts.argmax(1))


def test_float32_decay_is_sinabs_own():
    """For tau_mem = 3 the float64 exp(-1/3) rounds to another float32 than sinabs' float32
    torch.exp: the convention takes sinabs' (a tie-breaking difference otherwise)."""
    tau = 3.0
    sinabs_alpha = float(sl.LIF(tau_mem=torch.full((4,), tau)).alpha_mem_calculated[0])
    assert np.float32(math.exp(-1 / tau)) != np.float32(sinabs_alpha)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([4])),
               "fc": nir.Affine(weight=np.eye(4, dtype=np.float32),
                                bias=np.zeros(4, np.float32)),
               "lif": nir.LIF(tau=np.full(4, tau, np.float32), r=np.ones(4, np.float32),
                              v_leak=np.zeros(4, np.float32), v_reset=np.zeros(4, np.float32),
                              v_threshold=np.ones(4, np.float32)),
               "out": nir.Output(output_type=np.array([4]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    from compiler.nir.foreign import foreign_nir_to_ir

    ir = foreign_nir_to_ir(graph, convention="sinabs", time_steps=T)
    assert np.float32(1 - 1 / ir["lif"].attrs["tau"]) == np.float32(sinabs_alpha)


def test_the_file_does_not_say_spike_reset_or_norm_input(tmp_path):
    """sinabs' default LIF (MultiSpike, MembraneSubtract, norm_input=True) writes the very
    same LIF node: the convention's assumption (SingleSpike, MembraneReset, norm_input=False)
    cannot be checked from a file, and the default layer does differ from it."""
    mine, default = network("mlp", 8.0), network("mlp", 8.0)
    default[1] = sl.LIFSqueeze(tau_mem=torch.full((32,), 8.0), spike_threshold=torch.ones(32),
                               num_timesteps=T)
    a = nir.read(export(mine, "mlp", tmp_path / "a.nir")).nodes["1"]
    b = nir.read(export(default, "mlp", tmp_path / "b.nir")).nodes["1"]
    for field in ("tau", "r", "v_threshold", "v_leak", "v_reset"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    x = digits("test", 60)
    assert not torch.equal(sinabs_spikes(mine, x, "mlp")["1"],
                           sinabs_spikes(default, x, "mlp")["1"])


# -- quantized: the integer reference against sinabs, then Lava against the reference ---------

# Measured (tau_mem = 8: IR tau = 1/(1 - exp(-1/8)) = 8.51, Loihi decay dv = 4096/8.51 =
# 481.4, rounded to 481): spike values of sinabs' [T = 16, 360 test images, neurons] that the
# integer reference gives differently, per LIF, and predictions (argmax of output spike
# counts) that differ. Almost all come from the 8-bit weight rounding: the float network with
# the rounded weights differs from the reference only by the decay's rounding (481 for
# 481.4) and Loihi's truncating decay (ROUNDED_FLOAT_VS_REFERENCE). The random networks'
# output spike counts are often near-ties, so a few flipped spikes change a prediction.
REFERENCE_VS_SINABS = {"mlp": ({"1": 3470, "3": 2833}, 38), "cnn": ({"1": 10467, "5": 1683}, 31)}
ROUNDED_FLOAT_VS_REFERENCE = {"mlp": ({"1": 9, "3": 9}, 0), "cnn": ({"1": 239, "5": 40}, 1)}


def imported(tmp_path, kind):
    net = network(kind, 8.0)
    ir = read_nir_file(export(net, kind, tmp_path / f"sinabs-{kind}.nir"), convention="sinabs",
                       time_steps=T, dataset="digits")
    return net, ir


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_quantized_reference_vs_sinabs(tmp_path, kind):
    net, ir = imported(tmp_path, kind)
    folded, q = quantized_on_digits(ir)
    x = digits("test")
    m = reference_vs_library(ir, folded, q, x, sinabs_spikes(net, x, kind), LIFS[kind][1])
    layers = q.meta["quantization"]["layers"]
    print(f"sinabs {kind}: reference spikes differing {m.spikes_differ} of {m.spikes_total}, "
          f"predictions differing {m.predictions_differ} of {len(x)}; against the float "
          f"network with the rounded weights {m.rounded_float_differ}, predictions "
          f"{m.rounded_float_predictions_differ}; decay exact "
          f"{ {n: layers[n]['decay_exact'] for n in LIFS[kind]} }")
    assert (m.spikes_differ, m.predictions_differ) == REFERENCE_VS_SINABS[kind]
    assert (m.rounded_float_differ, m.rounded_float_predictions_differ) == \
        ROUNDED_FLOAT_VS_REFERENCE[kind]
    assert not any(layers[n]["decay_exact"] for n in LIFS[kind])


@pytest.mark.lava
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lava_equals_reference_on_the_sinabs_import(tmp_path, kind):
    _, ir = imported(tmp_path, kind)
    _, q = quantized_on_digits(ir)
    assert_lava_equals_reference(q, digits("test", 32).reshape(32, *ir.input_node.shape))
