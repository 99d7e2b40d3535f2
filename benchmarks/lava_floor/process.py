"""The processes of the floor networks: messages in, zeros out, nothing else."""
from __future__ import annotations

from typing import Sequence, Tuple

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess

#: in-ports of a Mirror: the most distinct in-ports any stage of a lowered network has
MIRROR_INPUTS = 4


class Relay(AbstractProcess):
    """Receives one value per step and sends it on: a process that costs Lava's per-step
    synchronisation and one message, and no arithmetic."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a_in = InPort(shape=(1,))
        self.s_out = OutPort(shape=(1,))


class Mirror(AbstractProcess):
    """A stage of a lowered network without its arithmetic: the same in-ports (``in0`` ..,
    each the shape of the out-port that feeds it; unused ones (1,) and unconnected) and the
    same out-port shape, receiving every message and sending zeros each step."""

    def __init__(self, *, out_shape: Tuple[int, ...], in_shapes: Sequence[Tuple[int, ...]],
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if len(in_shapes) > MIRROR_INPUTS:
            raise ValueError(f"a Mirror has at most {MIRROR_INPUTS} in-ports, got "
                             f"{len(in_shapes)}")
        shapes = list(in_shapes) + [(1,)] * (MIRROR_INPUTS - len(in_shapes))
        for i, shape in enumerate(shapes):
            setattr(self, f"in{i}", InPort(shape=tuple(shape)))
        self.out = OutPort(shape=tuple(out_shape))
