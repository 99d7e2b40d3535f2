"""The one Lava lowering (deploy/lava/lowering.py) against the op registry, without running Lava.

* ``Lowering`` has an ``op_<name>`` handler for every quantized op and every float op that
  survives the float passes; the ops those passes remove are refused naming the node and
  the pass to run;
* ``timing.HOP_COST`` covers exactly the registry's ops that run in the Lava time loop;
* stage kinds resolve their process class and output port in one place, and the source's
  encoding is one of ``SourceEncoding``'s values at both levels;
* fixed-point and floating-point lowerings of one model build the same plan (stages,
  kinds, lags, delay lines, wiring); only the numbers differ.
"""
from __future__ import annotations

import numpy as np
import pytest

from compiler.encoding import encode_float, encode_integer
from compiler.frontend import model_to_ir
from compiler.ir import Graph, Node
from compiler.ops import FLOAT, OPS, QUANTIZED, missing_handlers, ops_at
from compiler.passes import float_passes
from compiler.passes.quantize import quantize
from deploy.lava import (FixedPointParams, FloatParams, LoweringError, Lowering, SourceEncoding,
                         StageKind, lower, lower_float)
from deploy.lava.build import build
from deploy.lava.timing import HOP_COST, node_lags
from spikformer_neuro.testing import densely_firing_model, random_input
from spikformer_neuro.zoo import get_config


@pytest.fixture(scope="module")
def graphs():
    """(float graph after the passes, its quantized graph) per test configuration."""
    out = {}
    for name in ("test-micro", "test-micro-events"):
        fg = float_passes(model_to_ir(densely_firing_model(get_config(name), 0)))
        out[name] = (fg, quantize(fg))
    return out


# -- the registry ----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [QUANTIZED, FLOAT], ids=lambda lv: lv.value)
def test_one_handler_per_op_at_both_levels(level):
    assert missing_handlers(Lowering, level, after_passes=True) == ()
    strategy = {QUANTIZED: FixedPointParams, FLOAT: FloatParams}[level]
    assert set(strategy().ops) == set(ops_at(level, after_passes=True))


def test_hop_cost_covers_every_op_of_the_time_loop():
    """Every op that runs inside the Lava time loop, at either level, after the float passes,
    has a hop cost; the head (after_time_loop) and the ops the passes remove have none."""
    in_loop = {op for level in (FLOAT, QUANTIZED) for op in ops_at(level, after_passes=True)
               if not OPS[op].after_time_loop}
    assert set(HOP_COST) == in_loop
    assert not {op for op, s in OPS.items() if s.after_time_loop or s.removed_by} & set(HOP_COST)
    assert {op for op, c in HOP_COST.items() if c} == {"conv2d", "sumpool2d"}  # Conv hops


def test_removed_float_ops_are_refused_naming_the_node_and_the_pass():
    for op, attrs, params in (
            ("batchnorm", {"eps": 1e-5}, {k: np.ones(2) for k in ("gamma", "beta", "mean", "var")}),
            ("maxpool2d", {"kernel": 1, "stride": 1, "padding": 0}, {})):
        g = Graph(meta={"time_steps": 2, "num_classes": 2})
        g.add(Node("input", "input", [], (2, 1, 1), attrs={"encoding": "analog"}))
        g.add(Node("x", op, ["input"], (2, 1, 1), params=params, attrs=attrs))
        g.add(Node("mean", "token_time_mean", ["x"], (2,)))
        g.add(Node("head", "affine", ["mean"], (2,), params={"weight": np.eye(2)}))
        g.add(Node("out", "output", ["head"], (2,)))
        with pytest.raises(LoweringError, match=rf"'x' \({op}\): run compiler.passes.float_passes"):
            lower_float(g)
        with pytest.raises(LoweringError, match=rf"'x' \({op}\).*quantize"):
            lower(g)


def test_each_lowering_refuses_the_other_level(graphs):
    fg, q = graphs["test-micro"]
    with pytest.raises(LoweringError, match=r"'sps.stages.0.lif' \(lif\).*quantize"):
        lower(fg)
    with pytest.raises(LoweringError, match=r"\(loihi_lif\).*floating-point Lava target"):
        lower_float(q)


# -- stage kinds and source encodings --------------------------------------------------------
def test_stage_kinds_resolve_process_and_out_port(graphs):
    fg, q = graphs["test-micro"]
    net = lower(q)
    assert {s.kind for s in net.stages.values()} == set(StageKind)
    built = build(net, encode_integer(q, random_input(get_config("test-micro"), batch=1)))
    for st in net.stages.values():
        proc = built.processes[st.name]
        assert type(proc) is st.kind.process, st.name
        if st.kind.out_port is None:
            assert st.kind is StageKind.READOUT
        else:
            assert tuple(getattr(proc, st.kind.out_port).shape) == st.shape, st.name
        for src, port in st.inputs:
            assert hasattr(proc, port), (st.name, port)
    assert set(net.probe_names()) == {n for n, s in net.providers.items()
                                      if net.stages[s].kind is not StageKind.READOUT}


