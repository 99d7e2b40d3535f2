"""Quantize a folded float graph to Loihi fixed point (the integer contract of Lava 0.10).

Input: the output of ``float_passes`` (BN folded, max-pools rewritten). Output: a
"quantized" graph whose every value is an integer and whose arithmetic is exactly what
``compiler.reference`` and the Lava backend compute (docs/reference-semantics.md).

Per LIF population (conv2d -> lif becomes conv2d[int weights] -> loihi_lif): the paper's
LIF equals Loihi's CUBA LIF (du = 4095, dv = 4096/tau) at a per-layer scale S; the grid
(S, vth, integer weights and bias) and its constraints are in ``loihi_numerics.grid``,
shared with quantization-aware training. A checkpoint fine-tuned with QAT carries its grid as
hints (graph.meta["loihi_hints"]); they are used as given and re-checked in integers.

The 24-bit state bound is provable by default (``overflow="worst-case"``: sum |w| times the
largest input value, from the value-range analysis below); ``overflow="calibrated"`` uses
the largest |W.x| observed on calibration data times ``margin`` when that is smaller.

The generalised LIF of imported NIR graphs (attrs ``r``, ``spike_if``; compiler/ir.py) uses
the same grid: the gain r/tau folds into the integer weights and bias (W, b times r),
dv = round(4096/tau) (a rounded decay is reported per layer as dv, tau_loihi and
decay_error; a decay that rounds to 0 or 4096 is refused), a decay slower than tau = 2
lowers the state bound (loihi_grid.state_limit), and spike_if ">" maps onto Loihi's own
``v > vth << 6`` with S = 64 vth / V_th.

Spiking self-attention: Q, K, V are binary, so Q.K^T.V is an integer count c. The scale
s and the attention LIF's V_th fold into an integer gain g (the attention node sends
g * min(c, saturation)), the LIF's vth = tau g V_th / s and a bias of +1 that turns Loihi's
strict ``v > 64 vth`` into the paper's ``H >= V_th``; with g = 2^max(0, T-7) every spike is
the float one at any T the 24-bit state allows (T <= 20 at s = 1/8; the proof is in
:func:`_quantize_attention_lif`; exact=True in the LIF's attrs).

Other ops: the input becomes an 8-bit graded value x_int = round(x_norm * input_scale)
(analog) or stays binary (events); max-pool's threshold(1) stays (integer sum >= 1); residual
sums stay integer sums; the token/time mean becomes an integer sum and the head an integer
affine on it (weights 8-bit, bias scaled by T*N), whose argmax is the prediction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from loihi_numerics.constants import V_MAX
from loihi_numerics.grid import (BIAS_MAX, DECAY_UNITY, STATE_LIMIT, VTH_MAX,
                                         WEIGHT_MANT_MAX, GridError, LayerGrid, bias_exponent,
                                         layer_grid, lif_decay, round_along_positions,
                                         scale_for_vth, state_limit)

from ..encoding import max_count, normalisation
from ..interpreter import Interpreter
from ..ir import Graph, IRError, Node, lif_attrs, non_finite
from ..layout import pair
from ..ops import OPS, attr

INPUT_BITS = 8                 # analog input: unsigned (or signed) 8-bit graded values


@dataclass(frozen=True)
class QuantizeOptions:
    overflow: str = "worst-case"   # or "calibrated"
    margin: float = 2.0            # headroom over the calibrated maximum
    # Integer levels per unit of (normalised) input. None: the full 8-bit range. When the
    # data lie on a grid (8-bit images: k/255; scikit-learn digits: k/16) the grid's step
    # makes the encoding exact (see compiler.calibration.detect_input_grid).
    input_levels: Optional[int] = None


def _fail(node: Node, msg: str) -> IRError:
    return IRError(f"layer '{node.name}' ({node.op}): {msg}")


# -- value ranges ----------------------------------------------------------------------------
# Graded values travel between Lava processes as int32 messages, and a port sums its fan-in
# in int32: a value that could reach 2^31 would wrap. The pass refuses such graphs, so that
# the reference executor's int32 fan-in sums are the plain integer sums.
PORT_LIMIT = 2 ** 31
GRADED_PORT_OPS = ("sum", "sumpool2d", "spiking_attention", "token_time_sum")


def check_port_range(node: Node, bound: float) -> float:
    """``bound`` if the node's values fit Lava's int32 messages, else an IRError."""
    if node.op in GRADED_PORT_OPS and bound >= PORT_LIMIT:
        raise _fail(node, f"its values can reach {bound:.6g}, beyond the int32 messages (and "
                          "int32 fan-in sums) of Lava's ports; the network is too deep or wide "
                          "for exact integer residual/attention streams")
    return bound


def token_count(node: Node) -> int:
    """Tokens of a ``(D, H, W)`` token grid (H * W); 1 for other shapes."""
    return int(np.prod(node.shape[1:])) if len(node.shape) == 3 else 1


class ValueRange(Interpreter):
    """The provable largest |value| each node of a quantized graph outputs per time step
    (the readout: in total), from its inputs' bounds: one ``op_<name>`` handler per
    QUANTIZED-level op; several inputs add their bounds (:meth:`fan_in`, the default sum).

    The quantize pass runs it incrementally (:meth:`call` on each node it emits, the result
    stored in ``values``); :func:`value_bounds` runs it over a whole graph."""

    name = "value-range analysis"

    def unsupported(self, node: Node) -> IRError:
        return _fail(node, "no value-range rule for this op (quantized graphs only)")

    def op_input(self, node: Node, _source=None) -> float:
        return float(attr(node, "max_abs"))

    def op_conv2d(self, node: Node, x: float) -> float:
        w = np.abs(node.params["weight"]).reshape(node.params["weight"].shape[0], -1)
        return float(w.sum(axis=1).max()) * x

    def op_loihi_lif(self, node: Node, x: float) -> float:
        return 1.0

    def op_sumpool2d(self, node: Node, x: float) -> float:
        kh, kw = pair(attr(node, "kernel"), f"layer '{node.name}' ({node.op})", "kernel")
        return float(x) * (kh * kw)

    def op_threshold(self, node: Node, x: float) -> float:
        return 1.0

    def op_spiking_attention(self, node: Node, q: float, k: float, v: float) -> float:
        # binary q, k, v (the pass checks they are LIF spikes): per head at most N * d
        # coincidences, times the gain
        d = node.shape[0] // attr(node, "num_heads")
        gain = attr(node, "gain")
        if gain is None:
            raise _fail(node, "missing attribute 'gain' (the quantize pass sets it)")
        counts = token_count(node) * d
        saturation = attr(node, "saturation")
        if saturation is not None:
            counts = min(counts, int(saturation))
        return float(counts * int(gain))

    def op_sum(self, node: Node, x: float) -> float:
        return float(x)

    def op_token_time_sum(self, node: Node, x: float) -> float:
        return float(x) * self.graph.time_steps * token_count(self.graph[node.inputs[0]])

    def op_affine(self, node: Node, x: float) -> float:
        w, b = np.abs(node.params["weight"]), np.abs(node.params.get("bias", np.zeros(1)))
        return float((w.sum(axis=1) * x + b).max())

    def op_output(self, node: Node, x: float) -> float:
        return float(x)


def value_bounds(graph: Graph) -> Dict[str, float]:
    """The :class:`ValueRange` bound of every node of a quantized graph."""
    return ValueRange(graph).run(record=True)


# -- per-layer parameter mapping ---------------------------------------------------------------
def token_mean_positions(conv: Node, in_shape) -> Optional[int]:
    """Positions of a token mean composed with a conv (``token_mean`` set by
    ``distribute_membrane``: one output position, a kernel covering its whole unpadded input
    map), else None."""
    if not attr(conv, "token_mean"):
        return None
    kh, kw = conv.params["weight"].shape[2:]
    ph, pw = pair(conv.attrs["padding"], f"node '{conv.name}'", "padding")
    if not (tuple(conv.shape[1:]) == (1, 1) and (ph, pw) == (0, 0)
            and tuple(in_shape[1:]) == (kh, kw) and int(conv.attrs.get("groups", 1)) == 1):
        raise _fail(conv, f"marked token_mean, but its {kh}x{kw} kernel does not cover its "
                          f"input map {list(in_shape)} onto one position without padding")
    return kh * kw


class WeightRounding:
    """How a LIF's float weights (in weight steps) become integers: to nearest, except the
    token-mean kernels (:func:`token_mean_positions`), rounded along their positions
    (``loihi_numerics.grid.round_along_positions``: a pooled weight spread over N tokens
    errs by at most one step over any run of consecutive tokens, not by up to N/2 steps).

    ``parts``: per conv feeding the LIF, in input order, its columns per output channel
    (C * kh * kw) and its positions (None: not a token mean)."""

    def __init__(self, parts: List[tuple]):
        self.parts = parts
        self.along_positions = any(p is not None for _, p in parts)
        self.slack = 1.0 if self.along_positions else 0.5   # most |w_int - scaled| per weight

    def __call__(self, scaled: np.ndarray) -> np.ndarray:
        rows = scaled.reshape(scaled.shape[0], -1)
        pieces, start = [], 0
        for columns, positions in self.parts:
            piece = rows[:, start:start + columns]
            start += columns
            if positions is None:
                pieces.append(np.round(piece).astype(np.int64))
            else:
                by_channel = piece.reshape(piece.shape[0], -1, positions)
                pieces.append(round_along_positions(by_channel).reshape(piece.shape))
        return np.concatenate(pieces, axis=1).reshape(scaled.shape)

    def position_sum_error(self, w: np.ndarray, approx: np.ndarray) -> Optional[float]:
        """Relative error of the token-mean kernels' per-channel sums over their positions
        (the response to a map of all-active tokens), None without such kernels."""
        if not self.along_positions:
            return None
        rows, rows_q = w.reshape(w.shape[0], -1), approx.reshape(w.shape[0], -1)
        ref, got, start = [], [], 0
        for columns, positions in self.parts:
            if positions is not None:
                shape = (w.shape[0], -1, positions)
                ref.append(rows[:, start:start + columns].reshape(shape).sum(-1))
                got.append(rows_q[:, start:start + columns].reshape(shape).sum(-1))
            start += columns
        return _rel_err(np.concatenate(ref, 1), np.concatenate(got, 1))


def _grid_for(conv: Node, lif: Node, w: np.ndarray, b: np.ndarray, x_max: float, levels: float,
              observed_wx: Optional[float], opts: QuantizeOptions, hint: Optional[int],
              limit: int, rounding_slack: float) -> LayerGrid:
    tau, v_th, _, rule = lif_attrs(lif)
    if hint is not None:
        # a hint is used as given, so it must be a threshold Loihi can hold (and >= 1, as
        # layer_grid guarantees): a negative one would silently flip every weight's sign
        integer = isinstance(hint, (int, np.integer)) and not isinstance(hint, bool)
        if not (integer and 1 <= hint <= VTH_MAX):
            raise _fail(lif, f"quantization hint vth {hint!r} is not an integer in 1..{VTH_MAX}")
        return LayerGrid(scale_for_vth(int(hint), v_th, rule), int(hint), "hint")
    rows = np.abs(w).reshape(w.shape[0], -1)
    row_sum = float(rows.sum(axis=1).max())
    if opts.overflow == "calibrated" and observed_wx is not None:
        # the observed max |W.x| * margin replaces the worst case sum|W| * x_max when smaller
        row_sum = min(row_sum, observed_wx * opts.margin * levels / max(x_max, 1e-30))
    try:
        return layer_grid(lif.name, w_abs_max=float(rows.max(initial=0.0)),
                          w_row_abs_sum_max=row_sum, b_abs_max=float(np.abs(b).max(initial=0.0)),
                          fan_in=rows.shape[1], x_max=x_max, tau=tau, v_threshold=v_th,
                          input_levels=levels, spike_if=rule, limit=limit,
                          rounding_slack=rounding_slack)
    except GridError as e:
        raise IRError(str(e)) from None


def _quantize_lif_layer(conv: Node, lif: Node, x_max: float, levels: float,
                        observed_wx: Optional[float], opts: QuantizeOptions, hint: Optional[int],
                        rounding: WeightRounding):
    """Integer weights for ``conv`` and Loihi parameters for ``lif`` on the layer's grid.

    The generalised LIF's input gain r multiplies W and b (r X = r W x + r b); its decay is
    dv = round(4096/tau), refused when that changes the neuron's kind, reported when rounded.
    """
    tau, _, r, rule = lif_attrs(lif)
    if not r > 0:
        raise _fail(lif, f"input gain r = {r} must be > 0 for Loihi (a sign flip belongs in "
                         "the weights)")
    try:
        dv, decay_exact, tau_loihi = lif_decay(lif.name, tau)
    except GridError as e:
        raise IRError(str(e)) from None
    limit = state_limit(dv)
    w = conv.params["weight"].astype(np.float64) * r
    b = conv.params.get("bias", np.zeros(w.shape[0])).astype(np.float64) * r
    _require_finite(conv, {"weight": w, "bias": b}, f"(times the input gain r = {r:g} of "
                                                     f"'{lif.name}')" if r != 1 else "")
    if observed_wx is not None:
        observed_wx = observed_wx * r
    grid = _grid_for(conv, lif, w, b, x_max, levels, observed_wx, opts, hint, limit,
                     rounding.slack)
    w_int = rounding(w / grid.weight_step(tau, levels))
    bias_v = np.round(b / grid.bias_step(tau))
    try:
        exp = np.array([bias_exponent(abs(v)) for v in bias_v], dtype=np.int64)
    except GridError:  # only reachable with a hint: layer_grid bounds the bias
        raise _fail(conv, f"bias {float(np.abs(b).max()):.6g} of '{lif.name}' maps to "
                          f"{int(np.abs(bias_v).max())}, beyond the 13-bit mantissa and 3-bit "
                          f"exponent ({BIAS_MAX}) at scale {grid.scale:.6g} "
                          f"({grid.limited_by})") from None
    mant = np.round(bias_v / 2.0 ** exp).astype(np.int64)
    # Exact integer checks: with a hint (or a bug) the grid could be unsafe; never clip.
    rows_int = np.abs(w_int).reshape(w_int.shape[0], -1)
    worst_a = float(rows_int.sum(axis=1).max()) * x_max
    bound_kind = "worst-case"
    if opts.overflow == "calibrated" and observed_wx is not None:
        # the bound the calibrated grid was chosen for (layer_grid): margin * the observed
        # max |W.x| on the float weights, plus the weights' rounding slack
        calibrated_a = (observed_wx * opts.margin * grid.scale / (64.0 * tau)
                        + rows_int.shape[1] * x_max * rounding.slack)
        if calibrated_a < worst_a:
            worst_a, bound_kind = calibrated_a, "calibrated"
    worst_b = float(np.abs(mant << exp).max(initial=0))
    if np.abs(w_int).max(initial=0) > WEIGHT_MANT_MAX:
        raise _fail(conv, f"weight {float(np.abs(w).max()):.6g} maps to "
                          f"{int(np.abs(w_int).max())}, beyond the 8-bit mantissa (127) at "
                          f"scale {grid.scale:.6g} ({grid.limited_by})")
    if 64 * worst_a + worst_b >= limit:
        raise _fail(conv, f"{bound_kind} input {worst_a:.0f} and bias {worst_b:.0f} could overflow "
                          f"the 24-bit membrane at scale {grid.scale:.6g} ({grid.limited_by})")
    info = {"scale": grid.scale, "vth": grid.vth, "limited_by": grid.limited_by,
            "decay_exact": decay_exact,
            "weight_error": _rel_err(w, w_int * grid.weight_step(tau, levels)),
            "bias_error": _rel_err(b, (mant << exp) * grid.bias_step(tau))}
    sum_error = rounding.position_sum_error(w, w_int * grid.weight_step(tau, levels))
    if sum_error is not None:   # per weight up to a step, per channel's token sum < 1/2
        info["position_sum_error"] = sum_error
    if not decay_exact:  # never silently: the realised time constant and decay factor
        info.update(dv=dv, tau_loihi=tau_loihi,
                    decay_error=abs((1.0 - dv / DECAY_UNITY) - (1.0 - 1.0 / tau)))
    info.update({k: lif.attrs[k] for k in ("r", "spike_if") if k in lif.attrs})
    return w_int, {
        "du": np.array(DECAY_UNITY - 1, dtype=np.int64),
        "dv": np.array(dv, dtype=np.int64),
        "vth": np.array(grid.vth, dtype=np.int64),
        "bias_mant": mant.reshape(-1, 1, 1),
        "bias_exp": exp.reshape(-1, 1, 1),
    }, info


def _require_finite(node: Node, arrays: Dict[str, np.ndarray], how: str = "") -> None:
    """NaN or infinity has no integer on any grid: name it, instead of letting it surface as
    an 8-bit overflow or a threshold below one step (Graph.validate refuses non-finite
    parameters; this catches values that became non-finite on the way, e.g. overflowing)."""
    for name, values in arrays.items():
        problem = non_finite(np.asarray(values))
        if problem:
            raise _fail(node, f"{name}{' ' + how if how else ''} {problem}; NaN and infinity "
                              "have no fixed-point value: fix the model's weights")


def _rel_err(ref: np.ndarray, approx: np.ndarray) -> float:
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(ref - approx) / den) if den > 0 else 0.0


def _quantize_attention_lif(attn: Node, lif: Node, time_steps: int):
    """Gain g, saturation and LIF parameters for the attention LIF fed by g * counts.

    The float LIF (tau = 2) is H_t = V_{t-1}/2 + X_t/2 with X_t = s * c_t, fired (and reset
    to 0) on H_t >= V_th. Loihi computes v_t = trunc(v_{t-1}/2) + 64 a_t + bias and fires on
    v_t > 64 vth. With a_t = g c_t, the real R_t = S H_t (S = 64 tau g / s) follows
    R_t = R_{t-1}/2 + 64 g c_t, and E_t = floor(R_t) follows E_t = floor(E_{t-1}/2) + 64 g c_t
    exactly (nested floors of halvings). The threshold K = S V_th = 64 vth is a multiple of 64,
    so Loihi's strict ``v > 64 vth`` needs v = E + 1: a bias of +1 per step keeps v_t = E_t + 1
    whenever E_{t-1} is even (floor((E+1)/2) = E/2), also after a reset to 0 (floor(1/2) = 0).
    Then v_t > 64 vth <=> E_t >= K <=> R_t >= K <=> H_t >= V_th: every spike is the float one.
    E_{t-1} is even when every contribution 64 g c / 2^m, m <= T - 2 halvings, is an even
    integer: g = 2^max(0, T-7) suffices (at T = 4, g = 1; at T = 16, g = 512).

    Counts c >= tau V_th / s fire whatever the state (V >= 0): the attention node sends
    min(c, that saturation), which changes no spike and bounds the membrane by
    v <= 32 vth + 64 g saturation + 1 (about 1.5 K) whatever the token count N d.

    Where tau != 2 or tau V_th / s is not a dyadic fraction, the old approximation stays:
    g as large as the 24-bit bound allows (at most 2^(T-1)), exact=False.
    """
    scale_s, v_th = float(attr(attn, "scale")), float(attr(lif, "v_threshold"))
    tau = float(attr(lif, "tau"))
    d = attn.shape[0] // attr(attn, "num_heads")
    count_max = attn.shape[1] * attn.shape[2] * d
    zero = np.zeros((1, 1, 1), dtype=np.int64)
    common = {"du": np.array(DECAY_UNITY - 1, dtype=np.int64),
              "dv": np.array(round(DECAY_UNITY / tau), dtype=np.int64)}
    fire_alone = tau * v_th / scale_s            # counts >= this fire on their own
    g = 1 << max(0, time_steps - 7)
    while not float(g * fire_alone).is_integer() and g < 2 ** 16:
        g <<= 1                                  # a dyadic fire_alone becomes integral
    vth = g * fire_alone                         # K / 64
    saturation = math.ceil(fire_alone)
    # a silent v <= 64 vth halves to <= 32 vth, plus at most 64 g saturation and the bias
    if tau == 2.0 and float(vth).is_integer() and 1 <= vth <= VTH_MAX and \
            32 * vth + 64 * g * saturation + 1 <= V_MAX:
        saturation = min(saturation, count_max)
        params = {**common, "vth": np.array(int(vth), dtype=np.int64),
                  "bias_mant": np.ones((1, 1, 1), dtype=np.int64), "bias_exp": zero}
        info = {"scale": 64 * tau * g / scale_s, "exact": True, "saturation": saturation,
                "limited_by": "attention gain"}
        return g, saturation, params, info
    # approximation: a_in = g * c: 2 * (64 g c_max) < 2^23 (no bias) bounds g
    g_max = max(1, (STATE_LIMIT - 1) // (64 * count_max))
    g = 1 << min(int(math.log2(g_max)), max(0, time_steps - 1))
    scale = 64 * tau * g / scale_s          # v = S * H
    exact_vth = scale * v_th / 64
    vth = int(exact_vth) - 1 if float(exact_vth).is_integer() else math.floor((scale * v_th - 1) / 64)
    if not 0 <= vth <= VTH_MAX:
        raise _fail(lif, f"attention threshold maps to vth {vth}, outside 0..{VTH_MAX}")
    params = {**common, "vth": np.array(vth, dtype=np.int64), "bias_mant": zero,
              "bias_exp": zero}
    return g, None, params, {"scale": scale, "exact": False, "limited_by": "attention gain"}


# -- the pass -------------------------------------------------------------------------------
def quantize(graph: Graph, calibration: Optional[Dict[str, float]] = None,
             options: QuantizeOptions = QuantizeOptions()) -> Graph:
    """Float graph (after ``float_passes``) -> Loihi fixed-point graph.

    ``calibration``: for ``overflow="calibrated"``, node name of each conv2d -> the largest
    |W.x| observed on calibration data (see ``calibrate``).
    """
    if options.overflow not in ("worst-case", "calibrated"):
        raise ValueError(f"overflow must be 'worst-case' or 'calibrated', got {options.overflow!r}")
    if not options.margin > 0:  # a negative margin would turn the state bound off
        raise ValueError(f"margin must be > 0, got {options.margin!r}")
    leftovers = graph.by_op("batchnorm", "maxpool2d")
    if leftovers:
        raise _fail(leftovers[0], "run float_passes (BN folding, max-pool rewrite) before quantize")
    return Quantizer(graph, calibration, options).run()


class Quantizer:
    """The float -> quantized rewrite: one ``op_<name>`` handler per FLOAT op after the
    passes; each emits the quantized node(s) for its float node (or nothing, when another
    handler emitted them together: the attention LIF). The value-range analysis runs along,
    so every handler sees the bounds of the quantized nodes it reads."""

    def __init__(self, graph: Graph, calibration: Optional[Dict[str, float]],
                 options: QuantizeOptions):
        self.graph, self.calibration, self.options = graph, calibration, options
        self.out = Graph(meta={**graph.meta, "stage": "quantized",
                               "quantization": {"overflow": options.overflow,
                                                "margin": options.margin,
                                                "input_bits": INPUT_BITS,
                                                "weight_mantissa_max": WEIGHT_MANT_MAX}})
        self.layers: Dict[str, dict] = {}
        self.ranges = ValueRange(self.out)  # incremental: each emitted node's bound
        self.bounds = self.ranges.values
        self.pending_lif: Dict[str, dict] = {}  # LIF name -> parameters chosen with its conv
        self.hints: Dict[str, int] = dict(graph.meta.get("loihi_hints", {}).get("vth", {}))
        unknown = sorted(set(self.hints) - {n.name for n in graph.by_op("lif")})
        if unknown:  # hints of another model: using the rest would mix two grids
            raise IRError(f"the quantization hints name LIF layer(s) {unknown} that this graph "
                          "does not have: they belong to another model; re-run quantization-"
                          "aware training on this model or save the checkpoint without hints")

    def run(self) -> Graph:
        for node in self.graph:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise _fail(node, "op not supported by the Loihi quantizer")
            handler(node)
        self.out.meta["quantization"]["layers"] = self.layers
        return self.out.validate()

    def emit(self, node: Node) -> None:
        self.out.add(node)
        self.bounds[node.name] = check_port_range(node, self.ranges.call(node))

    # -- handlers ---------------------------------------------------------------------------
    def op_input(self, node: Node) -> None:
        attrs = dict(node.attrs)
        if attr(node, "encoding") == "analog":
            lo, hi = np.zeros(1), np.ones(1)  # inputs are images in [0, 1]
            stats = normalisation(node)
            if stats is not None:
                lo, hi = (lo - stats[0]) / stats[1], (hi - stats[0]) / stats[1]
            span = float(max(np.abs(lo).max(), np.abs(hi).max()))
            signed = bool((lo < 0).any())
            full = (1 << (INPUT_BITS - 1)) - 1 if signed else (1 << INPUT_BITS) - 1
            scale = full / span
            levels = self.options.input_levels
            if levels is None:
                levels = self.graph.meta.get("loihi_hints", {}).get("input_levels")
            if levels is not None:
                if not 1 <= levels * span <= full:
                    raise _fail(node, f"input_levels {levels} does not fit "
                                      f"{INPUT_BITS}-bit graded input (span {span:.4g})")
                scale = float(levels)
            attrs.update(encoding="graded", bits=INPUT_BITS, signed=signed,
                         input_scale=scale, max_abs=int(math.ceil(scale * span)))
        elif attr(node, "encoding") == "counts":   # integer counts travel unchanged
            count = max_count(node)
            attrs.update(bits=count.bit_length(), signed=False, max_abs=count)
        else:
            attrs.update(max_abs=1)
        self.emit(Node(node.name, "input", [], node.shape, {}, attrs))

    def op_conv2d(self, node: Node) -> None:
        """Checked here, emitted by the LIF it feeds (:meth:`op_lif`): the LIF's grid may
        depend on every conv feeding it."""
        consumers = self.graph.consumers(node.name)
        if len(consumers) != 1 or consumers[0].op != "lif":
            raise _fail(node, "every conv2d must feed exactly one LIF (its membrane); "
                              f"found consumers {[c.name for c in consumers]}")

    def _conv_grid(self, conv: Node, lif: Node) -> None:
        """A LIF fed by one conv: the conv's integer weights on the LIF's grid."""
        x_max = self.ranges.fan_in(conv, [self.bounds[i] for i in conv.inputs])
        src = self.out[conv.inputs[0]]
        scale = attr(src, "input_scale") if src.op == "input" else None
        levels = 1.0 if scale is None else float(scale)
        if levels != 1.0 and len(conv.inputs) != 1:
            raise _fail(conv, "a graded image input must be the conv's only input")
        observed = None if self.calibration is None else self.calibration.get(conv.name)
        w_int, lif_params, info = _quantize_lif_layer(
            conv, lif, x_max, levels, observed, self.options, self.hints.get(lif.name),
            self._rounding([conv]))
        self._emit_conv(conv, w_int)
        self.layers[lif.name] = {"input": conv.name, **info}
        self.pending_lif[lif.name] = lif_params

    def _joint_grid(self, convs: List[Node], lif: Node) -> None:
        """A LIF fed by several convs (the membrane shortcut: the IR sums a node's inputs):
        one grid for their concatenated weights and summed biases, as if one conv read all
        their (binary) inputs; worst-case bound (no calibration of the sum)."""
        for conv in convs:
            for i in conv.inputs:
                if not OPS[self.out[i].op].emits_spikes(self.out[i].attrs):
                    raise _fail(conv, f"input '{i}' is not binary spikes; a LIF fed by several "
                                      f"convs ('{lif.name}') needs spikes into every one")
        rows = [c.params["weight"].reshape(c.params["weight"].shape[0], -1) for c in convs]
        bias = sum(c.params.get("bias", np.zeros(rows[0].shape[0])).astype(np.float64)
                   for c in convs)
        joint = Node(f"{lif.name}.inputs", "conv2d", [], lif.shape,
                     {"weight": np.concatenate(rows, axis=1)[:, :, None, None], "bias": bias},
                     {"stride": [1, 1], "padding": [0, 0], "groups": 1})
        w_int, lif_params, info = _quantize_lif_layer(
            joint, lif, 1.0, 1.0, None, self.options, self.hints.get(lif.name),
            self._rounding(convs))
        w_int = w_int.reshape(w_int.shape[0], -1)
        start = 0
        for conv, r in zip(convs, rows):
            part = w_int[:, start:start + r.shape[1]]
            start += r.shape[1]
            self._emit_conv(conv, part.reshape(conv.params["weight"].shape))
        self.layers[lif.name] = {"input": convs[0].name, "inputs": [c.name for c in convs],
                                 **info}
        self.pending_lif[lif.name] = lif_params

    def _rounding(self, convs: List[Node]) -> WeightRounding:
        return WeightRounding([(int(np.prod(c.params["weight"].shape[1:])),
                                token_mean_positions(c, self.graph[c.inputs[0]].shape))
                               for c in convs])

    def _emit_conv(self, conv: Node, w_int: np.ndarray) -> None:
        self.emit(Node(conv.name, "conv2d", conv.inputs, conv.shape,
                       {"weight": w_int.astype(np.int8)},
                       {**conv.attrs, "weight_exp": 0,
                        "graded_input": _is_graded(self.out, conv.inputs)}))

    def op_lif(self, node: Node) -> None:
        srcs = [self.graph[i] for i in node.inputs]
        if len(srcs) == 1 and srcs[0].op == "spiking_attention":
            return  # emitted together with the attention node
        if not srcs or any(s.op != "conv2d" for s in srcs):
            raise _fail(node, "a LIF must be fed by conv2d nodes or one spiking_attention")
        if len(srcs) == 1:
            self._conv_grid(srcs[0], node)
        else:
            self._joint_grid(srcs, node)
        params = self.pending_lif.pop(node.name)
        self.emit(Node(node.name, "loihi_lif", node.inputs, node.shape, params,
                       {"tau": attr(node, "tau"), "v_threshold": attr(node, "v_threshold"),
                        "scale": self.layers[node.name]["scale"],
                        **{k: node.attrs[k] for k in ("r", "spike_if") if k in node.attrs}}))

    def op_spiking_attention(self, node: Node) -> None:
        lifs = self.graph.consumers(node.name)
        if len(lifs) != 1 or lifs[0].op != "lif":
            raise _fail(node, "spiking attention must feed exactly one LIF")
        if lif_attrs(lifs[0])[2:] != (1.0, ">="):
            raise _fail(lifs[0], "the attention LIF must be the paper's (r = 1, fire on >=)")
        for role, src in zip(("q", "k", "v"), node.inputs):
            if self.out[src].op != "loihi_lif":
                raise _fail(node, f"input {role} ('{src}') must be binary LIF spikes")
        g, saturation, params, info = _quantize_attention_lif(node, lifs[0],
                                                              self.graph.time_steps)
        attrs = {**node.attrs, "gain": g}
        if saturation is not None:
            attrs["saturation"] = saturation
        self.emit(Node(node.name, "spiking_attention", node.inputs, node.shape, {}, attrs))
        self.emit(Node(lifs[0].name, "loihi_lif", [node.name], lifs[0].shape, params,
                       {"tau": attr(lifs[0], "tau"), "v_threshold": attr(lifs[0], "v_threshold"),
                        "scale": info["scale"], "exact": info["exact"]}))
        self.layers[lifs[0].name] = {"input": node.name, "gain": g, **info}

    def op_sumpool2d(self, node: Node) -> None:
        self.emit(node.copy())

    def op_threshold(self, node: Node) -> None:
        """Integer counts (sum pools of binary spikes: the max-pool rewrite, the spike-driven
        attention's ANDs and ORs) compared with the threshold: exact as it is."""
        for i in node.inputs:
            src = self.out[i]
            if src.op != "sumpool2d" or not all(
                    OPS[self.out[j].op].emits_spikes(self.out[j].attrs) for j in src.inputs):
                raise _fail(node, f"input '{i}' must be a sumpool2d of binary spikes (integer "
                                  "counts); no other threshold input is supported")
        self.emit(node.copy())

    def op_sum(self, node: Node) -> None:
        self.emit(node.copy())

    def op_token_time_mean(self, node: Node) -> None:
        self.emit(Node(node.name, "token_time_sum", node.inputs, node.shape, {}, {}))

    def op_affine(self, node: Node) -> None:
        src = self.graph[node.inputs[0]]
        if src.op != "token_time_mean":
            raise _fail(node, "only the classification head (affine after the token/time "
                              "mean) is supported")
        tokens = token_count(self.graph[src.inputs[0]])
        self.emit(_quantize_head(node, self.graph.time_steps * tokens))

    def op_output(self, node: Node) -> None:
        self.emit(node.copy())


def _is_graded(graph: Graph, inputs) -> bool:
    """True unless every input is a binary spike source (LIF / threshold / event input)."""
    def binary(node: Node) -> bool:
        return OPS[node.op].emits_spikes(node.attrs)
    return not all(binary(graph[i]) for i in inputs) or len(inputs) > 1


def _quantize_head(node: Node, tokens_times_steps: int) -> Node:
    w = node.params["weight"].astype(np.float64)
    b = node.params.get("bias", np.zeros(w.shape[0])).astype(np.float64)
    _require_finite(node, {"weight": w, "bias": b})
    # The head's scale only has to keep the argmax: weights fill the 8-bit range; an
    # all-zero weight matrix (the prediction is the argmax of the bias) scales the bias instead.
    w_max, b_max = float(np.abs(w).max(initial=0.0)), float(np.abs(b).max(initial=0.0))
    s_h = WEIGHT_MANT_MAX / (w_max if w_max > 0 else b_max if b_max > 0 else WEIGHT_MANT_MAX)
    return Node(node.name, "affine", node.inputs, node.shape,
                {"weight": np.round(w * s_h).astype(np.int8),
                 "bias": np.round(b * s_h * tokens_times_steps).astype(np.int64)},
                {"scale": s_h, "weight_error": _rel_err(w, np.round(w * s_h) / s_h)})
