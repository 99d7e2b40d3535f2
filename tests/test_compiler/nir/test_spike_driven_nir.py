"""The Spike-driven Transformer exported as stock NIR (``--target nir``), run by the real
norse 1.1.0, snntorch 1.0.0 and sinabs 3.1.3.

The network: ``sdt-digits-tiny`` with random weights and BatchNorm statistics (every LIF and
threshold layer fires sometimes), through ``float_passes``. Its float graph holds only conv2d,
lif, sumpool2d, threshold, token_time_mean, affine; the export writes Input, Conv2d, LIF,
SumPool2d, Flatten, Affine and Output nodes only (a threshold is a memoryless LIF, a padded
sum-pool a Conv2d of diagonal all-ones kernels: compiler/nir/export.py, docs/nir.md).

What the libraries do with the file, on 64 digits test images, 4 steps:

- norse (``norse.torch.from_nir(graph, dt=1.0)``): every spike of all 15 LIF / threshold
  layers and the logits, exactly -- after one fix, made here in the open: norse's loader
  (nirtorch 2.6's deprecated ``load``) runs nodes in depth-first order from the input, so a
  node with several inputs can run before one of them and reads its previous-step value. The
  fix orders its ``execution_order`` topologically.
- snntorch (``import_from_nir``): every spike and the logits, exactly, with its documented
  dt workaround (it hard-codes dt = 1e-4: pass ``tau * 1e-4``). It reads ``r`` as a threshold
  scale (``v_th / (r dt / tau)``): its membrane is tau / r times ours, the same neuron.
- sinabs (``sinabs.nir.from_nir``): cannot load the file. Its LIF import runs
  ``any(node.v_leak) != 0`` on the NIR array, which raises for any LIF of more than one
  dimension, i.e. every LIF after a Conv2d. Past that, its LIFSqueeze is another neuron:
  ``v = exp(-1/tau) v + x`` (gain 1, no 1/tau), MultiSpike, subtractive reset.

Exactness by construction: the comparisons run the network with weights and biases on a
dyadic grid (:func:`on_a_dyadic_grid`), so every convolution and every fan-in sum is exact in
float32 whatever order a library sums in (norse's oneDNN 1x1 convolutions and our GEMMs differ
by up to 3e-6 on the raw weights): ``torch.equal`` then holds on every CPU, not by luck. (On
the raw random weights the same runs also gave every spike and prediction, logits within
2.4e-7: the head is applied per step before the time mean there, ours after it.)

norse and sinabs come from ``.venv/interop`` (tests/support/requirements.py: skipped where
missing, failed under SPIKEFORM_REQUIRE_TEST_DEPS=1 as in CI); snntorch is in the main venv.
"""
from __future__ import annotations

import contextlib
import io
import math

import nir
import numpy as np
import pytest
import torch

from compiler.float_exec import run_float
from compiler.frontend import model_to_ir
from compiler.ir import Graph
from compiler.nir import graph_to_nir, read_nir_file, write_nir_file
from compiler.nir.dialect import float32_below
from compiler.passes import float_passes
from compiler.pipeline import compile_graph
from compiler.serialize import graph_to_bytes
from spikformer_neuro.model import build_model
from spikformer_neuro.testing import randomize_batchnorm
from spikformer_neuro.zoo import get_config
from support.nir_interop import digits
from support.requirements import import_interop

# norse and sinabs call nirtorch 2.6's old API (load), which warns; norse warns on padding
pytestmark = pytest.mark.filterwarnings(r"ignore:nirtorch\..*deprecated:DeprecationWarning")

STOCK_TYPES = {"Input", "Conv2d", "LIF", "SumPool2d", "Flatten", "Affine", "Output"}
GRID = 2.0 ** -8     # weights and biases: multiples of this
NUDGE = 2.0 ** -14   # added to one bias per LIF: no membrane ever equals its threshold


def torch_name(name: str) -> str:
    """nirtorch's module name for a NIR node (dots are not allowed in torch module names)."""
    return name.replace(".", "_")


def spiking(graph: Graph):
    """The LIF and threshold nodes (the layers whose spikes are compared)."""
    return [n.name for n in graph if n.op in ("lif", "threshold")]


