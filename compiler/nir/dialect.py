"""The "spikeform" NIR dialect: the names and conventions our exporter writes and our importer
reads back (docs/nir.md has the full mapping table).

Every float-IR node becomes STOCK NIR nodes, so that stock ``nir.read`` loads the file; what
NIR cannot say (names of summed nodes, attribute types, input order, attention roles, the
graph meta) travels as metadata strings under ``spikeform.*`` keys, which stock readers carry
along and ignore.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Tuple

from ..ir import IRError
from ..serialize import _jsonable

FORMAT = "spikeform-nir"
VERSION = 1

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
KEY_SPIKE_IF = "spikeform.spike_if"      # LIF / Threshold: our firing rule, ">=" or ">"
KEY_EXACT = "spikeform.stock_exact"      # how exactly the stock semantics match ours

NORMALIZE_SUFFIX = ".normalize"          # input normalisation (depthwise 1x1 Conv2d)
TOKEN_MEAN_SUFFIX = ".token_mean"        # token_time_mean: AvgPool2d over the token grid
PORTABLE_OUTPUT_SUFFIX = ".output"       # fragment outputs: one per frontier node

DT = 1.0
CONVENTION = (
    "dt = 1 time step (forward Euler). LIF: v[t] = v[t-1] + (r * x[t] - v[t-1]) / tau "
    "(decay 1 - 1/tau, input gain r/tau; v_leak = 0); spike when v > v_threshold (NIR's rule) "
    "or v >= v_threshold where the node's spikeform.spike_if says '>=' (Spikformer's rule; "
    "the two differ only when v equals the threshold exactly); then v = v_reset = 0. "
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
    return float(theta), "up to ties (x == threshold fires here, not in NIR)"


def node_metadata(name: str, op: str, inputs, shape, attrs: Dict[str, Any],
                  params) -> Dict[str, str]:
    where = f"node '{name}' ({op})"
    return {KEY_OP: op, KEY_ATTRS: dumps(attrs, f"{where} attrs"),
            KEY_INPUTS: dumps(list(inputs), where), KEY_SHAPE: dumps(list(shape), where),
            KEY_PARAMS: dumps(sorted(params), where)}
