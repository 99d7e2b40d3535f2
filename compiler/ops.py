"""The op registry: every IR op described once.

Each :class:`OpSpec` says at which level the op exists (float graphs from the frontends,
quantized graphs from the ``quantize`` pass, or both), its parameters and attributes (with
types and defaults), how its inputs combine (summed, NIR's convention, or ordered roles),
what kind of value it outputs, and whether it reduces time (the readout). ``Graph.validate``
checks every node against its spec; consumers (executors, analyses, lowerings, exporters)
implement one ``op_<name>`` handler per op of the levels they serve, and
``tests/compiler/test_op_registry.py`` asserts that none is missing.

Adding an op: one ``OpSpec`` here, then one handler in each consumer the completeness test
names (docs/architecture.md, "Adding an op").
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from loihi_numerics.grid import SPIKE_RULES


class Level(enum.Enum):
    FLOAT = "float"            # what the frontends and NIR importers emit
    QUANTIZED = "quantized"    # what the quantize pass emits (integers, Loihi semantics)


FLOAT, QUANTIZED = Level.FLOAT, Level.QUANTIZED
BOTH = frozenset({FLOAT, QUANTIZED})


class Output(enum.Enum):
    """What an op sends downstream (decides binary vs graded messages, NIR sources, ...)."""
    SPIKES = "spikes"        # binary 0/1 per step
    GRADED = "graded"        # real (float level) or integer (quantized level) values per step
    BY_ENCODING = "encoding"  # the input node: spikes when its encoding is "spikes"


SUMMED = "summed"            # several inputs are added (NIR's convention)
SOURCE = ()                  # takes no input


@dataclass(frozen=True)
class Attr:
    """One attribute: ``kind`` is a JSON type name ("int", "float", "str", "bool",
    "int_or_pair", "float_list"); ``default`` None means required at ``required_at``."""
    name: str
    kind: str
    default: Any = None
    choices: Tuple[Any, ...] = ()
    levels: frozenset = BOTH              # levels at which the attribute may appear
    required_at: frozenset = frozenset()  # levels at which it must appear

    def check(self, value: Any) -> Optional[str]:
        """None when ``value`` is valid, else what is wrong."""
        ok = _KIND_CHECKS[self.kind](value)
        if not ok:
            return f"must be {_KIND_WORDS[self.kind]}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {list(self.choices)}, got {value!r}"
        return None


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return _is_int(v) or isinstance(v, (float, np.floating))


_KIND_CHECKS = {
    "int": _is_int,
    "float": _is_number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, (bool, np.bool_)),
    "int_or_pair": lambda v: _is_int(v) or (isinstance(v, (list, tuple)) and len(v) == 2
                                            and all(_is_int(x) for x in v)),
    "float_list": lambda v: isinstance(v, (list, tuple)) and all(_is_number(x) for x in v),
}
_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "a boolean",
               "int_or_pair": "an integer or a pair of integers",
               "float_list": "a list of numbers"}


def required(name: str, kind: str, *, at: frozenset = BOTH, choices=()) -> Attr:
    return Attr(name, kind, None, tuple(choices), at, at)


def optional(name: str, kind: str, default: Any = None, *, at: frozenset = BOTH,
             choices=()) -> Attr:
    return Attr(name, kind, default, tuple(choices), at, frozenset())


@dataclass(frozen=True)
class OpSpec:
    name: str
    levels: frozenset
    doc: str
    params: Tuple[str, ...] = ()               # required numpy arrays
    optional_params: Tuple[str, ...] = ()
    attrs: Tuple[Attr, ...] = ()
    inputs: Any = SUMMED                       # SUMMED, SOURCE or a tuple of ordered roles
    output: Output = Output.GRADED
    reduces_time: bool = False                 # output has no time axis (the readout)
    after_time_loop: bool = False              # computed once after all steps (the head)
    removed_by: Optional[str] = None           # float pass that rewrites it away before backends

    @property
    def attr_map(self) -> Dict[str, Attr]:
        return {a.name: a for a in self.attrs}

    @property
    def ordered_inputs(self) -> Optional[Tuple[str, ...]]:
        return self.inputs if isinstance(self.inputs, tuple) and self.inputs else None

    @property
    def is_source(self) -> bool:
        return self.inputs == SOURCE

    def emits_spikes(self, attrs: Dict[str, Any]) -> bool:
        if self.output is Output.BY_ENCODING:
            return attrs.get("encoding") == "spikes"
        return self.output is Output.SPIKES


_POOL = (required("kernel", "int_or_pair"), required("stride", "int_or_pair"),
         required("padding", "int_or_pair"))
_NORMALISATION = (optional("mean", "float_list"), optional("std", "float_list"))
_LIF_INFO = (optional("r", "float", 1.0), optional("spike_if", "str", ">=", choices=SPIKE_RULES))

OPS: Dict[str, OpSpec] = {s.name: s for s in (
    OpSpec("input", BOTH, "the sample: analog images (normalised with mean/std), spike "
           "frames, or event-count frames (integers 0..max_count per step, not normalised); "
           "quantized: graded integers (input_scale levels per unit), spikes or counts",
           attrs=(required("encoding", "str",
                           choices=("analog", "spikes", "counts", "graded")),
                  *_NORMALISATION,
                  optional("max_count", "int"),  # counts only: the largest count accepted
                  optional("input_scale", "float", at=frozenset({QUANTIZED})),  # graded only
                  optional("max_abs", "int", 1, at=frozenset({QUANTIZED})),  # largest |x_int|
                  optional("bits", "int", at=frozenset({QUANTIZED})),
                  optional("signed", "bool", at=frozenset({QUANTIZED}))),
           inputs=SOURCE, output=Output.BY_ENCODING),
    OpSpec("conv2d", BOTH, "2-D convolution (a token-wise Linear is a 1x1 conv over the token "
           "grid); quantized: int8 weights, bias moved into the LIF",
           params=("weight",), optional_params=("bias",),
           attrs=(required("stride", "int_or_pair"), required("padding", "int_or_pair"),
                  required("groups", "int"),
                  optional("weight_exp", "int", 0, at=frozenset({QUANTIZED})),
                  optional("graded_input", "bool", False, at=frozenset({QUANTIZED})),
                  # a token mean composed with a conv (distribute_membrane): quantize rounds
                  # its kernel along the token positions
                  optional("token_mean", "bool", False))),
    OpSpec("batchnorm", frozenset({FLOAT}), "eval-mode BatchNorm per channel",
           params=("gamma", "beta", "mean", "var"), attrs=(required("eps", "float"),),
           removed_by="fold_batchnorm"),
    OpSpec("lif", frozenset({FLOAT}), "LIF with hard reset to 0: H = V + (r X - V)/tau, fire "
           "on H >= v_threshold (paper) or H > v_threshold",
           attrs=(required("tau", "float"), required("v_threshold", "float"), *_LIF_INFO),
           output=Output.SPIKES),
    OpSpec("loihi_lif", frozenset({QUANTIZED}), "Loihi 2 CUBA LIF (Lava's LIFReset)",
           params=("du", "dv", "vth", "bias_mant", "bias_exp"),
           attrs=(optional("tau", "float"), optional("v_threshold", "float"),
                  optional("scale", "float"), optional("exact", "bool"), *_LIF_INFO),
           output=Output.SPIKES),
    OpSpec("maxpool2d", frozenset({FLOAT}), "max pool (exact on binary spikes as sum pool + "
           "threshold)", attrs=_POOL, removed_by="maxpool_to_sumpool"),
    OpSpec("sumpool2d", BOTH, "window sum with zero padding", attrs=_POOL),
    OpSpec("threshold", BOTH, "1 where the input >= threshold",
           attrs=(required("threshold", "float"),), output=Output.SPIKES),
    OpSpec("spiking_attention", BOTH, "per head Q.K^T.V.scale on binary token grids; "
           "quantized: integer counts, at most 'saturation' (where set), times gain",
           attrs=(required("num_heads", "int"), required("scale", "float"),
                  required("gain", "int", at=frozenset({QUANTIZED})),
                  # counts this large make the next LIF fire whatever its state: larger ones
                  # are sent as this (exact, and it bounds the 24-bit membrane)
                  optional("saturation", "int", at=frozenset({QUANTIZED}))),
           inputs=("q", "k", "v")),
    OpSpec("sum", BOTH, "graded residual sum of its inputs"),
    OpSpec("token_mean", frozenset({FLOAT}), "mean over tokens (H*W) per time step: "
           "(D, H, W) -> (D, 1, 1) (the spike-driven head's pooling of membrane inputs)",
           removed_by="distribute_membrane"),
    OpSpec("token_time_mean", frozenset({FLOAT}), "mean over tokens (H*W) and time steps",
           reduces_time=True),
    OpSpec("token_time_sum", frozenset({QUANTIZED}), "integer sum over tokens and time steps",
           reduces_time=True),
    OpSpec("affine", BOTH, "x W^T + b (the classification head); quantized: int8 weights, "
           "bias scaled by T*N", params=("weight",), optional_params=("bias",),
           attrs=(optional("scale", "float", at=frozenset({QUANTIZED})),
                  optional("weight_error", "float", at=frozenset({QUANTIZED}))),
           after_time_loop=True),
    OpSpec("output", BOTH, "the logits (prediction: argmax)", after_time_loop=True),
)}


def spec(op: str) -> OpSpec:
    return OPS[op]


def ops_at(level: Level, *, after_passes: bool = False) -> Tuple[str, ...]:
    """Ops that graphs of ``level`` may contain; ``after_passes`` drops the float ops the
    float passes rewrite away (what quantize, lowering and NIR export see)."""
    return tuple(name for name, s in OPS.items()
                 if level in s.levels and not (after_passes and s.removed_by))


def handled_ops(consumer: Any) -> Tuple[str, ...]:
    """Ops for which ``consumer`` (a class or instance) defines ``op_<name>``."""
    return tuple(name for name in OPS if callable(getattr(consumer, f"op_{name}", None)))


def missing_handlers(consumer: Any, level: Level, *, after_passes: bool = False,
                     exclude: Iterable[str] = ()) -> Tuple[str, ...]:
    have = set(handled_ops(consumer)) | set(exclude)
    return tuple(op for op in ops_at(level, after_passes=after_passes) if op not in have)


def attr(node, name: str) -> Any:
    """A node attribute with its registry default (``node.attrs[name]`` when present)."""
    if name in node.attrs:
        return node.attrs[name]
    a = OPS[node.op].attr_map.get(name)
    if a is None:
        raise KeyError(f"op '{node.op}' has no attribute '{name}' in the registry")
    return a.default


@dataclass(frozen=True)
class MetaKey:
    """A graph-level metadata entry with a checked value: a positive integer ("count") or
    one of ``choices``."""
    name: str
    kind: str
    required: bool = False
    choices: Tuple[str, ...] = ()

    def check(self, value: Any) -> Optional[str]:
        if self.kind == "count":
            if not _is_int(value) or value < 1:
                return f"must be an integer >= 1, got {value!r}"
        elif value not in self.choices:
            return f"must be one of {list(self.choices)}, got {value!r}"
        return None


#: graph-level metadata with a checked value (others, e.g. "config" or "quantization", are
#: free-form records written by the stage that owns them)
META: Dict[str, MetaKey] = {m.name: m for m in (
    MetaKey("time_steps", "count", required=True),
    MetaKey("num_classes", "count"),
    MetaKey("stage", "choice", choices=tuple(lv.value for lv in Level)),
)}

__all__ = ["Level", "FLOAT", "QUANTIZED", "BOTH", "Output", "SUMMED", "SOURCE", "Attr",
           "OpSpec", "OPS", "META", "spec", "ops_at", "handled_ops", "missing_handlers",
           "attr"]
