"""ProcessModels of :class:`Readout` and :class:`Tap` (fixed_pt; the Readout
also has a floating_pt model)."""
from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from deploy.lava.io.process import Readout, Tap


class _AbstractReadoutModel(PyLoihiProcessModel):
    a_in = None
    logits = None
    weight = None
    bias = None
    acc = None

    def run_spk(self) -> None:
        x = self.a_in.recv()
        p = self.proc_params
        k = self.time_step - 1 - p["lag"]          # global algorithmic index, 0-based
        if k < 0:
            return                                  # pipeline fill
        sample, t = divmod(k, p["time_steps"])
        if sample >= p["num_samples"]:
            return                                  # drain after the stream
        if t == 0:
            self.acc[:] = 0
        self.acc += x.reshape(-1, x.shape[-1]).sum(axis=0, dtype=self.acc.dtype)
        if t == p["time_steps"] - 1:
            self.logits.send(self.weight @ self._features() + self.bias)

    def _features(self) -> np.ndarray:
        return self.acc


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutFixed(_AbstractReadoutModel):
    """Exact int64 accumulation and head."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        if proc_params["divisor"] != 1:
            raise ValueError(f"Readout '{proc_params.get('name')}': the fixed-point model "
                             f"sums exactly and cannot divide by {proc_params['divisor']}; "
                             "fold the divisor into the head (token_time_sum)")

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    logits: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int64)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64)
    acc: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutFloat(_AbstractReadoutModel):
    """float64 accumulation; the head reads ``acc / divisor`` (the token/time mean)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    logits: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    acc: np.ndarray = LavaPyType(np.ndarray, float)

    def _features(self) -> np.ndarray:
        return self.acc / self.proc_params["divisor"]


@implements(proc=Tap, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTapFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        self.out.send(self.a_in.recv())


@implements(proc=Tap, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTapFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        self.out.send(self.a_in.recv())
