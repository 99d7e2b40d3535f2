"""ProcessModels of :class:`~deploy.lava.graded.process.DelayedSum`."""
from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from deploy.lava.graded.process import DelayedSum


class _AbstractDelayedSumModel(PyLoihiProcessModel):
    a_in = None
    a_delayed = None
    s_out = None
    line = None

    def run_spk(self) -> None:
        now = self.a_in.recv()
        late = self.a_delayed.recv()
        delay = self.proc_params["delay"]
        if delay == 0:
            out = now + late
        else:
            slot = self.time_step % delay
            out = now + self.line[slot]
            self.line[slot] = late
        self.s_out.send(out)


@implements(proc=DelayedSum, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayedSumFixed(_AbstractDelayedSumModel):
    """int32 payloads; the sum wraps in int32 like Lava's fan-in."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_delayed: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    line: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)


@implements(proc=DelayedSum, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayedSumFloat(_AbstractDelayedSumModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_delayed: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    line: np.ndarray = LavaPyType(np.ndarray, float)
