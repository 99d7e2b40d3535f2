"""ProcessModels of the floor processes (Lava finds models next to their process)."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from benchmarks.lava_floor.process import Mirror, Relay


@implements(proc=Relay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRelayModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        self.s_out.send(self.a_in.recv())


@implements(proc=Mirror, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMirrorModel(PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._zeros = None

    def run_spk(self) -> None:
        for port in (self.in0, self.in1, self.in2, self.in3):
            port.recv()
        if self._zeros is None:
            self._zeros = np.zeros(self.out.shape, dtype=np.int32)
        self.out.send(self._zeros)
