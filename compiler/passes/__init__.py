"""Graph -> Graph rewrites on the float IR. Each pass is a pure function: it never mutates its
input and returns a new, validated Graph whose surviving nodes keep their names.

- :func:`fold_batchnorm`: conv2d/affine + batchnorm -> one conv2d/affine (float64 params).
- :func:`maxpool_to_sumpool`: maxpool2d over binary spikes -> sumpool2d + threshold(1.0).

``FLOAT_PASSES`` is the pipeline in order; every op whose registry entry says ``removed_by``
(compiler/ops.py) names one of them, so their output holds only
``ops_at(FLOAT, after_passes=True)`` (tests/test_compiler/test_passes_float.py checks both).
"""
from __future__ import annotations

from ..ir import Graph
from .fold_batchnorm import fold_batchnorm
from .maxpool_to_sumpool import maxpool_to_sumpool

__all__ = ["FLOAT_PASSES", "fold_batchnorm", "maxpool_to_sumpool", "float_passes"]

#: the float-level pipeline in order: BN folding, then the max-pool rewrite
FLOAT_PASSES = (fold_batchnorm, maxpool_to_sumpool)


def float_passes(graph: Graph) -> Graph:
    """The float-level pipeline in order: BN folding, then the max-pool rewrite."""
    for run_pass in FLOAT_PASSES:
        graph = run_pass(graph)
    return graph
