"""Fold every eval-mode batchnorm into the conv2d / affine that feeds it.

For a producer with weight ``W`` (output channel first) and bias ``b`` (0 if absent) and a
batchnorm with ``gamma, beta, mean, var, eps``::

    s  = gamma / sqrt(var + eps)                 (per output channel)
    W' = W * s
    b' = (b - mean) * s + beta

The merged node keeps the producer's name, op, inputs and attributes; every reader of the
batchnorm reads it instead. Only a producer whose ONE consumer is the batchnorm can be
folded (another reader would see the rescaled values); anything else is an IRError that
names the batchnorm. A chain conv -> bn -> bn folds completely (bns are folded in order).

Precision: the folded parameters are computed AND stored in float64. Executed in float64,
the folded graph then differs from conv + BN only by reassociation (~1e-16 relative);
stored as float32 they would carry a fresh 2^-24 relative rounding per weight, which a
float64 run (and the fixed-point quantiser, which wants the real values) would see. A
float32 run casts each float64 parameter once, i.e. uses the correctly rounded float32 of
the exact folded value - never worse than folding in float32.
"""
from __future__ import annotations

import copy
from typing import Dict

import numpy as np

from ..ir import Graph, IRError, Node, non_finite
from ..ops import FLOAT, OPS

#: the float ops a batchnorm folds into: a weight (output channel first) and an optional bias
#: (conv2d, affine), read from the registry
FOLDABLE_PRODUCERS = tuple(op for op, s in OPS.items() if FLOAT in s.levels
                           and "weight" in s.params and "bias" in s.optional_params)


def _folded(prod: Node, bn: Node) -> Node:
    where = f"batchnorm '{bn.name}'"
    w = np.asarray(prod.params["weight"], dtype=np.float64)
    out_ch = w.shape[0]
    stats = {k: np.asarray(bn.params[k], dtype=np.float64).reshape(-1)
             for k in ("gamma", "beta", "mean", "var")}
    for k, v in stats.items():
        if v.shape != (out_ch,):
            raise IRError(f"{where}: parameter '{k}' has {v.size} values but '{prod.name}' has "
                          f"{out_ch} output channels")
    eps = float(bn.attrs["eps"])
    denom = stats["var"] + eps
    if not np.all(denom > 0):
        raise IRError(f"{where}: var + eps must be > 0 for every channel to fold it")
    scale = stats["gamma"] / np.sqrt(denom)
    bias = prod.params.get("bias")
    b = np.zeros(out_ch) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape != (out_ch,):
        raise IRError(f"{where}: '{prod.name}' has a bias of {b.size} values for {out_ch} "
                      "output channels")
    new_w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    new_b = (b - stats["mean"]) * scale + stats["beta"]
    for k, v in (("weight", new_w), ("bias", new_b)):
        problem = non_finite(v)
        if problem:  # finite inputs (Graph.validate) whose products overflow float64
            raise IRError(f"{where}: folding it into '{prod.name}' ({prod.op}) gives a {k} that "
                          f"{problem}: gamma / sqrt(var + eps) times the weights overflows; "
                          "the BatchNorm statistics are unusable (fix or retrain the model)")
    params = {k: v.copy() for k, v in prod.params.items() if k not in ("weight", "bias")}
    params["weight"] = np.ascontiguousarray(new_w)
    params["bias"] = np.ascontiguousarray(new_b)
    return Node(prod.name, prod.op, list(prod.inputs), tuple(bn.shape), params,
                copy.deepcopy(prod.attrs))


def fold_batchnorm(graph: Graph) -> Graph:
    """A new graph with every batchnorm folded into its conv2d/affine producer."""
    nodes: Dict[str, Node] = {n.name: n.copy() for n in graph}  # insertion order = topological
    for bn_name in [n.name for n in graph if n.op == "batchnorm"]:
        bn = nodes[bn_name]
        where = f"batchnorm '{bn_name}'"
        if len(bn.inputs) != 1:
            raise IRError(f"{where} cannot be folded: it sums {len(bn.inputs)} inputs "
                          f"{bn.inputs}; folding needs exactly one conv2d/affine producer")
        prod = nodes[bn.inputs[0]]
        if prod.op not in FOLDABLE_PRODUCERS:
            raise IRError(f"{where} cannot be folded: its input '{prod.name}' is a {prod.op}, "
                          f"not one of {list(FOLDABLE_PRODUCERS)}")
        others = [n.name for n in nodes.values() if prod.name in n.inputs and n.name != bn_name]
        if others:
            raise IRError(f"{where} cannot be folded: its input '{prod.name}' is also read by "
                          f"{others}, which would see the batchnorm's scaling")
        if prod.shape != bn.shape:
            raise IRError(f"{where}: shape {list(bn.shape)} differs from its input "
                          f"'{prod.name}' {list(prod.shape)}")
        nodes[prod.name] = _folded(prod, bn)
        del nodes[bn_name]
        for n in nodes.values():
            n.inputs = [prod.name if i == bn_name else i for i in n.inputs]
    out = graph.replace_nodes(nodes.values())
    out.meta["passes"] = [*graph.meta.get("passes", []), "fold_batchnorm"]
    return out.validate()
