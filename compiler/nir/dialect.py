"""The "spikeform" NIR dialect: the names and conventions our exporter writes and our importer
reads back (docs/nir.md has the full mapping table).

Every float-IR node becomes STOCK NIR nodes, so that stock ``nir.read`` loads the file; what
NIR cannot say (names of summed nodes, attribute types, input order, attention roles, the
graph meta) travels as metadata strings under ``spikeform.*`` keys, which stock readers carry
along and ignore.

Version 2 writes only node types that norse / snntorch / sinabs import: a ``threshold`` is a
memoryless LIF (no toolchain imports NIR's Threshold), a padded ``sumpool2d`` a Conv2d (their
SumPool2d imports drop the padding), the readout's token mean a SumPool2d + Flatten + 1/N
Affine (only snntorch imports AvgPool2d). Version 1 files (Threshold, padded SumPool2d,
AvgPool2d) are refused with "re-export".
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Tuple

import numpy as np

from ..ir import IRError
from ..serialize import _jsonable

FORMAT = "spikeform-nir"
VERSION = 2   # 2: threshold as LIF, padded sum-pool as Conv2d, no AvgPool2d

# graph metadata
KEY_FORMAT = "spikeform.format"          # FORMAT: the dispatch key of read_nir_file
KEY_VERSION = "spikeform.version"
KEY_META = "spikeform.meta"              # IR graph meta as a JSON string (None cannot be stored)
KEY_ORDER = "spikeform.order"            # IR node names in topological order (HDF5 sorts names)
KEY_SUMS = "spikeform.sums"              # residual `sum` nodes: {name: {inputs, shape}}
KEY_CONVENTION = "spikeform.convention"  # the discretisation convention, in words
KEY_FRAGMENT = "spikeform.fragment"      # "true": a portable export, part of the network
KEY_CUT = "spikeform.cut"                # fragment: the nodes that were left out, and why
# node metadata
KEY_OP = "spikeform.op"                  # the IR op this NIR node carries
KEY_ATTRS = "spikeform.attrs"            # its IR attrs, JSON (exact types: ints stay ints)
KEY_INPUTS = "spikeform.inputs"          # its IR inputs in order (roles for attention)
KEY_SHAPE = "spikeform.shape"
KEY_PARAMS = "spikeform.params"          # the IR params it has (a conv without bias: ["weight"])
KEY_ROLE = "spikeform.role"              # helper nodes: what part of an IR node they are
KEY_PART_OF = "spikeform.part_of"
KEY_SPIKE_IF = "spikeform.spike_if"      # LIF: the rule on its stock v_threshold that gives
                                         # our spikes (">": NIR's own, see float32_below)
KEY_EXACT = "spikeform.stock_exact"      # how exactly the stock semantics match ours

NORMALIZE_SUFFIX = ".normalize"          # input normalisation (diagonal 1x1 Conv2d)
TOKEN_SUM_SUFFIX = ".token_sum"          # token_time_mean: SumPool2d over the token grid
TOKEN_MEAN_SUFFIX = ".token_mean"        # token_time_mean: its diagonal 1/N Affine
PORTABLE_OUTPUT_SUFFIX = ".output"       # fragment outputs: one per frontier node

DT = 1.0
CONVENTION = (
    "dt = 1 time step (forward Euler). LIF: v[t] = v[t-1] + (r * x[t] - v[t-1]) / tau "
    "(decay 1 - 1/tau, input gain r/tau; v_leak = 0); spike when v > v_threshold (NIR's rule; "
    "a neuron of the paper's rule v >= V_th is written with v_threshold = the largest float32 "
    "below V_th, the same spikes in float32 arithmetic, V_th itself in spikeform.attrs); "
    "then v = v_reset = 0. "
    "A LIF with tau = 1 and r = 1 is memoryless (v = x): an IR threshold. "
    "Several edges into one node are summed. Static (analog) inputs are the raw image in "
    "[0, 1] presented unchanged at every time step. The Output is a per-time-step value: "
    "the network's logits are its mean over all time steps (the prediction is the argmax).")


def dumps(value: Any, where: str) -> str:
    """Canonical JSON (sorted keys) of an IR value; non-JSON values are an IRError."""
    return json.dumps(_jsonable(value, where), sort_keys=True, allow_nan=False)


def loads(text: Any, where: str) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf8")
    if not isinstance(text, str):
        raise IRError(f"{where}: expected a JSON string, found {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IRError(f"{where}: invalid JSON ({e})") from None


def stock_threshold(theta: float, integer_input: bool) -> Tuple[float, str]:
    """(threshold for NIR's strict ``x > t``, how exact that is) for our ``x >= theta``.

    On integer-valued input (a sum-pool of binary spikes) ``x >= theta`` is exactly
    ``x > ceil(theta) - 0.5``; on other input the two rules differ only at ``x == theta``.
    """
    if integer_input and math.isfinite(theta):
        return float(math.ceil(theta)) - 0.5, "exact (integer-valued input)"
    return float32_below(theta), FLOAT32_EXACT


#: how exact the stock threshold of a ``>=`` neuron on real-valued input is
FLOAT32_EXACT = ("exact in float32 (v_threshold is the largest float32 below the model's "
                 "threshold, so NIR's v > v_threshold is the model's v >= threshold for every "
                 "float32 v; in float64 the rules differ only for v strictly between the two)")


def float32_below(theta: float) -> float:
    """The largest float32 strictly below ``theta``: for float32 ``v``, ``v > it`` is exactly
    ``v >= theta``. The other toolchains compute in float32 (norse and snntorch cast the
    file's arrays with ``.float()``), and trained, quantization-aware weights put membranes
    exactly on a threshold often enough for ``>`` at the threshold itself to change spikes."""
    if not math.isfinite(theta):
        return float(theta)
    below = np.float32(theta)
    if float(below) >= theta:
        below = np.nextafter(below, np.float32(-np.inf))
    return float(below)


def node_metadata(name: str, op: str, inputs, shape, attrs: Dict[str, Any],
                  params) -> Dict[str, str]:
    where = f"node '{name}' ({op})"
    return {KEY_OP: op, KEY_ATTRS: dumps(attrs, f"{where} attrs"),
            KEY_INPUTS: dumps(list(inputs), where), KEY_SHAPE: dumps(list(shape), where),
            KEY_PARAMS: dumps(sorted(params), where)}
