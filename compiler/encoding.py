"""Input encoding, in one place for every executor and backend.

A batch reaches a graph as the model takes it:

- ``[B, C, H, W]`` static images (values in [0, 1]) when the input node's encoding is
  ``analog`` (float graphs) or ``graded`` (quantized graphs): normalised per channel with
  the node's ``mean``/``std`` (absent: 0 / 1) and repeated over the T time steps;
- ``[B, T, C, H, W]`` binary event frames when the encoding is ``spikes``;
- ``[B, T, C, H, W]`` event-count frames when the encoding is ``counts``: integers
  0..``max_count`` (events per pixel and bin, as spikingjelly's frames of CIFAR10-DVS hold
  them), not normalised; quantized graphs send them unchanged as graded integers.

A network whose input is a vector (a NIR ``Input`` of shape ``(K,)``: most MLPs) keeps the
map ``(K, 1, 1)`` in the IR, and says so in the graph meta :data:`SAMPLE_SHAPE` (``[K]``):
its batches are ``[B, K]`` analog samples or ``[B, T, K]`` spike trains
(:func:`sample_shape`, :func:`expected_batch`; the map form ``[B, K, 1, 1]`` is accepted too),
reshaped to the map layout by :func:`as_maps`.

:func:`check_batch` validates the shape (the same message everywhere; an empty batch is
refused), :func:`check_values` the numbers (real dtype, no NaN or infinity, named by sample),
:func:`check_samples` a user's batch as a whole (what a file given on the command line must
satisfy: shape, numbers, the [0, 1] range or binary spikes; every message names the batch and
the expected shape),
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
COUNTS = "counts"
#: encodings whose batches carry a time axis ``[B, T, ...]`` (the rest repeat one sample)
SEQUENCE_ENCODINGS = (SPIKES, COUNTS)
#: the largest count: a graded Lava payload is 24-bit
COUNT_LIMIT = 2 ** 23 - 1
#: graph meta: one sample's shape (one step's, for spikes) as users give it, where it is not
#: the input node's (C, H, W) map: ``[K]`` for a vector input held as the map (K, 1, 1)
SAMPLE_SHAPE = "sample_shape"


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def where(node: Node) -> str:
    return f"node '{node.name}' (input)"


def check_values(x: np.ndarray, what: str = "input") -> np.ndarray:
    """``x`` when it holds real, finite numbers; else a ValueError naming the problem and
    the first sample at fault (``what`` names the batch, e.g. the file it came from).
    Complex numbers would lose their imaginary part, strings and objects are no numbers."""
    kind = x.dtype.kind
    if kind not in "biuf":
        detail = {"c": "complex numbers, whose imaginary part would be dropped",
                  "U": "text", "S": "bytes", "O": "Python objects", "V": "structured records",
                  "M": "dates", "m": "time spans"}.get(kind, "not numbers")
        raise ValueError(f"{what} has dtype {x.dtype} ({detail}); give real numbers (a float "
                         "or integer array)")
    if kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.argwhere(~finite)[0] if x.ndim else np.zeros(0, dtype=int)
            value = x[tuple(bad)]
            count = int(finite.size - finite.sum())
            at = ""
            if len(bad):
                at = f" in sample {int(bad[0])}" + (f" at {[int(i) for i in bad[1:]]}"
                                                     if len(bad) > 1 else "")
            raise ValueError(f"{what} holds {count} NaN or infinite value"
                             f"{'s' if count > 1 else ''} (the first: {value}{at}); inputs "
                             "must be finite numbers: fix or drop those samples")
    return x


def _map_shape(node: Node) -> Tuple[int, ...]:
    return tuple(int(s) for s in node.shape)


def sample_shape(graph: Graph) -> Tuple[int, ...]:
    """One sample's shape (one time step's, for spike input) as users give it: ``(K,)`` for a
    network whose input is a vector (graph meta :data:`SAMPLE_SHAPE`), else the input node's
    ``(C, H, W)``."""
    node = graph.input_node
    want = _map_shape(node)
    given = graph.meta.get(SAMPLE_SHAPE)
    if given is None:
        return want
    try:
        shape = tuple(int(s) for s in given)
    except (TypeError, ValueError):
        shape = ()
    if not shape or int(np.prod(shape)) != int(np.prod(want)) or min(shape) < 1:
        raise IRError(f"graph meta '{SAMPLE_SHAPE}' {given!r} does not describe the "
                      f"{list(want)} values of {where(node)}")
    return shape


def is_flat(graph: Graph) -> bool:
    """Whether the network's input is not image shaped (a vector ``[K]``)."""
    return sample_shape(graph) != _map_shape(graph.input_node)


