"""Every consumer of the op registry (compiler/ops.py) with the level it serves: the list the
completeness test (test_compiler/test_op_registry.py) and the new-op cost test walk."""
from __future__ import annotations

from compiler.float_exec import FloatExecutor
from compiler.nir.export import _Exporter
from compiler.ops import FLOAT, QUANTIZED
from compiler.passes.quantize import Quantizer, ValueRange
from compiler.reference import ReferenceExecutor
from compiler.reports.flops import SynapticCounter
from compiler.resources import Footprint

#: (consumer, handler class, level it serves, only after the float passes?)
CONSUMERS = [
    ("float executor", FloatExecutor, FLOAT, False),
    ("reference executor", ReferenceExecutor, QUANTIZED, False),
    ("quantize: float -> Loihi rewrite", Quantizer, FLOAT, True),
    ("quantize: value ranges", ValueRange, QUANTIZED, False),
    ("NIR export", _Exporter, FLOAT, True),
    ("FLOP / energy count (float graphs)", SynapticCounter, FLOAT, False),
    ("FLOP / energy count (quantized graphs)", SynapticCounter, QUANTIZED, False),
    ("Loihi 2 resource estimate", Footprint, QUANTIZED, False),
]


def lava_consumers():
    """The Lava lowering (imports Lava: only for tests marked ``lava``)."""
    from deploy.lava.lowering import Lowering
    return [("Lava lowering (fixed point)", Lowering, QUANTIZED, True),
            ("Lava lowering (floating point)", Lowering, FLOAT, True)]


def all_consumers():
    return CONSUMERS + lava_consumers()
