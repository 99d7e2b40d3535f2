"""The real norse 1.1.0 -> its own NIR writer -> our import: norse's spikes, exactly.

norse is installed from requirements-interop.lock into .venv/interop (scripts/setup-venv.sh;
tests/support/requirements.py skips this module where it is missing, or fails it under
SPIKEFORM_REQUIRE_TEST_DEPS=1 as in CI).

Networks of norse's own modules, a ``SequentialState`` of torch Linear/Conv2d layers and
``LIFBoxCell``s (norse's current-free LIF, the one its NIR writer maps to a NIR ``LIF``), run
by norse over T steps with the digits image as the input current at every step:

    mlp: Linear(64, 32) -> LIFBoxCell -> Linear(32, 10) -> LIFBoxCell     (flat 64-pixel input)
    cnn: Conv2d(1, 8, 3, padding=1) -> LIFBoxCell -> Conv2d(8, 10, 8) -> LIFBoxCell

(norse 1.1.0's writer maps no Flatten, so the CNN's readout layer is a full-size
convolution.) Each is exported with ``norse.torch.utils.export_nir.to_nir``, written with
``nir.write`` after NIR's own ``graph.infer_types()`` (norse leaves the Conv2d types unset,
which nir 1.0.8 cannot write), read with ``compiler.nir.read_nir_file(convention="norse")``,
and run by ``compiler.float_exec.run_float``: every LIF spike equals norse's. Then quantized,
the integer reference's differences from norse are measured, and Lava equals the reference.

norse 1.1.0's writer stores ``tau = dt / tau_mem_inv`` (dt * tau_mem, its default dt =
0.001) where NIR and its own reader mean tau_mem (fixed upstream after the release): files
are exported with ``to_nir(..., dt=1.0)``, which writes tau_mem; the default's files are
refused with that advice, or read right with ``nir_dt = 1e-6``
(test_default_to_nir_dt_writes_dt_times_tau_mem).
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from support.requirements import import_interop

norse = import_interop("norse")

import norse.torch as ntorch  # noqa: E402  (after import_interop put it on sys.path)
from norse.torch.utils.export_nir import to_nir  # noqa: E402
from norse.torch.utils.import_nir import from_nir  # noqa: E402

from compiler.float_exec import run_float  # noqa: E402
from compiler.ir import OptionError  # noqa: E402
from compiler.nir import read_nir_file  # noqa: E402
from support.nir_interop import (assert_lava_equals_reference, digits,  # noqa: E402
                                 quantized_on_digits, reference_vs_library)

# the libraries call nirtorch 2.6's old API (extract_nir_graph, load), which warns
pytestmark = pytest.mark.filterwarnings(r"ignore:nirtorch\..*deprecated:DeprecationWarning")

T = 16
DT = 1e-3            # the cells' dt: norse's default, and the norse convention's


def lif_box(shape, tau_mem_inv: float, v_th: float = 1.0) -> "ntorch.LIFBoxCell":
    # per-neuron tensors for every parameter: the writer builds r = ones_like(v_leak), and
    # NIR asserts that all LIF parameters have one shape
    full = lambda v: torch.full(shape, float(v))  # noqa: E731
    return ntorch.LIFBoxCell(ntorch.LIFBoxParameters(
        tau_mem_inv=full(tau_mem_inv), v_th=full(v_th), v_leak=full(0), v_reset=full(0)))


def network(kind: str, tau_mem_inv: float, seed: int = 0) -> "ntorch.SequentialState":
    torch.manual_seed(seed)
    if kind == "mlp":
        net = ntorch.SequentialState(torch.nn.Linear(64, 32), lif_box((32,), tau_mem_inv),
                                     torch.nn.Linear(32, 10), lif_box((10,), tau_mem_inv))
    else:
        net = ntorch.SequentialState(torch.nn.Conv2d(1, 8, 3, padding=1),
                                     lif_box((8, 8, 8), tau_mem_inv),
                                     torch.nn.Conv2d(8, 10, 8), lif_box((10, 1, 1), tau_mem_inv))
    with torch.no_grad():    # larger weights than torch's default init: lively spiking
        layers = [m for m in net if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        for layer, gain in zip(layers, (10.0, 14.0)):
            layer.weight.mul_(gain)
    return net


def as_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    """The images as the network takes them: flat 64-vectors for the MLP."""
    return x.reshape(len(x), 64) if kind == "mlp" else x


def norse_spikes(net, x: torch.Tensor, steps: int = T):
    """Every LIFBoxCell's spikes, {module name: [T, B, ...]}, x presented at every step."""
    cells = [(n, m) for n, m in net.named_modules() if isinstance(m, ntorch.LIFBoxCell)]
    rec = {n: [] for n, _ in cells}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: rec[n].append(o[0].detach().clone()))
             for n, m in cells]
    try:
        state = None
        with torch.no_grad():
            for _ in range(steps):
                _, state = net(x, state)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.stack(v) for n, v in rec.items()}