def on_a_dyadic_grid(graph: Graph) -> Graph:
    """``graph`` with every conv2d / affine weight and bias rounded to a multiple of 2^-8, and
    2^-14 added to the bias of each LIF's first input conv.

    Exact sums: digits pixels are k/16 and spikes 0/1, so every product is a multiple of
    2^-12 and every partial sum of a convolution (well below 2^10, bias included) fits
    float32's 24 bits: any summation order gives the same float. The LIF's own operations
    are elementwise, the same in every library.
    No ties: since its last reset at step s, a membrane is h_t = sum_k x_k / 2^(t-k+1) with
    x_k = (multiple of 2^-12) + 2^-14, so h_t = 2^-14 / 2^(t-s+1) modulo 2^-14 / 2^(t-s):
    never a multiple of that, never exactly the threshold 1.0, where our ``>=`` and NIR's
    ``>`` would differ.
    """
    g = graph.copy()

    def snap(a: np.ndarray) -> np.ndarray:
        return np.round(a / GRID) * GRID

    for node in g:
        if node.op in ("conv2d", "affine"):
            node.params = {k: snap(v) for k, v in node.params.items()}
    for node in g.by_op("lif"):
        first = g[node.inputs[0]]
        first.params["bias"] = first.params["bias"] + NUDGE
    return g.validate()


@pytest.fixture(scope="module")
def network() -> Graph:
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(get_config("sdt-digits-tiny")), 1).eval()
    return model_to_ir(model)


@pytest.fixture(scope="module")
def folded(network) -> Graph:
    return float_passes(network)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digits("test", 64)


@pytest.fixture(scope="module")
def exact(folded, images, tmp_path_factory):
    """(dyadic graph, its NIR file, our float executor's record of it)."""
    g = on_a_dyadic_grid(folded)
    path = tmp_path_factory.mktemp("sdt") / "sdt.nir"
    write_nir_file(g, path)
    return g, path, run_float(g, images, record=True)


def assert_every_spike_equal(graph: Graph, ours, theirs) -> None:
    """``theirs``: layer name -> [T, B, ...] spikes. Every LIF / threshold layer fires
    sometimes and gives exactly our spikes."""
    for name in spiking(graph):
        want = ours.outputs[name]
        assert 0 < float(want.mean()) < 1, name
        assert torch.equal(theirs[name], want), name


# -- (a) stock nodes only -----------------------------------------------------------------------

def test_the_export_is_stock_nodes_only_and_every_layer_fires(folded, images, tmp_path):
    ours = run_float(folded, images, record=spiking(folded))
    for name in spiking(folded):   # the random network is alive: every layer fires sometimes
        assert 0 < float(ours.outputs[name].mean()) < 1, name
    info = write_nir_file(folded, tmp_path / "sdt.nir")
    g = nir.read(tmp_path / "sdt.nir")   # stock reader, type check on
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert kinds == STOCK_TYPES and set(info.nir_nodes) == STOCK_TYPES   # no nested NIRGraph
    assert not info.fragment and info.outputs == ["output"]
    # nothing refused, nothing cut: --nir-portable writes the same graph
    portable, pinfo = graph_to_nir(folded, portable=True)
    assert not pinfo.fragment and sorted(portable.nodes) == sorted(g.nodes)
    # the thresholds (AND of k and v, the token-sum mask, the max-pool) are memoryless LIFs
    # at k - 0.5 on integer counts; the padded sum-pools (max-pool window, the broadcast of
    # the (D, 1, 1) mask over the grid) are Conv2d
    for node in folded.by_op("threshold"):
        lif = g.nodes[node.name]
        assert isinstance(lif, nir.LIF) and np.all(lif.tau == 1) and np.all(lif.r == 1)
        assert np.all(lif.v_threshold == math.ceil(node.attrs["threshold"]) - 0.5), node.name
    for node in folded.by_op("sumpool2d"):
        padded = node.attrs["padding"] not in (0, [0, 0])
        assert isinstance(g.nodes[node.name], nir.Conv2d if padded else nir.SumPool2d)
    # head_lif is (D, 1, 1): the readout is a Flatten, no token pool
    assert isinstance(g.nodes["readout"], nir.Flatten) and "readout.token_sum" not in g.nodes


# -- (d) our importer ---------------------------------------------------------------------------

def test_our_importer_gives_back_the_identical_graph_and_artifact(network, folded, images,
                                                                   tmp_path):
    write_nir_file(folded, tmp_path / "sdt.nir")
    back = read_nir_file(tmp_path / "sdt.nir")
    assert graph_to_bytes(back) == graph_to_bytes(folded)
    calib = digits("train", 32)
    direct = compile_graph(network, calib)
    via_nir = compile_graph(back, calib)
    assert graph_to_bytes(via_nir.quantized) == graph_to_bytes(direct.quantized)


# -- (b) norse ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def norse_from_nir():
    import_interop("norse")
    from norse.torch import from_nir
    return from_nir


def in_topological_order(executor) -> list:
    """norse's executor nodes, each after all of its sources (ties kept in its own order)."""
    nodes = list(executor.execution_order)
    sources = {n.name: {s.name for s in executor.graph.find_source_nodes_of(n)} for n in nodes}
    order, done = [], set()
    while len(order) < len(nodes):
        ready = next(n for n in nodes if n.name not in done and sources[n.name] <= done)
        order.append(ready)
        done.add(ready.name)
    return order


