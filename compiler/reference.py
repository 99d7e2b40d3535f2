"""The reference executor: runs a quantized graph with exactly Lava 0.10's integer arithmetic.

It is the ground truth the Lava backend must match spike for spike. Every op computes the
integers of ``loihi_numerics.fixed_point`` (docs/reference-semantics.md), in *algorithmic
time*: at step t every node sees its inputs' values of the same step t (Lava adds one step per
Conv/Dense hop; the backend re-aligns those delays).

Layer-major: :class:`ReferenceExecutor` is a :class:`compiler.interpreter.Interpreter` with one
``op_<name>`` handler per QUANTIZED-level op; each handler receives the whole integer sequence
``[T, B, *shape]`` of its (fan-in) input and returns its own. The graph is feed-forward and
only ``loihi_lif`` has state, so this computes exactly what stepping every node once per time
step computes; every op but the LIF's recurrence runs on all steps and samples at once.

Arithmetic (``compiler.exact``): torch tensors on ``device`` (CPU or CUDA), each value with a
proven bound on its magnitude that picks the cheapest exact arithmetic per layer -- float32
GEMMs below 2**24, float64 below 2**53, int64 (``fixed_point``'s own functions) beyond; the LIF
in float state where its bounds rule out every wrap, else ``fixed_point.lif_step``. The same
integers come out on every device and path (tests/test_compiler/test_reference_torch.py holds
them to the numpy implementation this replaced, tests/support/numpy_reference.py).

  input            the encoded input (``compiler.encoding.encode_integer``)
  conv2d           Lava's Conv on every step and sample; binary (``x != 0``) or graded input,
                   then the int32 cast and the 24-bit wrap
  loihi_lif        ``lif_step`` over t = 0 .. T-1 (u, v start at 0)
  sumpool2d        window sums of binary spikes (a depthwise all-ones binary Conv)
  threshold        1 where the input >= threshold
  spiking_attention  per head ``min(Q.(K^T.V), saturation) * gain`` (tokens = H*W row-major)
  sum              integer sum of the inputs
  token_time_sum   the input summed over time and tokens: ``[T, B, D, H, W] -> [B, D]``
  affine, output   untimed ``[B, K]``: integer ``W @ acc + b``; the logits
Several inputs into one node are added in int32, as Lava's ports add their messages
(:meth:`ReferenceExecutor.fan_in`; the quantize pass proves that no graded stream reaches
2^31, so residual sums are the plain integer sums). The prediction is the argmax of the
integer logits (first index on ties, as numpy and torch do).

Opt-in membrane record (``record_membrane``), for analysis only: per ``loihi_lif`` the current
``u`` after the step and the voltage ``v`` after integration, *before* threshold and reset --
the largest value the 24-bit register holds in that step (Lava's ``v`` Var shows 0 where the
neuron spiked).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Set, Union

import numpy as np
import torch

from loihi_numerics import fixed_point as fx
from .encoding import encode_integer
from .exact import attention as exact_attention
from .exact.conv import ConvWeights, conv2d, max_row_abs_sum, sum_pool
from .exact.device import DeviceLike, exact_float_math, resolve_device
from .exact.lif import run_lif
from .exact.values import IntSeq, add_int32, exact_dtype, from_numpy, max_abs, to_numpy
from .interpreter import Interpreter, where
from .ir import Graph, IRError, Node
from .layout import map_to_tokens, pair, tokens_to_map
from .ops import attr

__all__ = ["ReferenceResult", "ReferenceExecutor", "run_reference", "attention_counts",
           "attention_gain"]

_LIF_PARAMS = ("du", "dv", "vth", "bias_mant", "bias_exp")


@dataclass
class ReferenceResult:
    logits: np.ndarray                      # [B, K] int64
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> [T, B, *shape]
    # record_membrane only: loihi_lif name -> [T, B, *shape] int64
    currents: Dict[str, np.ndarray] = field(default_factory=dict)   # u after the step
    voltages: Dict[str, np.ndarray] = field(default_factory=dict)   # v before threshold/reset

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def attention_counts(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int) -> np.ndarray:
    """Per head Q.(K^T.V) on integer maps [..., D, H, W] -> int64 counts of the same shape
    (any leading dims: [B, ...] or [T, B, ...]): the executor's kernel, on numpy arrays."""
    q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
    d, h, w = q.shape[-3:]
    bound = exact_attention.counts_bound(h * w, d // num_heads, *map(max_abs, (q, k, v)))
    toks = [torch.from_numpy(np.ascontiguousarray(map_to_tokens(a))).to(exact_dtype(bound))
            for a in (q, k, v)]
    with exact_float_math():
        out = exact_attention.counts(*toks, num_heads)
    return tokens_to_map(out.to(torch.int64), (d, h, w)).contiguous().numpy()


def attention_gain(node: Node) -> int:
    """The integer gain of a quantized ``spiking_attention`` node (required at that level)."""
    gain = attr(node, "gain")
    if gain is None:
        raise IRError(f"{where(node)}: missing attribute 'gain' (set by the quantize pass)")
    return int(gain)


def lif_params(node: Node) -> fx.LifParams:
    return fx.LifParams(**{k: node.params[k] for k in _LIF_PARAMS})


class ReferenceExecutor(Interpreter):
    """Layer-major integer execution of a quantized graph (see the module docstring).

    Values are :class:`compiler.exact.values.IntSeq` on ``device``: ``[T, B, H, W, C]`` per
    time step (channels last), ``[B, K]`` after the readout; recorded values are int64 numpy
    arrays in the IR's layout. ``membranes``: loihi_lif names whose u and pre-reset v are
    kept in ``currents`` / ``voltages`` (``[T, B, *shape]``)."""

    name = "reference executor"

    def __init__(self, graph: Graph, membranes: Iterable[str] = (), device: DeviceLike = "cpu"):
        super().__init__(graph)
        self.device = resolve_device(device)
        self.membranes: Set[str] = set(membranes)
        self.currents: Dict[str, np.ndarray] = {}
        self.voltages: Dict[str, np.ndarray] = {}

    def unsupported(self, node: Node) -> IRError:
        return IRError(f"{where(node)}: the reference executor runs quantized graphs only; "
                       "run the quantize pass first")

    def fan_in(self, node: Node, inputs: List[IntSeq]) -> IntSeq:
        """Lava adds the messages of several connections in int32."""
        return add_int32(inputs)

    def recorded(self, node: Node, value: IntSeq) -> np.ndarray:
        return to_numpy(value)

    # -- ops (sequences [T, B, ...] in, sequences out) -------------------------------------
    def op_input(self, node: Node, x_seq: np.ndarray) -> IntSeq:
        return from_numpy(x_seq, self.device)

    def op_conv2d(self, node: Node, x: IntSeq) -> IntSeq:
        here = where(node)
        return conv2d(x, ConvWeights(node.params["weight"], self.device),
                      pair(attr(node, "stride"), here, "stride"),
                      pair(attr(node, "padding"), here, "padding"), int(attr(node, "groups")),
                      graded=bool(attr(node, "graded_input")))

    def op_loihi_lif(self, node: Node, a_in: IntSeq) -> IntSeq:
        spikes, (u, v) = run_lif(a_in, lif_params(node), keep=node.name in self.membranes)
        if u is not None:
            self.currents[node.name], self.voltages[node.name] = u, v
        return spikes

    def op_sumpool2d(self, node: Node, x: IntSeq) -> IntSeq:
        here = where(node)
        return sum_pool(x, pair(attr(node, "kernel"), here, "kernel"),
                        pair(attr(node, "stride"), here, "stride"),
                        pair(attr(node, "padding"), here, "padding"))

    def op_threshold(self, node: Node, x: IntSeq) -> IntSeq:
        # integers: x >= th  <=>  x >= ceil(th); clamped into the value range, the integer
        # compares exactly in the value's own dtype
        level = min(max(math.ceil(float(attr(node, "threshold"))), -x.bound - 1), x.bound + 1)
        return IntSeq((x.data >= level).to(torch.float32), 1, True)

    def op_spiking_attention(self, node: Node, q: IntSeq, k: IntSeq, v: IntSeq) -> IntSeq:
        saturation = attr(node, "saturation")
        return exact_attention.spiking_attention(
            q, k, v, int(attr(node, "num_heads")),
            None if saturation is None else int(saturation), attention_gain(node))

    def op_sum(self, node: Node, x: IntSeq) -> IntSeq:
        return x  # fan_in added the inputs

    def op_token_time_sum(self, node: Node, x: IntSeq) -> IntSeq:
        t, _, h, w, _ = x.data.shape
        bound = x.bound * t * h * w    # any summation order: every partial sum is below it
        return IntSeq(x.as_dtype(exact_dtype(bound)).sum(dim=(0, 2, 3)), bound)

    def op_affine(self, node: Node, x: IntSeq) -> IntSeq:
        weight = np.asarray(node.params["weight"], dtype=np.int64)
        bias = np.asarray(node.params.get("bias", 0), dtype=np.int64)
        bound = max(max_row_abs_sum(weight), 1) * x.bound + max_abs(bias)
        dtype = exact_dtype(bound)
        device = x.data.device if dtype != torch.int64 else torch.device("cpu")
        w, b = (torch.from_numpy(a).to(device=device, dtype=dtype) for a in (weight.T, bias))
        logits = x.as_dtype(dtype).to(device) @ w + b     # exact under the bound
        return IntSeq(logits.to(torch.int64), bound)

    def op_output(self, node: Node, x: IntSeq) -> IntSeq:
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


def run_reference(graph: Graph, x, *, record: Union[bool, Iterable[str]] = False,
                  encoded: bool = False,
                  record_membrane: Union[bool, Iterable[str]] = False,
                  device: DeviceLike = "cpu") -> ReferenceResult:
    """Run a quantized graph on a batch (float, as the model takes it; or, with
    ``encoded=True``, the integer sequence ``[T, B, C, H, W]`` from
    ``compiler.encoding.encode_integer``).

    ``record``: True for every node, an iterable of node names, or False for the logits only
    (recorded values: ``[T, B, *shape]``; ``[B, *shape]`` from the readout on).
    ``record_membrane``: True or loihi_lif names whose u and pre-reset v to keep
    (``ReferenceResult.currents`` / ``.voltages``); analysis only, results are unchanged.
    ``device``: "cpu" (default) or "cuda" (an :class:`compiler.ir.OptionError` naming
    ``device`` without CUDA); the integers are the same on both. Results are numpy arrays."""
    executor = ReferenceExecutor(graph, device=device)
    executor.check_supported()
    executor.membranes = set(_membrane_names(graph, record_membrane))
    x_seq = np.array(x, dtype=np.int64) if encoded else encode_integer(graph, x)
    with torch.no_grad(), exact_float_math():
        outputs = executor.run(x_seq, record=record)
    return ReferenceResult(logits=to_numpy(executor.values[graph.output_node.name]),
                           outputs=outputs, currents=executor.currents,
                           voltages=executor.voltages)