def encoding_of(graph: Graph) -> str:
    """The input node's encoding, checked: analog / graded, spikes, or counts (with its
    ``max_count``, and no normalisation)."""
    node = graph.input_node
    enc = node.attrs.get("encoding")
    if enc not in SEQUENCE_ENCODINGS and enc not in ANALOG_ENCODINGS:
        raise IRError(f"{where(node)}: unknown encoding {enc!r} (expected one of "
                      f"{[*ANALOG_ENCODINGS, *SEQUENCE_ENCODINGS]})")
    if enc == COUNTS:
        max_count(node)
        if "mean" in node.attrs or "std" in node.attrs:
            raise IRError(f"{where(node)}: event counts are not normalised; drop its "
                          "mean/std")
    return enc


def max_count(node: Node) -> int:
    """The largest event count a ``counts`` input node accepts (its proven input bound)."""
    count = node.attrs.get("max_count")
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or \
            not 1 <= int(count) <= COUNT_LIMIT:
        raise IRError(f"{where(node)}: an event-count input needs 'max_count', an integer in "
                      f"1..{COUNT_LIMIT} (the 24-bit graded payload); got {count!r}")
    return int(count)


def takes_sequences(graph: Graph) -> bool:
    """Whether a batch carries its own time axis ``[B, T, ...]`` (spikes or counts)."""
    return encoding_of(graph) in SEQUENCE_ENCODINGS