def run_norse(executor, x: torch.Tensor, steps: int):
    """(torch name -> [T, B, ...] output of every node, logits): the image at every step, the
    logits the Output's mean over time (the file's convention)."""
    state, seen = None, {}
    for _ in range(steps):
        _, state = executor(x, state)
        for name, value in state.cache.items():
            seen.setdefault(name, []).append(value.detach().clone())
    record = {name: torch.stack(values) for name, values in seen.items()}
    return record, record["output"].mean(0)


def test_norse_reproduces_every_spike_and_the_logits(exact, images, norse_from_nir):
    g, path, ours = exact
    executor = norse_from_nir(nir.read(path), dt=1.0)   # dt = 1 step: the file's convention
    executor.execution_order = in_topological_order(executor)
    record, logits = run_norse(executor, images, g.time_steps)
    # the premise: every convolution is bit-identical (dyadic grid), whatever kernel it ran
    for node in g.by_op("conv2d"):
        assert torch.equal(record[torch_name(node.name)], ours.outputs[node.name]), node.name
    assert_every_spike_equal(g, ours, {n: record[torch_name(n)] for n in spiking(g)})
    assert torch.equal(logits, ours.logits)
    assert torch.equal(logits.argmax(1), ours.logits.argmax(1))


def test_norse_as_shipped_runs_a_join_before_its_inputs(exact, images, norse_from_nir):
    """Without the fix: depth-first order runs blocks.0.attn.shortcut_lif (two conv inputs)
    before one of them, which it then reads one step late. Everything before it is exact."""
    g, path, ours = exact
    executor = norse_from_nir(nir.read(path), dt=1.0)
    order = [n.name for n in executor.execution_order]
    late = torch_name("blocks.0.attn.shortcut_lif.from.sps.proj.conv")
    assert order.index(torch_name("blocks.0.attn.shortcut_lif")) < order.index(late)
    record, _ = run_norse(executor, images, g.time_steps)
    names = spiking(g)
    first_join = names.index("blocks.0.attn.shortcut_lif")
    for name in names[:first_join]:
        assert torch.equal(record[torch_name(name)], ours.outputs[name]), name
    assert not torch.equal(record[torch_name(names[first_join])], ours.outputs[names[first_join]])


# -- (c) snntorch -------------------------------------------------------------------------------

def test_snntorch_reproduces_every_spike_with_its_dt_workaround(exact, images):
    from snntorch.import_nir import import_from_nir

    g, path, ours = exact
    graph = nir.read(path)
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            # snntorch hard-codes dt = 1e-4 s (beta = 1 - 1e-4 / tau); our dt is 1 step
            node.tau = node.tau * 1e-4
    with contextlib.redirect_stdout(io.StringIO()):   # it prints a warning per scaled LIF
        net = import_from_nir(graph)
    seen = {name: [] for name in spiking(g)}
    for name, spikes in seen.items():
        getattr(net, torch_name(name)).register_forward_hook(
            lambda mod, inp, out, spikes=spikes: spikes.append(out.detach().clone()))
    state, per_step = None, []
    for _ in range(g.time_steps):
        out, state = net(images, state)
        per_step.append(out)
    assert_every_spike_equal(g, ours, {n: torch.stack(s) for n, s in seen.items()})
    assert torch.equal(torch.stack(per_step).mean(0), ours.logits)


# -- (c) sinabs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sinabs_nir():
    import_interop("sinabs")
    import sinabs.nir
    return sinabs.nir


def test_sinabs_cannot_load_a_lif_after_a_conv(exact, sinabs_nir):
    _, path, _ = exact
    graph = nir.read(path)
    with pytest.raises(ValueError, match="truth value of an array with more than one element"):
        sinabs_nir.from_nir(graph, batch_size=64)
    # the node and the reason: `any(node.v_leak) != 0` on an (8, 8, 8) array
    stem = graph.nodes["sps.stages.0.lif"]
    with pytest.raises(ValueError, match="truth value"):
        sinabs_nir._import_sinabs_module(stem, batch_size=64, num_timesteps=None)
    flat = nir.LIF(**{k: np.asarray(getattr(stem, k)).reshape(-1)
                      for k in ("tau", "r", "v_leak", "v_threshold", "v_reset")})
    assert sinabs_nir._import_sinabs_module(flat, batch_size=64, num_timesteps=None) is not None


