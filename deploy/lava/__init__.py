"""Lava backend: lower a Spikformer graph into Lava 0.10 processes and run it
(simulator, or Loihi 2 with Intel's lava-loihi), spike for spike equal to
``compiler.reference.run_reference`` for quantized graphs.

    from deploy.lava import lower, run
    net = lower(quantized_graph)
    res = run(net, encode_integer(quantized_graph, images), probes=net.probe_names())
    res.logits, res.predictions, res.outputs["blocks.0.attn.q.lif"]   # [T, B, C, H, W]

Float graphs (after ``compiler.passes.float_passes``) run with Lava's
floating-point models on target ``lava-sim-float``::

    from compiler.encoding import encode_float
    from deploy.lava import lower_float, run
    res = run(lower_float(float_graph), encode_float(float_graph, images))

Both lowerings are one :class:`Lowering` (one ``op_<name>`` handler per op) with a
parameter strategy per numeric kind (``deploy.lava.params``). See docs/lava-backend.md.
"""
from deploy.lava.lowering import Lowering, lower, lower_float
from deploy.lava.params import FixedPointParams, FloatParams
from deploy.lava.runner import LavaResult, run
from deploy.lava.stages import LavaNetwork, LoweringError, SourceEncoding, Stage, StageKind
from deploy.lava.targets import (DEFAULT_TARGET, FLOAT_TARGET, FLOAT_TARGETS, TARGETS,
                                 LoihiUnavailableError, loihi_extension_available, run_config)

__all__ = ["DEFAULT_TARGET", "FLOAT_TARGET", "FLOAT_TARGETS", "FixedPointParams",
           "FloatParams", "LavaNetwork", "LavaResult", "LoihiUnavailableError", "Lowering",
           "LoweringError", "SourceEncoding", "Stage", "StageKind", "TARGETS",
           "loihi_extension_available", "lower", "lower_float", "run", "run_config"]
