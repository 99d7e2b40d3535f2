"""The op registry (compiler/ops.py) is the one description of every op: each consumer has a
handler for every op of the levels it serves, names no op the registry lacks, and
``Graph.validate`` enforces the registry's attributes and metadata."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import Graph, IRError, Node
from compiler.ops import FLOAT, OPS, QUANTIZED, handled_ops, missing_handlers, ops_at
from compiler.passes import FLOAT_PASSES
from compiler.reference import ReferenceExecutor
from support.consumers import CONSUMERS, all_consumers, lava_consumers


@pytest.mark.parametrize("name,cls,level,after_passes", CONSUMERS)
def test_every_op_of_the_level_has_a_handler(name, cls, level, after_passes):
    assert missing_handlers(cls, level, after_passes=after_passes) == (), name


@pytest.mark.lava
def test_lava_lowering_and_timing_cover_their_ops():
    from deploy.lava.timing import HOP_COST
    for name, cls, level, after_passes in lava_consumers():
        assert missing_handlers(cls, level, after_passes=after_passes) == (), name
    in_loop = {op for level in (FLOAT, QUANTIZED) for op in ops_at(level, after_passes=True)
               if not OPS[op].after_time_loop}
    assert set(HOP_COST) == in_loop


@pytest.mark.lava
def test_no_consumer_handles_an_unregistered_op():
    for name, cls, _, _ in all_consumers():
        stray = [a[3:] for a in dir(cls) if a.startswith("op_") and a[3:] not in OPS]
        assert stray == [], f"{name} handles ops the registry does not know: {stray}"


def test_registry_is_consistent():
    sources = [op for op, spec in OPS.items() if spec.is_source]
    assert sources == ["input"]
    pass_names = {p.__name__ for p in FLOAT_PASSES}
    for op, spec in OPS.items():
        assert spec.name == op
        assert spec.levels, op
        if spec.removed_by:
            assert spec.levels == {FLOAT} and spec.removed_by in pass_names, op
        for a in spec.attrs:
            assert a.required_at <= a.levels, (op, a.name)
    assert OPS["spiking_attention"].ordered_inputs == ("q", "k", "v")
    # every level has exactly one readout op reducing time
    for level in (FLOAT, QUANTIZED):
        assert [op for op in ops_at(level) if OPS[op].reduces_time] in (
            ["token_time_mean"], ["token_time_sum"])


def test_handled_ops_reads_handlers():
    assert set(handled_ops(ReferenceExecutor)) == set(ops_at(QUANTIZED))


# -- Graph.validate against the registry ------------------------------------------------------

def _float_graph(**lif_attrs):
    g = Graph(meta={"time_steps": 2, "stage": "float"})
    g.add(Node("in", "input", [], (1, 2, 2), {}, {"encoding": "spikes"}))
    g.add(Node("c", "conv2d", ["in"], (1, 2, 2), {"weight": np.ones((1, 1, 1, 1))},
               {"stride": 1, "padding": 0, "groups": 1}))
    g.add(Node("l", "lif", ["c"], (1, 2, 2), {}, {"tau": 2.0, "v_threshold": 1.0, **lif_attrs}))
    g.add(Node("m", "token_time_mean", ["l"], (1,)))
    g.add(Node("h", "affine", ["m"], (2,), {"weight": np.ones((2, 1))}))
    g.add(Node("out", "output", ["h"], (2,)))
    return g


def test_validate_accepts_a_well_formed_graph():
    _float_graph(r=2.0, spike_if=">").validate()


@pytest.mark.parametrize("attrs,match", [
    ({"spike_if": "=>"}, r"node 'l' \(lif\): attribute 'spike_if' must be one of"),
    ({"r": "2"}, r"node 'l' \(lif\): attribute 'r' must be a number"),
    ({"tua": 2.0}, r"node 'l' \(lif\): unknown attribute 'tua'"),
])
def test_validate_checks_attributes(attrs, match):
    with pytest.raises(IRError, match=match):
        _float_graph(**attrs).validate()


def test_validate_checks_required_attributes_params_and_levels():
    g = _float_graph()
    del g["c"].attrs["groups"]
    with pytest.raises(IRError, match=r"node 'c' \(conv2d\): missing attribute 'groups'"):
        g.validate()
    g = _float_graph()
    g["c"].params["gain"] = np.ones(1)
    with pytest.raises(IRError, match=r"node 'c' \(conv2d\): unknown parameter 'gain'"):
        g.validate()
    g = _float_graph()
    g["c"].attrs["graded_input"] = True  # a quantized-level attribute on a float graph
    with pytest.raises(IRError, match="unknown attribute 'graded_input' for a float graph"):
        g.validate()
    g = _float_graph()
    g.meta["stage"] = "quantized"
    with pytest.raises(IRError, match=r"node 'l' \(lif\): not an op of quantized graphs"):
        g.validate()


@pytest.mark.parametrize("meta,match", [
    ({"time_steps": 0}, "'time_steps' must be an integer >= 1"),
    ({"time_steps": 2.5}, "'time_steps' must be an integer >= 1"),
    ({"time_steps": None}, "'time_steps' must be an integer >= 1"),
    ({"num_classes": 0}, "'num_classes' must be an integer >= 1"),
    ({"stage": "fp"}, "'stage' must be one of"),
])
def test_validate_checks_meta(meta, match):
    g = _float_graph()
    g.meta.update(meta)
    with pytest.raises(IRError, match=match):
        g.validate()
    if "time_steps" in meta:  # the checked accessor every consumer uses raises too
        with pytest.raises(IRError, match=match):
            g.time_steps  # noqa: B018


def test_missing_time_steps_is_named():
    g = _float_graph()
    del g.meta["time_steps"]
    with pytest.raises(IRError, match="graph meta lacks 'time_steps'"):
        g.validate()
    with pytest.raises(IRError, match="graph meta lacks 'time_steps'"):
        g.time_steps  # noqa: B018
