"""Foreign NIR graphs -> float IR: conventions (norse, sinabs, snntorch), node mapping, errors.

The norse and sinabs graphs are built by hand the way their NIR code writes/reads them
(compiler/nir/conventions.py names the source lines); the reference dynamics below are the
update equations from that source, re-implemented in float64.
"""
import math

import nir
import numpy as np
import pytest
import torch

from compiler.float_exec import run_float
from compiler.ir import IRError, OptionError
from compiler.nir.conventions import tau_for_decay
from compiler.nir.foreign import foreign_nir_to_ir, supported_node_types
from compiler.passes import float_passes
from compiler.passes.quantize import quantize

K_IN, K_OUT, T, B = 6, 5, 12, 256


def lif_node(n, tau, v_th, r=1.0, **kw):
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(kw.get("v_leak", 0.0)),
                   v_threshold=full(v_th), v_reset=full(kw.get("v_reset", 0.0)))


def dense_graph(neuron, seed=0, metadata=None):
    """Input(K_IN) -> Affine -> neuron -> Output, random weights."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, (K_OUT, K_IN))
    b = rng.normal(0.0, 0.2, K_OUT)
    if metadata:
        neuron.metadata = metadata
    return nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([K_IN])), "fc": nir.Affine(weight=w, bias=b),
               "lif": neuron, "out": nir.Output(output_type=np.array([K_OUT]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")]), w, b


def random_input(seed=1):
    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 1, (B, K_IN, 1, 1)))


def run_ir(graph, convention, **kw):
    ir = foreign_nir_to_ir(graph, convention=convention, time_steps=T, source="hand.nir", **kw)
    x = random_input()
    res = run_float(ir, x, record=["lif"], dtype=torch.float64)
    return ir, x, res.outputs["lif"].reshape(T, B, K_OUT).numpy()


def simulate(x, w, b, step):
    """Drive ``step(v, i) -> (spikes, v)`` with the constant current W x + b for T steps."""
    i = x.numpy().reshape(B, K_IN) @ w.T + b
    v = np.zeros((B, K_OUT))
    out = []
    for _ in range(T):
        s, v = step(v, i)
        out.append(s)
    return np.stack(out)


def assert_lively_and_equal(ours, theirs):
    assert 0.05 < theirs.mean() < 0.8           # not a vacuous comparison
    assert np.array_equal(ours, theirs)


# -- conventions ---------------------------------------------------------------------------------

def test_norse_convention_matches_norse_lif_box_dynamics():
    tau_s, dt, v_th = 4e-3, 1e-3, 0.6                  # tau in seconds, norse's default dt
    graph, w, b = dense_graph(lif_node(K_OUT, tau_s, v_th))
    ir, x, ours = run_ir(graph, "norse")
    assert ir["lif"].attrs == {"tau": pytest.approx(4.0), "v_threshold": 0.6, "r": 1.0,
                               "spike_if": ">"}

    def norse_step(v, i):      # norse/torch/functional/lif_box.py 95-101
        v = v + dt * (1.0 / tau_s) * (i + 0.0 - v)
        z = (v - v_th > 0).astype(float)
        return z, (1 - z) * v + z * 0.0
    assert_lively_and_equal(ours, simulate(x, w, b, norse_step))


def test_norse_cuba_lif_with_an_instant_synapse_applies_w_in_and_r():
    dt, tau_mem, r, w_in, v_th = 1e-3, 4e-3, 2.0, 1.5, 0.9
    full = lambda v: np.full(K_OUT, v)  # noqa: E731
    cuba = nir.CubaLIF(tau_syn=full(dt), tau_mem=full(tau_mem), r=full(r), v_leak=full(0.0),
                       v_threshold=full(v_th), v_reset=full(0.0), w_in=full(w_in))
    graph, w, b = dense_graph(cuba)
    ir, x, ours = run_ir(graph, "norse")
    assert ir["lif"].attrs["r"] == r * w_in and ir["lif"].attrs["tau"] == pytest.approx(4.0)

    def norse_cuba_step(v, i):   # import_nir.py 50-52: w_in, LI synapse (dt/tau_syn = 1), r
        syn = 0.0 + dt * (1.0 / dt) * (w_in * i - 0.0)
        v = v + dt * (1.0 / tau_mem) * (r * syn - v)
        z = (v - v_th > 0).astype(float)
        return z, (1 - z) * v
    assert_lively_and_equal(ours, simulate(x, w, b, norse_cuba_step))


def test_norse_dt_override_and_r_refusal():
    graph, _, _ = dense_graph(lif_node(K_OUT, 0.02, 0.6))
    ir = foreign_nir_to_ir(graph, convention="norse", time_steps=T, dt=0.005, source="n.nir")
    assert ir["lif"].attrs["tau"] == pytest.approx(4.0) and ir.meta["nir_dt"] == 0.005
    graph, _, _ = dense_graph(lif_node(K_OUT, 0.004, 0.6, r=2.0))
    with pytest.raises(IRError, match=r"n\.nir.*'lif'.*norse ignores r"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="n.nir")


def test_sinabs_convention_matches_sinabs_lif_dynamics():
    tau, v_th = 3.0, 0.8                               # time constants in steps
    graph, w, b = dense_graph(lif_node(K_OUT, tau, v_th))
    ir, x, ours = run_ir(graph, "sinabs")
    attrs = ir["lif"].attrs
    assert attrs["spike_if"] == ">=" and attrs["r"] == attrs["tau"]
    assert 1 - 1 / attrs["tau"] == pytest.approx(math.exp(-1 / tau), rel=1e-15)
    alpha = math.exp(-1.0 / tau)                       # sinabs/layers/lif.py 121

    def sinabs_step(v, i):     # sinabs/layers/functional/lif.py 28, SingleSpike, MembraneReset
        v = alpha * v + i
        s = (v - v_th >= 0).astype(float)
        return s, v * (s == 0)
    assert_lively_and_equal(ours, simulate(x, w, b, sinabs_step))
    with pytest.raises(IRError, match="sinabs.*time steps"):
        foreign_nir_to_ir(graph, convention="sinabs", time_steps=T, dt=1e-3, source="s.nir")


def test_snntorch_convention_is_beta_v_plus_x():
    beta = np.float32(0.8125)
    dt = np.float32(1e-4)
    tau = (dt / (np.float32(1) - beta)).astype(np.float32)     # as snntorch writes it
    graph, w, b = dense_graph(lif_node(K_OUT, tau, 0.7, r=np.float32(tau / dt)))
    for f in ("tau", "r", "v_threshold", "v_leak", "v_reset"):
        setattr(graph.nodes["lif"], f, getattr(graph.nodes["lif"], f).astype(np.float32))
    ir, x, ours = run_ir(graph, "snntorch")
    attrs = ir["lif"].attrs
    assert np.float32(1 - 1 / attrs["tau"]) == beta and attrs["r"] == attrs["tau"]

    def snntorch_step(v, i):   # snntorch/_neurons/leaky.py 239, reset "zero"
        v = float(beta) * v + i
        s = (v - 0.7 > 0).astype(float)
        return s, v * (1 - s)
    assert_lively_and_equal(ours, simulate(x, w, b, snntorch_step))


def test_spikeform_convention_reads_the_rule_from_metadata():
    graph, w, b = dense_graph(lif_node(K_OUT, 2.0, 1.0), metadata={"spikeform.spike_if": ">="})
    ir = foreign_nir_to_ir(graph, convention="spikeform", time_steps=T, source="ours.nir")
    assert ir["lif"].attrs == {"tau": 2.0, "v_threshold": 1.0, "r": 1.0, "spike_if": ">="}


def test_tau_for_decay_round_trips_float32():
    for beta in np.float32([0.5, 0.8, 0.9, 0.95, 0.99, 1 - 1 / 4096, 0.0]):
        assert np.float32(1 - 1 / tau_for_decay(beta)) == beta


def test_cuba_lif_with_an_instant_synapse_is_a_lif():
    dt = np.float32(1e-4)
    n = K_OUT
    f32 = lambda v: np.full(n, v, dtype=np.float32)  # noqa: E731
    tau_mem = np.float32(dt / np.float32(1 - np.float32(0.75)))
    cuba = nir.CubaLIF(tau_syn=f32(dt), tau_mem=f32(tau_mem), r=f32(tau_mem / dt),
                       v_leak=f32(0), v_threshold=f32(0.7), v_reset=f32(0), w_in=f32(1.0))
    graph, _, _ = dense_graph(cuba)
    ir = foreign_nir_to_ir(graph, convention="snntorch", time_steps=T, source="c.nir")
    assert np.float32(1 - 1 / ir["lif"].attrs["tau"]) == np.float32(0.75)
    cuba.tau_syn = f32(2 * dt)   # alpha = 0.5: the current has memory
    with pytest.raises(IRError, match="'lif'.*synaptic current has memory"):
        foreign_nir_to_ir(graph, convention="snntorch", time_steps=T, source="c.nir")


# -- node mapping ----------------------------------------------------------------------------------

def conv_pool_graph(threshold=0.5, dilation=1, pool="sum"):
    rng = np.random.default_rng(3)
    pool_node = (nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                               padding=np.array([0, 0])) if pool == "sum" else
                 nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                               padding=np.array([0, 0])))
    nodes = {
        "in": nir.Input(input_type=np.array([1, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1, (3, 1, 3, 3)),
                           stride=1, padding="same", dilation=dilation, groups=1,
                           bias=np.zeros(3)),
        "lif1": lif_node((3, 8, 8), 2e-3, 0.5),
        "pool": pool_node,
        "th": nir.Threshold(threshold=np.full((3, 4, 4), threshold)),
        "flat": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 1, (4, 48)), bias=np.zeros(4)),
        "lif2": lif_node(4, 2e-3, 1.0),
        "out": nir.Output(output_type=np.array([4])),
    }
    edges = [("in", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "th"), ("th", "flat"),
             ("flat", "fc"), ("fc", "lif2"), ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_conv_pool_threshold_flatten_mapping_and_float_run():
    ir = foreign_nir_to_ir(conv_pool_graph(threshold=0.5), convention="norse", time_steps=4,
                           source="cnn.nir")
    assert [(n.name, n.op, n.shape) for n in ir] == [
        ("in", "input", (1, 8, 8)), ("conv", "conv2d", (3, 8, 8)), ("lif1", "lif", (3, 8, 8)),
        ("pool", "sumpool2d", (3, 4, 4)), ("th", "threshold", (3, 4, 4)),
        ("fc", "conv2d", (4, 1, 1)), ("lif2", "lif", (4, 1, 1)),
        ("readout", "token_time_mean", (4,)), ("head", "affine", (4,)), ("out", "output", (4,))]
    assert ir["conv"].attrs["padding"] == [1, 1]
    assert ir["th"].attrs["threshold"] == 1.0        # x > 0.5 on integer sums is x >= 1
    assert ir["fc"].params["weight"].shape == (4, 3, 4, 4)
    assert np.array_equal(ir["head"].params["weight"], np.eye(4)) and ir.meta["num_classes"] == 4
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    res = run_float(ir, x, record=["pool", "th", "fc", "th"], dtype=torch.float64)
    assert torch.equal(res.outputs["th"], (res.outputs["pool"] > 0.5).double())
    flat = res.outputs["th"].reshape(4, 3, 48)         # torch's row-major flatten
    want = flat @ torch.from_numpy(conv_pool_graph().nodes["fc"].weight).T
    assert torch.allclose(res.outputs["fc"].reshape(4, 3, 4), want, rtol=0, atol=1e-12)
    ir2 = foreign_nir_to_ir(conv_pool_graph(threshold=2.0), convention="norse", time_steps=4,
                            source="cnn.nir")
    assert ir2["th"].attrs["threshold"] == 3.0


def test_file_round_trip_and_event_dataset(tmp_path):
    path = tmp_path / "g.nir"
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6))
    nir.write(path, graph)
    ir = foreign_nir_to_ir(nir.read(path), convention="norse", time_steps=T,
                           dataset="dvs-gesture", source=path.name)
    assert ir.input_node.attrs["encoding"] == "spikes" and ir.meta["dataset"] == "dvs-gesture"
    assert ir.input_node.shape == (K_IN, 1, 1)
    assert ir.meta["model"] == "nir:g.nir" and ir.meta["nir_convention"] == "norse"
    assert "reset to 0" in ir.meta["nir_assumption"]


# -- refusals name the node and what is missing ----------------------------------------------------

@pytest.mark.parametrize("change, match", [
    (dict(v_leak=0.1), "'lif'.*v_leak must be 0"),
    (dict(v_reset=-0.2), "'lif'.*v_reset must be 0"),
])
def test_leak_and_reset_values_are_refused(change, match):
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6, **change))
    with pytest.raises(IRError, match=f"bad.nir.*{match}"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="bad.nir")


def test_per_neuron_parameters_are_refused():
    node = lif_node(K_OUT, 4e-3, 0.6)
    node.tau = np.linspace(3e-3, 5e-3, K_OUT)
    graph, _, _ = dense_graph(node)
    with pytest.raises(IRError, match="'lif'.*'tau' differs between neurons"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="bad.nir")


def test_unsupported_nodes_are_named():
    graph, _, _ = dense_graph(nir.IF(r=np.ones(K_OUT), v_threshold=np.ones(K_OUT)))
    with pytest.raises(IRError, match=r"bad\.nir: NIR node 'lif' \(IF\).*not supported; "
                                      r"supported: Input, Affine, Linear, Flatten, Conv2d, LIF, "
                                      r"CubaLIF, SumPool2d, Threshold, Output"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="bad.nir")
    assert "IF" not in supported_node_types()
    with pytest.raises(IRError, match=r"'pool' \(AvgPool2d\).*not supported"):
        foreign_nir_to_ir(conv_pool_graph(pool="avg"), convention="norse", time_steps=4,
                          source="bad.nir")
    with pytest.raises(IRError, match=r"'conv' \(Conv2d\).*dilation"):
        foreign_nir_to_ir(conv_pool_graph(dilation=2), convention="norse", time_steps=4,
                          source="bad.nir")


def test_recurrent_and_nested_graphs_are_refused():
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6))
    graph.nodes["rec"] = nir.Linear(weight=np.eye(K_OUT))
    graph.edges += [("lif", "rec"), ("rec", "lif")]
    with pytest.raises(IRError, match=r"recurrent edges.*'lif'"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="bad.nir")
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6))
    graph.nodes["sub"] = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([K_OUT])),
                                             "o": nir.Output(output_type=np.array([K_OUT]))},
                                      edges=[("i", "o")])
    graph.edges = [("in", "fc"), ("fc", "lif"), ("lif", "sub"), ("sub", "out")]
    with pytest.raises(IRError, match="'sub'.*nested graphs"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="bad.nir")


def test_bad_arguments_are_refused():
    """OptionErrors naming the parameter (the CLI adds its flag), never a flag."""
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6))
    cases = [(dict(convention="lava"), "nir_convention", "unknown NIR convention 'lava'"),
             (dict(time_steps=0), "time_steps", "g.nir: time_steps must be a positive integer"),
             (dict(dt=1.0), "nir_dt", "'lif'.*at least one step.*nir_dt"),
             (dict(dt=-1.0), "nir_dt", "nir_dt must be a positive number"),
             (dict(convention="sinabs", dt=1.0), "nir_dt", "sinabs.*nir_dt .* does not apply")]
    for change, option, match in cases:
        kwargs = {**dict(convention="norse", time_steps=T, source="g.nir"), **change}
        with pytest.raises(OptionError, match=match) as err:
            foreign_nir_to_ir(graph, **kwargs)
        assert err.value.option == option and "--" not in str(err.value)


def test_threshold_elsewhere_and_flatten_into_a_lif_are_refused():
    graph = conv_pool_graph()
    graph.edges = [e for e in graph.edges if e not in (("lif1", "pool"), ("pool", "th"))]
    graph.edges += [("lif1", "th")]
    del graph.nodes["pool"]
    with pytest.raises(IRError, match=r"'th' \(Threshold\).*after a SumPool2d"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=4, source="bad.nir")
    graph = conv_pool_graph()
    graph.nodes["lif3"] = lif_node(48, 2e-3, 1.0)
    graph.edges = [e for e in graph.edges if e != ("flat", "fc")] + [("flat", "lif3"),
                                                                     ("lif3", "fc")]
    with pytest.raises(IRError, match=r"'lif3'.*Flatten.*followed by an Affine"):
        foreign_nir_to_ir(graph, convention="norse", time_steps=4, source="bad.nir")


# -- quantization of imported graphs ---------------------------------------------------------------

def test_quantize_refuses_a_decay_that_rounds_to_no_leak_and_reports_a_rounded_one():
    graph, _, _ = dense_graph(lif_node(K_OUT, 10.0, 0.6))      # tau 10000 steps: dv = 0.41
    ir = foreign_nir_to_ir(graph, convention="norse", time_steps=T, source="g.nir")
    with pytest.raises(IRError, match="'lif'.*dv = 0.*IF neuron"):
        quantize(float_passes(ir))
    graph, _, _ = dense_graph(lif_node(K_OUT, 3e-3, 0.6))      # tau 3: 4096/3 not an integer
    q = quantize(float_passes(foreign_nir_to_ir(graph, convention="norse", time_steps=T,
                                                source="g.nir")))
    info = q.meta["quantization"]["layers"]["lif"]
    assert info["decay_exact"] is False and info["dv"] == 1365 == int(q["lif"].params["dv"])
    assert info["tau_loihi"] == 4096 / 1365
    assert info["decay_error"] == pytest.approx(abs((1 - 1365 / 4096) - (1 - 1 / 3)))


def test_snntorch_beta_is_recovered_exactly_from_half_up():
    """snntorch stores tau = float32(dt / (1 - beta)); for beta >= 0.5 the float32 beta it ran
    comes back exactly (random betas and every beta on Loihi's grid 1 - k/4096)."""
    from compiler.nir.conventions import SNNTORCH_DT, snntorch_beta
    rng = np.random.default_rng(0)
    betas = np.concatenate([rng.uniform(0.5, 1.0, 4000),
                            1 - np.arange(1, 2049) / 4096]).astype(np.float32)
    for beta in betas:
        tau = (SNNTORCH_DT / (1 - np.array([beta], dtype=np.float32)))[0]   # export_nir.py 73
        assert tau.dtype == np.float32
        assert snntorch_beta(tau, SNNTORCH_DT) == beta, beta
    # below 0.5 the stored tau is still reproduced by the beta returned
    for beta in np.float32([0.1, 0.3, 0.35766602]):
        tau = (SNNTORCH_DT / (1 - np.array([beta], dtype=np.float32)))[0]
        got = snntorch_beta(tau, SNNTORCH_DT)
        assert np.float32(SNNTORCH_DT) / (np.float32(1) - got) == tau


def test_read_nir_file_needs_convention_and_time_steps_for_foreign_files(tmp_path):
    """The missing options are OptionErrors naming the parameter (the CLI adds its flag)."""
    from compiler.nir import read_nir_file
    graph, _, _ = dense_graph(lif_node(K_OUT, 4e-3, 0.6))
    nir.write(tmp_path / "f.nir", graph)
    cases = [(dict(), "nir_convention", "pass nir_convention"),
             (dict(convention="lava"), "nir_convention", "unknown NIR convention 'lava'"),
             (dict(convention="norse"), "time_steps", "pass time_steps")]
    for kwargs, option, match in cases:
        with pytest.raises(OptionError, match=match) as err:
            read_nir_file(tmp_path / "f.nir", **kwargs)
        assert err.value.option == option and "--" not in str(err.value)
    assert read_nir_file(tmp_path / "f.nir", convention="norse", time_steps=T).time_steps == T