def test_source_encodings_are_explicit(graphs):
    for name, want in (("test-micro", SourceEncoding.GRADED),
                       ("test-micro-events", SourceEncoding.SPIKES)):
        fg, q = graphs[name]
        for net in (lower(q), lower_float(fg)):
            assert net.input_encoding is want
            assert net.stages["input"].params["encoding"] is want
    # the IR's encodings of the other level are refused, naming the node
    fg, q = graphs["test-micro"]
    g = fg.copy()
    g["input"].attrs["encoding"] = "graded"
    with pytest.raises(LoweringError, match=r"'input' \(input\).*'graded' is not a float input "
                                            r"encoding \('analog' or 'counts' or 'spikes'\)"):
        lower_float(g)
    g = q.copy()
    g["input"].attrs["encoding"] = "analog"
    with pytest.raises(LoweringError, match=r"'input' \(input\).*'analog' is not a quantized "
                                            r"input encoding \('graded' or 'counts' or 'spikes'\)"):
        lower(g)


# -- one plan for both numeric kinds ---------------------------------------------------------
@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_fixed_and_float_lowerings_build_the_same_plan(graphs, name):
    fg, q = graphs[name]
    fixed, flt = lower(q), lower_float(fg)
    assert (fixed.numeric, flt.numeric) == ("fixed", "float")
    assert list(fixed.stages) == list(flt.stages)
    for a, b in zip(fixed.stages.values(), flt.stages.values()):
        assert (a.kind, a.node, a.lag, a.inputs, a.shape) == (b.kind, b.node, b.lag, b.inputs,
                                                               b.shape), a.name
    assert fixed.lags == flt.lags == node_lags(q) == node_lags(fg)
    assert fixed.providers == flt.providers and fixed.max_lag == flt.max_lag
    # the numbers: integer Conv weights / LIF parameters vs float64 ones
    conv = next(s for s in fixed.stages.values() if s.kind is StageKind.CONV)
    assert fixed.stages[conv.name].params["weight"].dtype == np.int32
    assert flt.stages[conv.name].params["weight"].dtype == np.float64
    lif = next(s.name for s in fixed.stages.values() if s.kind is StageKind.LIF_RESET)
    assert isinstance(fixed.stages[lif].params["dv"], int)
    assert isinstance(flt.stages[lif].params["dv"], float)
    assert fixed.stages["readout"].params["divisor"] == 1                       # the sum
    readout_in = fg[fg["readout"].inputs[0]]
    assert flt.stages["readout"].params["divisor"] == \
        fg.time_steps * int(np.prod(readout_in.shape[1:]))                     # the mean
    x = random_input(get_config(name), batch=1)
    assert encode_float(fg, x).shape == encode_integer(q, x).shape


def test_head_must_follow_the_readout():
    g = Graph(meta={"time_steps": 2, "num_classes": 2})
    g.add(Node("input", "input", [], (2, 1, 1), attrs={"encoding": "analog"}))
    g.add(Node("c", "conv2d", ["input"], (2, 1, 1), params={"weight": np.ones((2, 2, 1, 1))},
               attrs={"stride": 1, "padding": 0, "groups": 1}))
    g.add(Node("l", "lif", ["c"], (2, 1, 1), attrs={"tau": 2.0, "v_threshold": 1.0}))
    g.add(Node("mean", "token_time_mean", ["l"], (2,)))
    g.add(Node("head", "affine", ["mean"], (2,), params={"weight": np.eye(2)}))
    g.add(Node("out", "output", ["head"], (2,)))
    net = lower_float(g.validate())
    assert [s.kind for s in net.stages.values()] == [
        StageKind.SOURCE, StageKind.CONV, StageKind.LIF_RESET, StageKind.READOUT]
    assert "head" not in net.lags and "out" not in net.lags      # after the time loop
    g2 = g.copy()
    g2.nodes["mean"].inputs = ["c"]                              # the bias-less conv, fine
    g2.nodes.pop("l")
    assert lower_float(g2.validate()).readout == "mean"
    g3 = g.copy()
    g3.add(Node("extra", "affine", ["l"], (2,), params={"weight": np.ones((2, 2))}))
    with pytest.raises(LoweringError):
        lower_float(g3)
