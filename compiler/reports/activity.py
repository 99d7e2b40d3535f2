"""Per-layer activity on real samples: firing rates (reference executor and float model),
float-vs-integer spike agreement, membrane use against the 24-bit range, attention maps.

Rates are the mean value per neuron per time step (binary maps: the fraction of neurons that
spike; the graded residual stream counts a value n as n spikes). Membrane use is measured on
``loihi_lif`` populations from the reference executor's opt-in record: |v| before threshold
and reset, and |u|, against the largest 24-bit magnitude 2^23 - 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import numpy as np

from loihi_numerics import fixed_point as fx
from ..encoding import SEQUENCE_ENCODINGS
from ..ir import Graph
from ..layout import map_to_tokens, split_heads
from ..ops import attr

ACTIVITY_OPS = ("input", "loihi_lif", "threshold", "sum")   # nodes whose outputs are spikes/counts
STATE_MAX = fx.V_MAX                                          # 2^23 - 1


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass
class _NodeStats:
    count: int = 0             # values seen (T * B * neurons)
    ref_sum: int = 0
    ref_nonzero: int = 0
    float_sum: float = 0.0
    float_count: int = 0
    equal: int = 0             # float == reference, where both ran
    v_max: int = 0
    v_abs_sum: int = 0
    u_max: int = 0
    membrane_count: int = 0


class ActivityMeter:
    """Accumulates statistics over batches. ``record_names`` / ``float_names``: what to ask
    the executors to record; ``membrane_names``: the loihi_lif populations."""

    def __init__(self, quantized: Graph, float_graph: Optional[Graph] = None):
        self.graph = quantized
        # a graded image's integer levels are no firing rate: record the input only for events
        self.record_names = [n.name for n in quantized.by_op(*ACTIVITY_OPS) if not (
            n.op == "input" and attr(n, "encoding") not in SEQUENCE_ENCODINGS)]
        self.membrane_names = [n.name for n in quantized.by_op("loihi_lif")]
        # the float graph's analog input is normalised floats, not comparable; events are
        self.float_names = ([n for n in self.record_names if n in float_graph.nodes and not (
            float_graph[n].op == "input" and
            attr(float_graph[n], "encoding") not in SEQUENCE_ENCODINGS)]
            if float_graph else [])
        self.stats: Dict[str, _NodeStats] = {n: _NodeStats() for n in self.record_names}
        self.samples = 0

    def add(self, ref, float_result=None) -> None:
        """One batch: a ReferenceResult recorded with ``record_names`` and ``record_membrane``
        for ``membrane_names``, and optionally the float run recorded with ``float_names``."""
        for name in self.record_names:
            a = ref.outputs[name]
            st = self.stats[name]
            st.count += int(a.size)
            st.ref_sum += int(a.sum())
            st.ref_nonzero += int(np.count_nonzero(a))
            if float_result is not None and name in self.float_names:
                f = _np(float_result.outputs[name]).astype(np.float64)
                st.float_sum += float(f.sum())
                st.float_count += int(f.size)
                st.equal += int((f == a).sum())
        for name in self.membrane_names:
            st = self.stats[name]
            v, u = np.abs(ref.voltages[name]), np.abs(ref.currents[name])
            st.v_max = max(st.v_max, int(v.max(initial=0)))
            st.u_max = max(st.u_max, int(u.max(initial=0)))
            st.v_abs_sum += int(v.sum())
            st.membrane_count += int(v.size)
        self.samples += int(ref.logits.shape[0])

    def rates(self, which: str = "reference") -> Dict[str, float]:
        if which == "reference":
            return {n: s.ref_sum / s.count for n, s in self.stats.items() if s.count}
        return {n: s.float_sum / s.float_count for n, s in self.stats.items() if s.float_count}

    def layers(self) -> Dict[str, dict]:
        """Per recorded node: op, neurons, rates, agreement and (LIF) membrane use."""
        out: Dict[str, dict] = {}
        for name, st in self.stats.items():
            node = self.graph[name]
            info = {"op": node.op, "neurons": int(np.prod(node.shape)),
                    "rate_reference": st.ref_sum / st.count if st.count else None,
                    "nonzero_reference": st.ref_nonzero / st.count if st.count else None,
                    "rate_float": st.float_sum / st.float_count if st.float_count else None,
                    "agreement": st.equal / st.float_count if st.float_count else None}
            if st.membrane_count:
                info["membrane"] = {
                    "v_max_abs": st.v_max, "v_mean_abs": st.v_abs_sum / st.membrane_count,
                    "u_max_abs": st.u_max, "v_max_fraction": st.v_max / STATE_MAX,
                    "v_mean_fraction": st.v_abs_sum / st.membrane_count / STATE_MAX,
                    "u_max_fraction": st.u_max / STATE_MAX,
                    "threshold": int(np.asarray(self.graph[name].params["vth"]).item()) << fx.VTH_SHIFT}
            out[name] = info
        return out


def qkv_rates(graph: Graph, rates: Mapping[str, float]) -> List[dict]:
    """The paper's Figure 4: per block the firing rates of Q, K, V (and the attention LIF)."""
    rows = []
    for node in graph.by_op("spiking_attention"):
        q, k, v = node.inputs
        lif = [c.name for c in graph.consumers(node.name) if c.op in ("loihi_lif", "lif")]
        rows.append({"attention": node.name, "q": rates.get(q), "k": rates.get(k),
                     "v": rates.get(v), "attn_lif": rates.get(lif[0]) if lif else None})
    return rows


def attention_maps(q: np.ndarray, k: np.ndarray, num_heads: int) -> np.ndarray:
    """Q.K^T per head of one sample: q, k ``[T, D, H, W]`` binary -> ``[T, heads, N, N]``
    integer counts (tokens N = H*W row-major): how many of a head's channels two tokens
    share at each step (the paper's Figure 3)."""
    def heads(a):  # [T, D, H, W] -> [T, heads, N, dh]
        return split_heads(map_to_tokens(np.asarray(a)), num_heads).astype(np.int64)

    return heads(q) @ heads(k).swapaxes(-1, -2)
