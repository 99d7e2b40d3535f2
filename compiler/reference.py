"""The reference executor: runs a quantized graph with exactly Lava 0.10's integer arithmetic.

It is the ground truth the Lava backend must match spike for spike. Every op uses the
bit-exact per-step functions of ``loihi_numerics.fixed_point`` (docs/reference-semantics.md), in
*algorithmic time*: at step t every node sees its inputs' values of the same step t (Lava
adds one step per Conv/Dense hop; the backend re-aligns those delays). Vectorised over the
batch; int64 throughout.

Per step t, nodes in topological order:
  input            the encoded input of step t (``compiler.encoding.encode_integer``)
  conv2d           ``conv_accumulate`` of the (int32-summed) inputs; binary or graded input
  loihi_lif        ``lif_step`` on the int32 sum of its inputs (u, v start at 0)
  sumpool2d        window sums of binary spikes (a depthwise all-ones convolution)
  threshold        1 where the input >= threshold
  spiking_attention  per head ``gain * Q.(K^T.V)`` on binary q, k, v (tokens = H*W row-major)
  sum              integer sum of the inputs
  token_time_sum   accumulates the input over tokens and all time steps
After the last step: affine (integer ``W @ acc + b``) and output. The prediction is the
argmax of the integer logits (first index on ties, as numpy and torch do).

Opt-in membrane record (``record_membrane``, via ``fixed_point.lif_voltage``), for analysis only:
per ``loihi_lif`` the current ``u`` after the step and the voltage ``v`` after integration,
*before* threshold and reset -- the largest value the 24-bit register holds in that step
(Lava's ``v`` Var shows 0 where the neuron spiked).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Union

import numpy as np

from loihi_numerics import fixed_point as fx
from .encoding import encode_integer
from .ir import Graph, IRError, Node

REFERENCE_OPS = frozenset({"input", "conv2d", "loihi_lif", "sumpool2d", "threshold",
                           "spiking_attention", "sum", "token_time_sum", "affine", "output"})


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


def _summed(values: Dict[str, np.ndarray], node: Node) -> np.ndarray:
    """Fan-in: Lava adds the messages of several connections in int32."""
    if len(node.inputs) == 1:
        return values[node.inputs[0]]
    return fx.wrap_signed(sum(values[i] for i in node.inputs), 32)


def attention_counts(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int) -> np.ndarray:
    """Per head Q.(K^T.V) on binary maps [B, D, H, W] -> integer counts [B, D, H, W].

    Reassociated as Q.(K^T.V): d x d per head instead of N x N, the same integers. Counts are
    at most N*d < 2^53, so float64 products are exact.
    """
    b, d, h, w = q.shape
    dh = d // num_heads

    def heads(a):  # [B, D, H, W] -> [B, heads, N, dh]
        return a.reshape(b, num_heads, dh, h * w).transpose(0, 1, 3, 2).astype(np.float64)

    qh, kh, vh = heads(q), heads(k), heads(v)
    out = qh @ (kh.transpose(0, 1, 3, 2) @ vh)
    return out.transpose(0, 1, 3, 2).reshape(b, d, h, w).astype(np.int64)


class _Runner:
    def __init__(self, graph: Graph):
        unsupported = [n for n in graph if n.op not in REFERENCE_OPS]
        if unsupported:
            n = unsupported[0]
            raise IRError(f"node '{n.name}' ({n.op}): the reference executor runs quantized "
                          "graphs only; run the quantize pass first")
        self.graph = graph
        self.lif_params = {n.name: fx.LifParams(**{k: n.params[k] for k in
                                                   ("du", "dv", "vth", "bias_mant", "bias_exp")})
                           for n in graph.by_op("loihi_lif")}
        self.pool_weights = {n.name: np.ones((n.shape[0], 1, n.attrs["kernel"], n.attrs["kernel"]),
                                             dtype=np.int64) for n in graph.by_op("sumpool2d")}

    def run(self, x_seq: np.ndarray, record, record_membrane=False) -> ReferenceResult:
        g = self.graph
        batch = x_seq.shape[1]
        wanted = set(g.nodes) if record is True else set(record or ())
        unknown = wanted - set(g.nodes)
        if unknown:
            raise IRError(f"cannot record unknown node(s) {sorted(unknown)}")
        membranes = set(self.lif_params) if record_membrane is True else set(record_membrane or ())
        not_lif = membranes - set(self.lif_params)
        if not_lif:
            raise IRError(f"cannot record the membrane of {sorted(not_lif)}: not loihi_lif nodes")
        u_trace = {n: [] for n in membranes}
        v_trace = {n: [] for n in membranes}
        state = {n: (np.zeros((batch,) + tuple(g[n].shape), np.int64),) * 2 for n in self.lif_params}
        acc = {n.name: np.zeros((batch, n.shape[0]), np.int64) for n in g.by_op("token_time_sum")}
        traces = {n: [] for n in wanted if g[n].op not in ("affine", "output", "token_time_sum")}
        for t in range(x_seq.shape[0]):
            values: Dict[str, np.ndarray] = {}
            for node in g:
                op = node.op
                if op == "input":
                    val = x_seq[t]
                elif op == "conv2d":
                    a = node.attrs
                    val = fx.conv_accumulate(_summed(values, node), node.params["weight"],
                                             a["stride"], a["padding"], 1, a["groups"],
                                             num_message_bits=1 if a.get("graded_input") else 0)
                elif op == "loihi_lif":
                    u, v = state[node.name]
                    v_old = v
                    u, v, spikes = fx.lif_step(u, v, _summed(values, node), self.lif_params[node.name])
                    state[node.name] = (u, v)
                    if node.name in membranes:
                        u_trace[node.name].append(u)
                        v_trace[node.name].append(
                            fx.lif_voltage(v_old, u, self.lif_params[node.name]))
                    val = spikes.astype(np.int64)
                elif op == "sumpool2d":
                    a = node.attrs
                    val = fx.conv_accumulate(_summed(values, node), self.pool_weights[node.name],
                                             a["stride"], a["padding"], 1, node.shape[0])
                elif op == "threshold":
                    val = (_summed(values, node) >= node.attrs["threshold"]).astype(np.int64)
                elif op == "spiking_attention":
                    q, k, v_ = (values[i] for i in node.inputs)
                    val = attention_counts(q, k, v_, node.attrs["num_heads"]) * int(node.attrs["gain"])
                elif op == "sum":
                    val = sum(values[i] for i in node.inputs)
                elif op == "token_time_sum":
                    acc[node.name] += _summed(values, node).sum(axis=(2, 3))
                    continue
                else:  # affine / output: after the time loop
                    continue
                values[node.name] = val
                if node.name in traces:
                    traces[node.name].append(val)
        final: Dict[str, np.ndarray] = dict(acc)
        for node in g:
            if node.op == "affine":
                x = sum(final[i] for i in node.inputs)
                final[node.name] = x @ node.params["weight"].T + node.params.get("bias", 0)
            elif node.op == "output":
                final[node.name] = sum(final[i] for i in node.inputs)
        outputs = {n: np.stack(v) for n, v in traces.items()}
        outputs.update({n: final[n] for n in wanted if n in final})
        return ReferenceResult(logits=final[g.output_node.name], outputs=outputs,
                               currents={n: np.stack(t) for n, t in u_trace.items()},
                               voltages={n: np.stack(t) for n, t in v_trace.items()})


def run_reference(graph: Graph, x, *, record: Union[bool, Iterable[str]] = False,
                  encoded: bool = False,
                  record_membrane: Union[bool, Iterable[str]] = False) -> ReferenceResult:
    """Run a quantized graph on a batch (float, as the model takes it; or, with
    ``encoded=True``, the integer sequence from ``compiler.encoding.encode_integer``).

    ``record_membrane``: True or loihi_lif names whose u and pre-reset v to keep
    (``ReferenceResult.currents`` / ``.voltages``); analysis only, results are unchanged."""
    x_seq = np.asarray(x, dtype=np.int64) if encoded else encode_integer(graph, x)
    return _Runner(graph).run(x_seq, record, record_membrane)
