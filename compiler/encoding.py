"""Input encoding, in one place for every executor and backend.

A batch reaches a graph as the model takes it:

- ``[B, C, H, W]`` static images (values in [0, 1]) when the input node's encoding is
  ``analog`` (float graphs) or ``graded`` (quantized graphs): normalised per channel with
  the node's ``mean``/``std`` (absent: 0 / 1) and repeated over the T time steps;
- ``[B, T, C, H, W]`` binary event frames when the encoding is ``spikes``.

:func:`check_batch` validates the shape (the same message everywhere),
:func:`normalisation` reads the per-channel statistics, :func:`encode_float` makes the
float64 sequence ``[T, B, C, H, W]`` that Lava's floating-point models stream, and
:func:`encode_integer` the integer sequence of quantized graphs (``input_scale`` levels per
unit, rounded half to even). The float executor normalises in torch with the same
statistics, in the model's own dtype, so that it stays bit-identical to the PyTorch model.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .ir import Graph, IRError, Node

ANALOG_ENCODINGS = ("analog", "graded")   # float graphs / quantized graphs
SPIKES = "spikes"


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def where(node: Node) -> str:
    return f"node '{node.name}' (input)"


def check_batch(graph: Graph, shape: Tuple[int, ...]) -> str:
    """The input node's encoding, after checking that a batch of ``shape`` fits it."""
    node = graph.input_node
    want = tuple(int(s) for s in node.shape)
    dims = ", ".join(map(str, want))
    enc = node.attrs.get("encoding")
    shape = tuple(int(s) for s in shape)
    if enc == SPIKES:
        steps = graph.time_steps
        if len(shape) != 5 or shape[2:] != want:
            raise ValueError(f"{where(node)}: expected event frames [B, {steps}, {dims}], "
                             f"got {list(shape)}")
        if shape[1] != steps:
            raise ValueError(f"{where(node)}: expected event frames [B, {steps}, {dims}], "
                             f"got {list(shape)}: the graph runs {steps} time steps, the "
                             f"events have {shape[1]}")
    elif enc in ANALOG_ENCODINGS:
        if len(shape) != 4 or shape[1:] != want:
            raise ValueError(f"{where(node)}: expected images [B, {dims}], got {list(shape)}")
    else:
        raise IRError(f"{where(node)}: unknown encoding {enc!r} (expected one of "
                      f"{[*ANALOG_ENCODINGS, SPIKES]})")
    return enc


def normalisation(node: Node) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Per-channel ``(mean, std)`` as float64 ``[C, 1, 1]`` arrays, or None when the node
    has neither (the identity)."""
    if "mean" not in node.attrs and "std" not in node.attrs:
        return None
    c = int(node.shape[0])
    mean = np.asarray(node.attrs.get("mean", [0.0] * c), dtype=np.float64)
    std = np.asarray(node.attrs.get("std", [1.0] * c), dtype=np.float64)
    if mean.shape != (c,) or std.shape != (c,):
        raise IRError(f"{where(node)}: mean/std need {c} values (one per channel)")
    return mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)


def encode_float(graph: Graph, x) -> np.ndarray:
    """The float64 input sequence ``[T, B, C, H, W]``: images normalised and repeated over
    T, or event frames moved time-first."""
    x = _as_numpy(x).astype(np.float64)
    enc = check_batch(graph, x.shape)
    if enc == SPIKES:
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))
    seq = np.broadcast_to(x, (graph.time_steps,) + x.shape)
    stats = normalisation(graph.input_node)
    if stats is not None:
        seq = (seq - stats[0]) / stats[1]
    return np.ascontiguousarray(seq)


def encode_integer(graph: Graph, x) -> np.ndarray:
    """The integer input sequence ``[T, B, C, H, W]`` of a quantized graph.

    Static images (values in [0, 1]) are normalised, scaled by the input node's
    ``input_scale`` and rounded to the nearest integer (half to even), then repeated over
    T. Event frames must already be binary.
    """
    x = _as_numpy(x).astype(np.float64)
    node = graph.input_node
    enc = check_batch(graph, x.shape)
    if enc == SPIKES:
        bad = (x != 0) & (x != 1)
        if bad.any():
            raise ValueError(f"{where(node)}: event frames must be binary; found value "
                             f"{x[bad][0]}")
        return x.transpose(1, 0, 2, 3, 4).astype(np.int64)
    if x.size and not ((x >= 0) & (x <= 1)).all():  # written so that NaN fails too
        found = "NaN" if np.isnan(x).any() else f"{x.min():.4g}..{x.max():.4g}"
        raise ValueError(f"{where(node)}: image values must lie in [0, 1] (found {found}); "
                         "the graded encoding is calibrated for that range")
    if "input_scale" not in node.attrs:
        raise IRError(f"{where(node)}: a graded input needs 'input_scale' (run the quantize "
                      "pass)")
    stats = normalisation(node)
    if stats is not None:
        x = (x - stats[0]) / stats[1]
    x_int = np.round(x * float(node.attrs["input_scale"])).astype(np.int64)
    return np.broadcast_to(x_int, (graph.time_steps,) + x_int.shape).copy()


__all__ = ["check_batch", "normalisation", "encode_float", "encode_integer"]
