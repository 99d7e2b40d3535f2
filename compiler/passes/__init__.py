"""Graph -> Graph rewrites on the float IR. Each pass is a pure function: it never mutates its
input and returns a new, validated Graph whose surviving nodes keep their names.

- :func:`fold_batchnorm`: conv2d/affine + batchnorm -> one conv2d/affine (float64 params).
- :func:`maxpool_to_sumpool`: maxpool2d over binary spikes -> sumpool2d + threshold(1.0).
- :func:`distribute_membrane`: membrane streams (sums of conv outputs, their token mean) ->
  each reading neuron's own conv copies (the spike-driven family's membrane shortcut).

``FLOAT_PASSES`` is the pipeline in order; every op whose registry entry says ``removed_by``
(compiler/ops.py) names one of them, so their output holds only
``ops_at(FLOAT, after_passes=True)`` (tests/test_compiler/test_passes_float.py checks both).
"""
from __future__ import annotations

from ..ir import Graph
from .fold_batchnorm import fold_batchnorm
from .distribute_membrane import distribute_membrane
from .maxpool_to_sumpool import maxpool_to_sumpool

__all__ = ["FLOAT_PASSES", "distribute_membrane", "fold_batchnorm", "maxpool_to_sumpool",
           "float_passes"]

#: the float-level pipeline in order: BN folding, the max-pool rewrite, the membrane fan-in
FLOAT_PASSES = (fold_batchnorm, maxpool_to_sumpool, distribute_membrane)


def float_passes(graph: Graph) -> Graph:
    """The float-level pipeline in order (``FLOAT_PASSES``)."""
    for run_pass in FLOAT_PASSES:
        graph = run_pass(graph)
    return graph
