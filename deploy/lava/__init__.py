"""Lava backend: lower a quantized Spikformer graph into Lava 0.10 processes and
run it (simulator, or Loihi 2 with Intel's lava-loihi), spike for spike equal
to ``compiler.reference.run_reference``.

    from deploy.lava import lower, run
    net = lower(quantized_graph)
    res = run(net, encode_input(quantized_graph, images), probes=net.probe_names())
    res.logits, res.predictions, res.outputs["blocks.0.attn.q.lif"]   # [T, B, C, H, W]

See docs/lava-backend.md.
"""
from deploy.lava.lowering import LavaNetwork, LoweringError, Stage, lower
from deploy.lava.runner import LavaResult, run
from deploy.lava.targets import (DEFAULT_TARGET, TARGETS, LoihiUnavailableError,
                                 loihi_extension_available, run_config)

__all__ = ["DEFAULT_TARGET", "LavaNetwork", "LavaResult", "LoihiUnavailableError",
           "LoweringError", "Stage", "TARGETS", "loihi_extension_available", "lower", "run",
           "run_config"]