def test_sinabs_lif_is_another_neuron(exact, sinabs_nir):
    """Past the loading bug (v_leak given flat here), sinabs' LIFSqueeze from our stem LIF
    runs v = exp(-1/2) v + x, MultiSpike, subtractive reset -- not our v + (x - v)/2, one
    spike, reset to 0 -- on the same conv output; and the memoryless threshold LIF (tau = 1)
    keeps exp(-1) of its membrane."""
    g, path, ours = exact
    graph = nir.read(path)

    def sinabs_layer(name: str, batch: int):
        node = graph.nodes[name]
        node.v_leak = np.asarray(node.v_leak).reshape(-1)
        return sinabs_nir._import_sinabs_module(node, batch_size=batch, num_timesteps=None)

    x = ours.outputs["sps.stages.0.conv"]                       # [T, B, 8, 8, 8]
    steps, batch = x.shape[:2]
    layer = sinabs_layer("sps.stages.0.lif", batch)
    with torch.no_grad():
        theirs = layer(x.transpose(0, 1).reshape(-1, *x.shape[2:]))
    theirs = theirs.reshape(batch, steps, *x.shape[2:]).transpose(0, 1)
    alpha = torch.exp(torch.tensor(-1.0 / 2.0))
    v, formula = torch.zeros_like(x[0]), []
    for t in range(steps):
        v = alpha * v + x[t]
        s = (v > 0) * torch.div(v, 1.0, rounding_mode="trunc")
        v = v - s
        formula.append(s)
    assert torch.equal(theirs, torch.stack(formula))
    assert not torch.equal(theirs, ours.outputs["sps.stages.0.lif"])
    assert float(theirs.max()) > 1                              # several spikes in one step
    memoryless = sinabs_layer("sps.pool2", batch)
    assert torch.allclose(memoryless.alpha_mem_calculated, torch.exp(torch.tensor(-1.0)))


# -- the shipped checkpoints: `spikeform-compile --target nir`, run by the real norse ---------

def as_the_file_states_it(graph: Graph) -> Graph:
    """The network a stock reader of our file runs: every parameter rounded to float32 (norse
    casts the file's arrays with ``.float()``) and every LIF firing on NIR's ``v >
    v_threshold`` at the file's stock threshold (the largest float32 below V_th)."""
    g = graph.copy()
    for node in g:
        node.params = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
                       for k, v in node.params.items()}
        if node.op == "lif" and node.attrs.get("spike_if", ">=") == ">=":
            node.attrs["v_threshold"] = float32_below(node.attrs["v_threshold"])
            node.attrs["spike_if"] = ">"
    return g.validate()


def shipped_test_images(dataset: str, n: int) -> torch.Tensor:
    """The first ``n`` test images of ``dataset`` (0: all), float64 [n, 1, H, W]."""
    if dataset == "digits":
        return digits("test", n).double()
    from spikformer_neuro.data import load_dataset
    from support.requirements import require_fashion_mnist
    require_fashion_mnist()
    ds, _ = load_dataset(dataset, "test")
    return torch.stack([ds[i][0] for i in range(n or len(ds))]).double()


@pytest.mark.parametrize("checkpoint,dataset,n", [("sdt-digits-tiny.pth", "digits", 0),
                                                  ("sdt-fmnist-small.pth", "fashion-mnist", 500)])
def test_norse_runs_the_shipped_checkpoint_spike_for_spike(checkpoint, dataset, n, tmp_path,
                                                           capsys, norse_from_nir):
    """The user's command, `spikeform-compile CKPT --target nir`, then the file in norse and in
    our float executor, both in float64, on test images: every spike and every logit equal.

    Exact by construction, not by tolerance: with float32 parameters and binary spikes, every
    product is exact in float64 and every sum of them too (far fewer than 53 bits apart), in
    any order; the LIF's halvings are exact; so both executors compute the same reals and
    compare them with the same rule. (The first conv reads the image: with the digits' k/16
    pixels exact too; with Fashion-MNIST's k/255 its sums round in float64, 2^-53 relative,
    far from any membrane's distance to its threshold on these images.) In float32 the two
    sum the 1x1 convolutions in different orders: README, Measured, gives that count.
    """
    from spikeform_cli.compile import main
    from support.cli import call
    from support.paths import CHECKPOINTS

    path = tmp_path / "net.nir"
    proc = call(capsys, main, CHECKPOINTS / checkpoint, "--target", "nir", "-o", path, "-q")
    assert proc.returncode == 0, proc.stderr
    g = read_nir_file(path)
    assert {type(n).__name__ for n in nir.read(path).nodes.values()} <= STOCK_TYPES
    x = shipped_test_images(dataset, n)
    ours = run_float(as_the_file_states_it(g), x, record=spiking(g), dtype=torch.float64)
    executor = norse_from_nir(nir.read(path), dt=1.0).double()
    executor.execution_order = in_topological_order(executor)
    record, logits = run_norse(executor, x, g.time_steps)
    compared = 0
    for name in spiking(g):
        want = ours.outputs[name]
        assert 0 < float(want.mean()) < 1, name
        assert torch.equal(record[torch_name(name)].to(want.dtype), want), name
        compared += want.numel()
    assert compared > 10_000_000
    assert torch.equal(logits, ours.logits)