def export(net, kind: str, path, dt: float = 1.0):
    """norse's own writer, then NIR's type inference and nir.write."""
    sample = as_input(kind, digits("test", 1))[0]   # unbatched: the Input type has no batch
    graph = to_nir(net, sample, dt=dt)
    graph.infer_types()
    nir.write(path, graph)
    return path


def ours_vs_norse(ir, net, kind, x):
    """{lif: (ours, norse's)} spikes as [T, B, ...] tensors of one shape."""
    lifs = [n.name for n in ir.by_op("lif")]
    res = run_float(ir, x.reshape(len(x), *ir.input_node.shape), record=lifs)
    theirs = norse_spikes(net, as_input(kind, x))
    return {n: (res.outputs[n], theirs[n].reshape(res.outputs[n].shape)) for n in lifs}, res


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("tau_mem_inv", [250.0, 200.0])   # dt/tau_mem = 1/4 and 1/5
def test_float_spikes_equal_norse(tmp_path, kind, tau_mem_inv):
    net = network(kind, tau_mem_inv)
    path = export(net, kind, tmp_path / f"norse-{kind}.nir")
    ir = read_nir_file(path, convention="norse", time_steps=T, dataset="digits")
    assert [n.op for n in ir] == ["input", "conv2d", "lif", "conv2d", "lif", "token_time_mean",
                                  "affine", "output"]
    assert ir.input_node.shape == ((64, 1, 1) if kind == "mlp" else (1, 8, 8))
    k = np.float32(np.float32(DT) * (np.float32(1) / np.float32(1 / tau_mem_inv)))
    for lif in ir.by_op("lif"):   # IR tau = tau_mem / dt, from the float32 step norse runs
        assert lif.attrs == {"tau": 1.0 / float(k), "v_threshold": 1.0, "r": 1.0,
                             "spike_if": ">"}
    if tau_mem_inv == 250.0:
        assert ir["1"].attrs["tau"] == 4.0
    x = digits("test")
    pairs, res = ours_vs_norse(ir, net, kind, x)
    for name, (ours, theirs) in pairs.items():
        assert torch.equal(ours, theirs), (name, int((ours != theirs).sum()))
        assert 0.02 < float(theirs.mean()) < 0.6, (name, float(theirs.mean()))  # not vacuous
    counts = pairs["3"][1].sum(0).reshape(len(x), 10)
    assert torch.equal(res.logits.argmax(1), counts.argmax(1))


