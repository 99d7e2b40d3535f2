"""``DelayedSum``: a graded relay with a built-in delay line on a second port.

    s_out[t] = a_in[t] + a_delayed[t - delay]          (int32; a_delayed[t] = 0 for t < 1)

Both in-ports sum their fan-in (as every Lava InPort does), so one process is

* a residual join (``sum`` node): the late branch into ``a_in``, the early
  (skip) branch into ``a_delayed`` with the latency difference as ``delay``;
* a pure delay line (only ``a_delayed`` connected);
* a pure relay (``delay = 0``, like ``lava.proc.graded.GradedVec`` with vth 0).

Like GradedVec it has no delay of its own: what arrives on ``a_in`` at step t
leaves at step t. On Loihi 2 the join maps to a GradedVec neuron (or straight
into the consumers' dendrites) and the delay to synaptic delays (DelayDense /
Conv delays, up to 62 steps), see docs/lava-backend.md.
"""
from __future__ import annotations

import typing as ty

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var


class DelayedSum(AbstractProcess):
    """``s_out[t] = a_in[t] + a_delayed[t - delay]`` on a graded vector.

    Parameters
    ----------
    shape : the vector's shape (any; Lava ``(W, H, C)`` maps here).
    delay : steps of delay on ``a_delayed`` (>= 0).
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], delay: int = 0,
                 name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        shape = tuple(int(s) for s in shape)
        super().__init__(shape=shape, delay=int(delay), name=name,
                         log_config=log_config)
        if int(delay) < 0:
            raise ValueError(f"DelayedSum: delay must be >= 0; got {delay}")
        self.a_in = InPort(shape=shape)
        self.a_delayed = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        # the delay line: slot (t mod delay) holds a_delayed[t - delay] until step t
        self.line = Var(shape=(max(int(delay), 1),) + shape, init=0)
