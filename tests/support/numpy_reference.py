"""The test oracle: the numpy reference executor as it was before the torch kernels.

``compiler.reference`` now runs on torch (``compiler.exact``: float GEMMs where a per-layer
bound proves them exact, int64 elsewhere, CPU or CUDA). This module keeps the numpy
implementation it replaced, unchanged in its arithmetic -- ``loihi_numerics.fixed_point``'s
per-step functions applied layer-major, int64 throughout -- so that tests can hold the new
executor to it, integer for integer (tests/test_compiler/test_reference_torch.py). It is
test support only: nothing in the product imports it.

  input            the encoded input (``compiler.encoding.encode_integer``)
  conv2d           ``conv_accumulate`` over the ``[T*B, C, H, W]`` reshape; binary or graded input
  loihi_lif        ``lif_step`` over t = 0 .. T-1 (u, v start at 0)
  sumpool2d        window sums of binary spikes (a depthwise all-ones convolution)
  threshold        1 where the input >= threshold
  spiking_attention  per head ``min(Q.(K^T.V), saturation) * gain`` (tokens = H*W row-major)
  sum              integer sum of the inputs
  token_time_sum   the input summed over time and tokens: ``[T, B, D, H, W] -> [B, D]``
  affine, output   untimed ``[B, K]``: integer ``W @ acc + b``; the logits
Several inputs into one node are added in int32, as Lava's ports add their messages.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Set, Union

import numpy as np

from loihi_numerics import fixed_point as fx
from compiler.encoding import encode_integer
from compiler.interpreter import Interpreter, where
from compiler.ir import Graph, IRError, Node
from compiler.layout import map_to_tokens, merge_heads, pair, split_heads, tokens_to_map
from compiler.ops import attr
from compiler.reference import ReferenceResult

__all__ = ["NumpyReferenceExecutor", "run_numpy_reference", "numpy_attention_counts"]

_LIF_PARAMS = ("du", "dv", "vth", "bias_mant", "bias_exp")
# Work in cache-sized slices (the same integers: samples are independent); one call over the
# whole [T*B] sequence is slower than slices on memory-bound numpy code.
CONV_CHUNK = 1 << 18   # im2col elements per conv_accumulate call
LIF_CHUNK = 1 << 15    # neurons (batch slice x population) per lif_step call


def numpy_attention_counts(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                           num_heads: int) -> np.ndarray:
    """Per head Q.(K^T.V) on binary maps [..., D, H, W] -> integer counts of the same shape
    (any leading dims: [B, ...] or [T, B, ...]).

    Reassociated as Q.(K^T.V): d x d per head instead of N x N, the same integers. Counts are
    at most N*d < 2^53, so float64 products are exact.
    """
    shape = q.shape[-3:]

    def heads(a):  # [..., D, H, W] -> [..., heads, N, dh]
        return split_heads(map_to_tokens(np.asarray(a)), num_heads).astype(np.float64)

    qh, kh, vh = heads(q), heads(k), heads(v)
    out = qh @ (kh.swapaxes(-1, -2) @ vh)
    return tokens_to_map(merge_heads(out), shape).astype(np.int64)


def attention_gain(node: Node) -> int:
    gain = attr(node, "gain")
    if gain is None:
        raise IRError(f"{where(node)}: missing attribute 'gain' (set by the quantize pass)")
    return int(gain)


def lif_params(node: Node) -> fx.LifParams:
    return fx.LifParams(**{k: node.params[k] for k in _LIF_PARAMS})


class NumpyReferenceExecutor(Interpreter):
    """Layer-major integer execution of a quantized graph (see the module docstring).

    Values are int64 arrays: ``[T, B, *shape]`` per time step, ``[B, K]`` after the readout.
    ``membranes``: loihi_lif names whose u and pre-reset v are kept in ``currents`` /
    ``voltages`` (``[T, B, *shape]``)."""

    name = "numpy reference executor (test oracle)"

    def __init__(self, graph: Graph, membranes: Iterable[str] = ()):
        super().__init__(graph)
        self.membranes: Set[str] = set(membranes)
        self.currents: Dict[str, np.ndarray] = {}
        self.voltages: Dict[str, np.ndarray] = {}

    def unsupported(self, node: Node) -> IRError:
        return IRError(f"{where(node)}: the reference executor runs quantized graphs only; "
                       "run the quantize pass first")

    def fan_in(self, node: Node, inputs: List[np.ndarray]) -> np.ndarray:
        """Lava adds the messages of several connections in int32."""
        if len(inputs) == 1:
            return inputs[0]
        return fx.wrap_signed(sum(inputs), 32)

    # -- ops (sequences [T, B, ...] in, sequences out) -------------------------------------
    def op_input(self, node: Node, x_seq: np.ndarray) -> np.ndarray:
        return x_seq

    def _conv(self, node: Node, x: np.ndarray, weight: np.ndarray, stride, padding,
              groups: int, num_message_bits: int) -> np.ndarray:
        """``conv_accumulate`` over the ``[T*B, C, H, W]`` reshape (every sample and step is
        independent), in slices of at most ``CONV_CHUNK`` im2col elements."""
        t, b = x.shape[:2]
        flat = x.reshape(t * b, *x.shape[2:])
        per_sample = int(np.prod(node.shape[1:])) * int(np.prod(weight.shape[1:])) * groups
        rows = max(1, CONV_CHUNK // max(per_sample, 1))

        def conv(lo: int) -> np.ndarray:
            return fx.conv_accumulate(flat[lo:lo + rows], weight, stride, padding, 1, groups,
                                      num_message_bits=num_message_bits)

        first = conv(0)
        if rows >= t * b:
            return first.reshape(t, b, *first.shape[1:])
        out = np.empty((t * b,) + first.shape[1:], np.int64)
        out[:rows] = first
        for lo in range(rows, t * b, rows):
            out[lo:lo + rows] = conv(lo)
        return out.reshape(t, b, *out.shape[1:])

    def op_conv2d(self, node: Node, x: np.ndarray) -> np.ndarray:
        return self._conv(node, x, node.params["weight"], attr(node, "stride"),
                          attr(node, "padding"), attr(node, "groups"),
                          1 if attr(node, "graded_input") else 0)

    def op_loihi_lif(self, node: Node, a_in: np.ndarray) -> np.ndarray:
        """``lif_step`` over the T steps, for cache-sized slices of the batch in turn (every
        sample's neurons are independent; LIF_CHUNK bounds the elements of a slice)."""
        p = lif_params(node)
        keep = node.name in self.membranes
        steps, batch = a_in.shape[:2]
        spikes = np.empty(a_in.shape, np.int64)
        if keep:
            us, vs = np.empty_like(spikes), np.empty_like(spikes)
        rows = max(1, LIF_CHUNK // max(int(np.prod(a_in.shape[2:])), 1))
        for lo in range(0, batch, rows):
            hi = min(lo + rows, batch)
            u = v = np.zeros((hi - lo,) + a_in.shape[2:], np.int64)
            for t in range(steps):
                v_old = v
                u, v, s = fx.lif_step(u, v, a_in[t, lo:hi], p)
                spikes[t, lo:hi] = s
                if keep:
                    us[t, lo:hi] = u
                    vs[t, lo:hi] = fx.lif_voltage(v_old, u, p)
        if keep:
            self.currents[node.name], self.voltages[node.name] = us, vs
        return spikes

    def op_sumpool2d(self, node: Node, x: np.ndarray) -> np.ndarray:
        kh, kw = pair(attr(node, "kernel"), where(node), "kernel")
        c = int(node.shape[0])
        ones = np.ones((c, 1, kh, kw), dtype=np.int64)
        return self._conv(node, x, ones, attr(node, "stride"), attr(node, "padding"), c, 0)

    def op_threshold(self, node: Node, x: np.ndarray) -> np.ndarray:
        return (x >= attr(node, "threshold")).astype(np.int64)

    def op_spiking_attention(self, node: Node, q: np.ndarray, k: np.ndarray,
                             v: np.ndarray) -> np.ndarray:
        counts = numpy_attention_counts(q, k, v, int(attr(node, "num_heads")))
        saturation = attr(node, "saturation")
        if saturation is not None:   # larger counts fire the next LIF anyway (quantize pass)
            counts = np.minimum(counts, int(saturation))
        return counts * attention_gain(node)

    def op_sum(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x  # fan_in added the inputs

    def op_token_time_sum(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=(0, -2, -1))

    def op_affine(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x @ node.params["weight"].T + node.params.get("bias", 0)

    def op_output(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x


def _membrane_names(graph: Graph, record_membrane) -> List[str]:
    lifs = [n.name for n in graph.by_op("loihi_lif")]
    if record_membrane is True:
        return lifs
    wanted = set(record_membrane or ())
    not_lif = wanted - set(lifs)
    if not_lif:
        raise IRError(f"cannot record the membrane of {sorted(not_lif)}: not loihi_lif nodes")
    return [n for n in lifs if n in wanted]


def run_numpy_reference(graph: Graph, x, *, record: Union[bool, Iterable[str]] = False,
                  encoded: bool = False,
                  record_membrane: Union[bool, Iterable[str]] = False) -> ReferenceResult:
    """Run a quantized graph on a batch (float, as the model takes it; or, with
    ``encoded=True``, the integer sequence ``[T, B, C, H, W]`` from
    ``compiler.encoding.encode_integer``).

    ``record``: True for every node, an iterable of node names, or False for the logits only
    (recorded values: ``[T, B, *shape]``; ``[B, *shape]`` from the readout on).
    ``record_membrane``: True or loihi_lif names whose u and pre-reset v to keep
    (``ReferenceResult.currents`` / ``.voltages``); analysis only, results are unchanged."""
    executor = NumpyReferenceExecutor(graph)
    executor.check_supported()
    executor.membranes = set(_membrane_names(graph, record_membrane))
    x_seq = np.array(x, dtype=np.int64) if encoded else encode_integer(graph, x)
    outputs = executor.run(x_seq, record=record)
    return ReferenceResult(logits=executor.values[graph.output_node.name], outputs=outputs,
                           currents=executor.currents, voltages=executor.voltages)
