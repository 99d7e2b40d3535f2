"""Graph -> Graph rewrites on the float IR. Each pass is a pure function: it never mutates its
input and returns a new, validated Graph whose surviving nodes keep their names.

- :func:`fold_batchnorm`: conv2d/affine + batchnorm -> one conv2d/affine (float64 params).
- :func:`maxpool_to_sumpool`: maxpool2d over binary spikes -> sumpool2d + threshold(1.0).
"""
from __future__ import annotations

from ..ir import Graph
from .fold_batchnorm import fold_batchnorm
from .maxpool_to_sumpool import maxpool_to_sumpool

__all__ = ["fold_batchnorm", "maxpool_to_sumpool", "float_passes"]


def float_passes(graph: Graph) -> Graph:
    """The float-level pipeline in order: BN folding, then the max-pool rewrite."""
    return maxpool_to_sumpool(fold_batchnorm(graph))
