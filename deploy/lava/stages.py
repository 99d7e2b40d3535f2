"""The lowered network as data: stage kinds, source encodings, stages and the network.

A :class:`LavaNetwork` is what :mod:`deploy.lava.lowering` produces and
:mod:`deploy.lava.build` instantiates for each run: one :class:`Stage` per Lava process,
with its :class:`StageKind`. The kind resolves, in this one place, the Lava process class
a stage becomes, the name of its output port and which of its parameters are plan data
rather than constructor arguments.

Where the processes run with Intel's lava-loihi (``Loihi2HwCfg``): ``Conv``, ``LIF`` and
``LIFReset`` have neuro-core models; the source ``RingBuffer``, ``SpikingAttention``,
``DelayedSum`` and ``Readout`` have only Python ProcessModels, which run on the host CPU
behind C adapters (``compiler.resources.HOST_PROCESSES`` names the same four classes).
:meth:`LavaNetwork.host_processes` counts those stages; :meth:`LavaNetwork.host_edges` says
which of them are the network's edges (input injection, output reading) rather than a
round trip off the chip in the middle of the network. Probe taps (``Tap``) are Python processes
too, but not part of the plan.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from lava.proc.conv.process import Conv
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF, LIFReset

from compiler.ir import IRError, Node

from deploy.lava.attention.process import SpikingAttention
from deploy.lava.graded.process import DelayedSum
from deploy.lava.io.process import Readout


class LoweringError(IRError):
    """The graph cannot be lowered; the message names the node."""


def fail(node: Node, msg: str) -> LoweringError:
    """A :class:`LoweringError` naming ``node`` (``layer 'name' (op): msg``)."""
    return LoweringError(f"layer '{node.name}' ({node.op}): {msg}")


class StageKind(enum.Enum):
    """What a stage is in Lava: ``label`` (summaries), the ``process`` class it becomes,
    the ``out_port`` its consumers connect to (None: the readout talks to the host only)
    and ``plan_only``, the stage parameters that are not constructor arguments."""

    SOURCE = ("source", RingBuffer, "s_out", ("shape", "encoding"))
    CONV = ("conv", Conv, "a_out", ("output_shape",))
    LIF = ("lif", LIF, "s_out", ())
    LIF_RESET = ("lif_reset", LIFReset, "s_out", ())
    ATTENTION = ("spiking_attention", SpikingAttention, "a_out", ())
    DELAYED_SUM = ("delayed_sum", DelayedSum, "s_out", ())
    READOUT = ("readout", Readout, None, ())

    def __init__(self, label: str, process: type, out_port: Optional[str],
                 plan_only: Tuple[str, ...]) -> None:
        self.label = label
        self.process = process
        self.out_port = out_port
        self.plan_only = plan_only

    def __str__(self) -> str:
        return self.label

    @property
    def host_only(self) -> bool:
        """The process has only a Python ProcessModel (host CPU under lava-loihi)."""
        return self in HOST_ONLY_KINDS


#: stage kinds whose Lava process has only a Python ProcessModel
HOST_ONLY_KINDS = frozenset({StageKind.SOURCE, StageKind.ATTENTION, StageKind.DELAYED_SUM,
                             StageKind.READOUT})
#: host-only kinds that sit at the network's edges, with their role
EDGE_ROLES: Dict[StageKind, str] = {StageKind.SOURCE: "input injection",
                                    StageKind.READOUT: "output reading"}


class SourceEncoding(enum.Enum):
    """What the input ``RingBuffer`` streams, one message per Lava step.

    The IR's input encodings map onto these (the parameter strategy of
    :mod:`deploy.lava.params` says which it accepts):

    ======  ==============================  =============================================
    value   from the IR's encoding          payload
    ======  ==============================  =============================================
    GRADED  ``graded`` (quantized graphs)   integers, ``input_scale`` levels per unit
                                            (int32, < 2**23: the 24-bit graded payload)
    GRADED  ``analog`` (float graphs)       float64, normalised with the input node's
                                            ``mean``/``std`` (``encode_float``)
    GRADED  ``counts`` (both levels)        event counts 0..``max_count`` as they are
                                            (int32 / float64)
    SPIKES  ``spikes`` (both levels)        binary event frames (0/1)
    ======  ==============================  =============================================
    """

    GRADED = "graded"
    SPIKES = "spikes"


@dataclass
class Stage:
    """One Lava process of the network."""

    name: str                      # unique; the node's name, '<src>+<d>' for a delay line,
                                   # '<src>.relay<k>' (+ '.conv') for a stock delay relay
    kind: StageKind
    node: str                      # graph node implemented (the delayed node for delay lines
                                   # and relays)
    lag: int                       # output at Lava step s*T + t + lag (see deploy.lava.timing)
    params: Dict[str, Any] = field(default_factory=dict)   # process constructor arguments
    inputs: List[Tuple[str, str]] = field(default_factory=list)  # (source stage, in-port)

    @property
    def shape(self) -> Tuple[int, ...]:
        """Output shape in Lava layout."""
        p = self.params
        if self.kind is StageKind.CONV:
            return tuple(p["output_shape"])
        return tuple(p["shape"])

    def constructor_args(self) -> Dict[str, Any]:
        """The parameters the process constructor takes (without the plan-only ones)."""
        return {k: v for k, v in self.params.items() if k not in self.kind.plan_only}


@dataclass
class LavaNetwork:
    """A lowered graph: the stages in build order, plus what running needs."""

    stages: Dict[str, Stage]
    time_steps: int
    input_shape: Tuple[int, ...]           # (C, H, W), the compiler's layout
    input_encoding: SourceEncoding
    num_classes: int
    lags: Dict[str, int]                   # node -> lag
    providers: Dict[str, str]              # node -> stage whose output is the node's
    readout: str                           # stage name of the readout
    meta: Dict[str, Any] = field(default_factory=dict)
    numeric: str = "fixed"                 # "fixed" (integer models) | "float" (floating_pt)

    @property
    def max_lag(self) -> int:
        return max(self.lags.values())

    def probe_names(self) -> List[str]:
        """Nodes whose per-step output can be probed (all in-loop nodes)."""
        return [n for n, s in self.providers.items()
                if self.stages[s].kind.out_port is not None]

    def host_processes(self) -> Dict[str, int]:
        """Stage-kind label -> number of stages whose process has only a Python
        ProcessModel (host CPU under lava-loihi), e.g. ``{"source": 1,
        "spiking_attention": 1, "delayed_sum": 3, "readout": 1}``; kinds absent: omitted."""
        return dict(Counter(st.kind.label for st in self.stages.values() if st.kind.host_only))

    def host_edges(self) -> Dict[str, str]:
        """Of :meth:`host_processes`, the labels at the network's edges -> their role
        (``"source"``: input injection, ``"readout"``: output reading). Every other host
        process is a round trip between the chip and the host inside the network."""
        present = {st.kind for st in self.stages.values()}
        return {kind.label: role for kind, role in EDGE_ROLES.items() if kind in present}

    def summary(self) -> str:
        lines = [f"{'stage':<34} {'process':<17} {'lag':>3}  inputs"]
        for st in self.stages.values():
            ins = ", ".join(f"{s}->{p}" for s, p in st.inputs) or "-"
            lines.append(f"{st.name:<34} {st.kind.label:<17} {st.lag:>3}  {ins}")
        lines.append(f"{len(self.stages)} Lava processes (+1 Tap per probe), "
                     f"T = {self.time_steps}, pipeline depth = {self.max_lag} steps")
        return "\n".join(lines)


__all__ = ["EDGE_ROLES", "HOST_ONLY_KINDS", "LavaNetwork", "LoweringError", "SourceEncoding",
           "Stage", "StageKind", "fail"]
