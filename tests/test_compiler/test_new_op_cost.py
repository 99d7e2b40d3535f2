"""What a new op costs, measured: ``spike_or`` (1 where any input spikes) added end to end.

The op is one registry entry plus one handler in each consumer that the completeness test
(test_op_registry.py) names -- nothing else. With exactly those, a graph using it validates,
runs in the float executor, quantizes, runs in the integer reference executor, exports to NIR
and back, and runs in the Lava simulator spike for spike equal to the reference. The list
``COST`` below is the bill; docs/architecture.md ("Adding an op") quotes it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler import ops
from compiler.exact.values import IntSeq
from compiler.float_exec import FloatExecutor, run_float
from compiler.ir import Graph, Node
from compiler.nir.export import _Exporter, writes
from compiler.ops import BOTH, FLOAT, QUANTIZED, OpSpec, Output, missing_handlers
from compiler.passes import float_passes
from compiler.passes.quantize import Quantizer, ValueRange, quantize
from compiler.reference import ReferenceExecutor, run_reference
from compiler.reports.flops import SynapticCounter, synaptic_layers
from compiler.resources import Footprint, network_size
from loihi_numerics import fixed_point as fx

pytestmark = pytest.mark.lava

SPEC = OpSpec("spike_or", BOTH, "1 where any input spikes (OR of binary streams)",
              output=Output.SPIKES)


# -- the handlers: one per consumer ------------------------------------------------------------
def float_exec(self, node, v):                     # compiler/float_exec.py
    return type(v)((v.data >= 1).to(self.dtype), v.layout, v.timed, tuple(node.shape))


def reference(self, node, x):                       # compiler/reference.py
    return IntSeq((x.data >= 1).to(torch.float32), 1, binary=True)


def quantizer(self, node):                          # compiler/passes/quantize.py (rewrite)
    self.emit(node.copy())


def value_range(self, node, x):                     # compiler/passes/quantize.py (bounds)
    return 1.0


@writes("Threshold")                                # compiler/nir/export.py
def nir_export(self, node):
    import nir
    from compiler.nir import dialect as d
    stock, exact = d.stock_threshold(1.0, True)
    self.add(node.name, nir.Threshold(threshold=np.full(tuple(node.shape), stock),
                                      metadata=self.meta(node, **{d.KEY_SPIKE_IF: ">=",
                                                                  d.KEY_EXACT: exact})))
    self.connect_inputs(node, node.name)


def lowering(self, node):                           # deploy/lava/lowering.py
    from deploy.lava.stages import StageKind
    # a memoryless LIF: v = 64 * (number of input spikes), fire on v > 0
    params = dict(shape=fx.lava_shape(node.shape), du=4095, dv=4095, vth=0, bias_mant=0,
                  bias_exp=0)
    return self.stage(node, StageKind.LIF, params, self.aligned_inputs(node, "a_in"))


COST = [  # (file, what)
    ("compiler/ops.py", "OPS entry"),
    ("compiler/float_exec.py", "FloatExecutor.op_spike_or"),
    ("compiler/reference.py", "ReferenceExecutor.op_spike_or"),
    ("compiler/passes/quantize.py", "Quantizer.op_spike_or, ValueRange.op_spike_or"),
    ("compiler/nir/export.py", "_Exporter.op_spike_or"),
    ("compiler/reports/flops.py", "SynapticCounter.op_spike_or"),
    ("compiler/resources.py", "Footprint.op_spike_or"),
    ("deploy/lava/lowering.py", "Lowering.op_spike_or"),
    ("deploy/lava/timing.py", "HOP_COST entry"),
]


@pytest.fixture
def spike_or(monkeypatch):
    from deploy.lava import timing
    from deploy.lava.lowering import Lowering
    monkeypatch.setitem(ops.OPS, "spike_or", SPEC)
    for cls, fn in ((FloatExecutor, float_exec), (ReferenceExecutor, reference),
                    (Quantizer, quantizer), (ValueRange, value_range), (_Exporter, nir_export),
                    (Lowering, lowering)):
        monkeypatch.setattr(cls, "op_spike_or", fn, raising=False)
    monkeypatch.setattr(SynapticCounter, "op_spike_or", SynapticCounter.no_synapses,
                        raising=False)
    monkeypatch.setattr(Footprint, "op_spike_or", Footprint.op_loihi_lif, raising=False)
    monkeypatch.setitem(timing.HOP_COST, "spike_or", 0)
    return Lowering


def _graph() -> Graph:
    rng = np.random.default_rng(3)
    g = Graph(meta={"time_steps": 4, "stage": "float", "num_classes": 3})
    g.add(Node("in", "input", [], (2, 3, 3), {}, {"encoding": "spikes"}))
    for branch in ("a", "b"):
        g.add(Node(f"c{branch}", "conv2d", ["in"], (4, 3, 3),
                   {"weight": rng.normal(0.6, 0.5, (4, 2, 1, 1))},
                   {"stride": 1, "padding": 0, "groups": 1}))
        g.add(Node(f"l{branch}", "lif", [f"c{branch}"], (4, 3, 3), {},
                   {"tau": 2.0, "v_threshold": 1.0}))
    g.add(Node("or", "spike_or", ["la", "lb"], (4, 3, 3)))
    g.add(Node("m", "token_time_mean", ["or"], (4,)))
    g.add(Node("h", "affine", ["m"], (3,), {"weight": rng.normal(0, 1, (3, 4))}))
    g.add(Node("out", "output", ["h"], (3,)))
    return g.validate()


def test_a_new_op_costs_one_entry_per_consumer_and_runs_end_to_end(spike_or, tmp_path):
    from compiler.nir import read_nir_file, write_nir_file
    from compiler.serialize import graph_to_bytes
    from compiler.encoding import encode_integer
    from deploy.lava import lower, run
    from support.consumers import all_consumers

    # the completeness test is satisfied by exactly the handlers above
    for name, cls, level, after_passes in all_consumers():
        assert missing_handlers(cls, level, after_passes=after_passes) == (), name
    assert len(COST) == 9

    x = (torch.rand(5, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    g = float_passes(_graph())
    f = run_float(g, x, record=["la", "lb", "or"])
    assert torch.equal(f.outputs["or"], ((f.outputs["la"] + f.outputs["lb"]) >= 1).float())
    assert 0 < f.outputs["or"].mean() < 1

    q = quantize(g)
    assert q["or"].op == "spike_or"
    ref = run_reference(q, x.numpy(), record=["la", "lb", "or"])
    assert np.array_equal(ref.outputs["or"], (ref.outputs["la"] | ref.outputs["lb"]))
    assert synaptic_layers(q) and network_size(q)["neurons"] > 0

    # NIR: exported as a stock Threshold and read back to the same graph
    path = tmp_path / "or.nir"
    write_nir_file(g, path)
    assert graph_to_bytes(read_nir_file(path)) == graph_to_bytes(g)

    # Lava (accelerated simulator) equals the reference, every spike and logit
    x_seq = encode_integer(q, x.numpy())
    probes = ["la", "lb", "or"]
    lava = run(lower(q), x_seq, target="lava-sim", probes=probes)
    ref = run_reference(q, x_seq, record=probes, encoded=True)
    for name in probes:
        assert np.array_equal(lava.outputs[name], ref.outputs[name]), name
    assert np.array_equal(lava.logits, ref.logits)