def _dims(shape: Tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def batch_kind(graph: Graph) -> str:
    """What a batch holds, in words: images, event frames, event-count frames, vectors,
    spike trains or count trains."""
    enc = encoding_of(graph)
    if is_flat(graph):
        return {SPIKES: "spike trains", COUNTS: "count trains"}.get(enc, "vectors")
    return {SPIKES: "event frames", COUNTS: "event-count frames"}.get(enc, "images")


def expected_batch(graph: Graph) -> str:
    """The batch shape users give, e.g. ``[B, 1, 8, 8]``, ``[B, 64]``, ``[B, 8, 64]``."""
    steps = (graph.time_steps,) if takes_sequences(graph) else ()
    return f"[B, {_dims(steps + sample_shape(graph))}]"


def describe_input(graph: Graph) -> str:
    """The expected batch in words, for messages: ``vectors [B, 64] with values in [0, 1]``."""
    enc = encoding_of(graph)
    if enc == SPIKES:
        rule = "of 0s and 1s"
    elif enc == COUNTS:
        rule = f"of integer counts 0..{max_count(graph.input_node)}"
    else:
        rule = "with values in [0, 1]"
    return f"{batch_kind(graph)} {expected_batch(graph)} {rule}"


def check_batch(graph: Graph, shape: Tuple[int, ...]) -> str:
    """The input node's encoding, after checking that a batch of ``shape`` fits it: the
    shape users give (:func:`expected_batch`), or the input node's own map layout."""
    node = graph.input_node
    maps = _map_shape(node)
    sample = sample_shape(graph)
    enc = encoding_of(graph)
    kind = batch_kind(graph)
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 1 and shape[0] == 0:
        raise ValueError(f"{where(node)}: the batch holds no samples (shape {list(shape)}); "
                         "give at least one")
    if enc in SEQUENCE_ENCODINGS:
        steps = graph.time_steps
        if shape[2:] not in (sample, maps) or len(shape) < 3:
            raise ValueError(f"{where(node)}: expected {kind} [B, {steps}, {_dims(sample)}], "
                             f"got {list(shape)}")
        if shape[1] != steps:
            raise ValueError(f"{where(node)}: expected {kind} [B, {steps}, {_dims(sample)}], "
                             f"got {list(shape)}: the graph runs {steps} time steps, the "
                             f"{kind} have {shape[1]}")
    elif shape[1:] not in (sample, maps) or len(shape) < 2:
        raise ValueError(f"{where(node)}: expected {kind} [B, {_dims(sample)}], got "
                         f"{list(shape)}")
    return enc


def as_maps(graph: Graph, x):
    """A checked batch (numpy or torch) in the input node's map layout: ``[B, C, H, W]`` or
    ``[B, T, C, H, W]`` (a vector batch ``[B, K]`` becomes ``[B, K, 1, 1]``)."""
    lead = 2 if takes_sequences(graph) else 1
    want = tuple(x.shape[:lead]) + _map_shape(graph.input_node)
    return x if tuple(x.shape) == want else x.reshape(want)


def check_samples(graph: Graph, x, what: str = "input") -> np.ndarray:
    """A user's batch (``what`` names it, e.g. ``--data 'x.npy'``) as a numpy array, after
    every check an encoder would make, each failure a ValueError naming ``what`` and the
    expected batch (:func:`describe_input`): real, finite numbers, the batch shape, values in
    [0, 1] for analog input (the quantized input encoding is calibrated for that range),
    0 or 1 for spikes."""
    x = _as_numpy(x)
    expected = f"expected {describe_input(graph)}"
    try:
        check_values(x, what)
        if x.ndim == 0:
            raise ValueError(f"{what} holds a single number, not an array of samples")
        if len(x) == 0:
            raise ValueError(f"{what} holds no samples (shape {list(x.shape)})")
        try:
            enc = check_batch(graph, x.shape)
        except ValueError:
            detail = ""
            if takes_sequences(graph) and x.ndim >= 2 and \
                    tuple(x.shape[2:]) == sample_shape(graph):
                detail = (f": the network runs {graph.time_steps} time steps, the "
                          f"{batch_kind(graph)} have {x.shape[1]}")
            raise ValueError(f"{what} does not fit this network: shape {list(x.shape)}"
                             f"{detail}") from None
    except ValueError as e:
        raise ValueError(f"{e}; {expected}") from None
    if x.dtype.kind == "b":
        return x
    if enc == SPIKES:
        bad = (x != 0) & (x != 1)
        if bad.any():
            at = np.argwhere(bad)[0]
            raise ValueError(f"{what} holds {int(bad.sum())} value(s) that are not spikes (the "
                             f"first: {x[tuple(at)]} in sample {int(at[0])}); {expected}")
    elif enc == COUNTS:
        check_counts(graph, x, what)
    elif x.size and not ((x >= 0) & (x <= 1)).all():
        hint = "; divide 8-bit images by 255" if 1 < x.max() <= 255 and x.min() >= 0 else ""
        raise ValueError(f"{what}: values must lie in [0, 1] (found {x.min():.4g}.."
                         f"{x.max():.4g}{hint}): the quantized input encoding is calibrated "
                         f"for that range; {expected}")
    return x


def check_counts(graph: Graph, x: np.ndarray, what: str = "input") -> np.ndarray:
    """``x`` when it holds event counts the network accepts: integers in 0..max_count. A
    larger count is refused, never clipped: the quantized first layer is proven free of
    overflow only up to max_count (recompile with a larger --max-count to accept it)."""
    limit = max_count(graph.input_node)
    bad = (x != np.round(x)) | (x < 0)
    if bad.any():
        at = np.argwhere(bad)[0]
        raise ValueError(f"{what} holds {int(bad.sum())} value(s) that are not event counts "
                         f"(the first: {x[tuple(at)]} in sample {int(at[0])}); event-count "
                         f"frames hold non-negative integers")
    over = x > limit
    if over.any():
        at = np.argwhere(over)[0]
        raise ValueError(f"{what} holds {int(over.sum())} count(s) above the network's "
                         f"max_count {limit} (the largest: {x.max():.0f}, first in sample "
                         f"{int(at[0])}); counts are never clipped: recompile with a larger "
                         f"max count (spikeform-convert/-compile --max-count) or bin the "
                         f"events into more frames")
    return x


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
    T, or event (count) frames moved time-first."""
    x = check_values(_as_numpy(x)).astype(np.float64)
    enc = check_batch(graph, x.shape)
    x = as_maps(graph, x)
    if enc == COUNTS:
        check_counts(graph, x)
    if enc in SEQUENCE_ENCODINGS:
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
    T. Event frames must already be binary; event-count frames are sent as they are
    (integers 0..max_count).
    """
    x = check_values(_as_numpy(x)).astype(np.float64)
    node = graph.input_node
    enc = check_batch(graph, x.shape)
    x = as_maps(graph, x)
    if enc == SPIKES:
        bad = (x != 0) & (x != 1)
        if bad.any():
            raise ValueError(f"{where(node)}: event frames must be binary; found value "
                             f"{x[bad][0]}")
        return x.transpose(1, 0, 2, 3, 4).astype(np.int64)
    if enc == COUNTS:
        check_counts(graph, x, where(node))
        return x.transpose(1, 0, 2, 3, 4).astype(np.int64)
    if x.size and not ((x >= 0) & (x <= 1)).all():  # written so that NaN fails too
        found = f"{x.min():.4g}..{x.max():.4g}"
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


__all__ = ["SAMPLE_SHAPE", "SPIKES", "COUNTS", "SEQUENCE_ENCODINGS", "sample_shape", "is_flat",
           "encoding_of", "max_count", "takes_sequences", "check_counts", "batch_kind",
           "expected_batch", "describe_input", "check_batch", "as_maps", "check_values",
           "check_samples", "normalisation", "encode_float", "encode_integer"]
