"""The process of the floor network: one int32 in, the same value out, nothing else."""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess


class Relay(AbstractProcess):
    """Receives one value per step and sends it on: a process that costs Lava's per-step
    synchronisation and one message, and no arithmetic."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a_in = InPort(shape=(1,))
        self.s_out = OutPort(shape=(1,))