def test_norse_reader_agrees_on_the_same_file(tmp_path):
    """norse's own from_nir on the file runs what our import runs (the convention is its
    reader's): the output spikes are equal step for step."""
    net = network("mlp", 250.0)
    path = export(net, "mlp", tmp_path / "mlp.nir")
    reread = from_nir(nir.read(path))       # dt = 0.001, tau_mem_inv = 1 / tau
    x = as_input("mlp", digits("test"))
    state, outs = None, []
    with torch.no_grad():
        for _ in range(T):
            out, state = reread(x, state)
            outs.append(out)
    theirs = torch.stack(outs)
    ir = read_nir_file(path, convention="norse", time_steps=T)
    ours = run_float(ir, x.reshape(len(x), 64, 1, 1), record=["3"]).outputs["3"]
    assert torch.equal(ours.reshape(theirs.shape), theirs)
    assert torch.equal(theirs, norse_spikes(net, x)["3"])
    assert float(theirs.mean()) > 0.02


def test_default_to_nir_dt_writes_dt_times_tau_mem(tmp_path):
    """norse 1.1.0's to_nir(module, sample) with its default dt = 0.001 stores
    dt * tau_mem: the norse convention refuses it (tau/dt < 1 step) with the two fixes, and
    nir_dt = 0.001 * 0.001 reads it right."""
    net = network("mlp", 250.0)
    path = export(net, "mlp", tmp_path / "default.nir", dt=0.001)
    assert nir.read(path).nodes["1"].tau[0] == pytest.approx(0.001 / 250.0, rel=1e-6)
    with pytest.raises(OptionError) as err:
        read_nir_file(path, convention="norse", time_steps=T)
    assert err.value.option == "nir_dt"
    assert "default.nir" in str(err.value) and "to_nir(..., dt=1.0)" in str(err.value)
    assert "1e-06" in str(err.value)
    ir = read_nir_file(path, convention="norse", time_steps=T, dt=1e-6)
    assert ir["1"].attrs["tau"] == pytest.approx(4.0, rel=1e-6)
    x = digits("test", 120)
    pairs, _ = ours_vs_norse(ir, net, "mlp", x)
    for name, (ours, theirs) in pairs.items():
        assert torch.equal(ours, theirs), name


# -- quantized: the integer reference against norse, then Lava against the reference ----------

# Measured (tau_mem_inv = 250: IR tau = 4, Loihi decay dv = 1024, exact): spike values of
# norse's [T = 16, 360 test images, neurons] that the integer reference gives differently,
# per LIF, and predictions (argmax of output spike counts) that differ. Every one comes from
# the 8-bit weight rounding (at most 1 % of the largest weight): the float network with the
# rounded weights matches the reference on every spike and prediction.
REFERENCE_VS_NORSE = {"mlp": ({"1": 1280, "3": 1287}, 18), "cnn": ({"1": 6932, "3": 1668}, 29)}


def imported(tmp_path, kind):
    net = network(kind, 250.0)
    ir = read_nir_file(export(net, kind, tmp_path / f"norse-{kind}.nir"), convention="norse",
                       time_steps=T, dataset="digits")
    return net, ir


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_quantized_reference_vs_norse(tmp_path, kind):
    net, ir = imported(tmp_path, kind)
    folded, q = quantized_on_digits(ir)
    assert all(q.meta["quantization"]["layers"][n]["decay_exact"] for n in ("1", "3"))
    x = digits("test")
    m = reference_vs_library(ir, folded, q, x, norse_spikes(net, as_input(kind, x)), "3")
    print(f"norse {kind}: reference spikes differing {m.spikes_differ} of {m.spikes_total}, "
          f"predictions differing {m.predictions_differ} of {len(x)}")
    assert (m.spikes_differ, m.predictions_differ) == REFERENCE_VS_NORSE[kind]
    assert m.rounded_float_differ == {"1": 0, "3": 0}
    assert m.rounded_float_predictions_differ == 0


@pytest.mark.lava
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lava_equals_reference_on_the_norse_import(tmp_path, kind):
    _, ir = imported(tmp_path, kind)
    _, q = quantized_on_digits(ir)
    assert_lava_equals_reference(q, digits("test", 32).reshape(32, *ir.input_node.shape))
