"""Host-facing processes: ``Readout`` (token/time sum + integer head) and ``Tap``.

Both send their results through an OutPort flagged as an *external pipe* (the
mechanism of ``lava.proc.io.extractor.Extractor``): the host reads whole numpy
arrays from it after the run, instead of Lava's ``Var.get`` which ships arrays
one element at a time.

``Readout`` implements the ``token_time_sum -> affine`` tail of a quantized
graph (and the ``token_time_mean -> affine`` tail of a float graph) for a
stream of samples, one every ``time_steps`` Lava steps: the input for
algorithmic step t (1-based) of sample s arrives at Lava step
``s * time_steps + t + lag``. It sums the input over the tokens (axes W, H) and
the sample's ``time_steps`` steps, and after the sample's last step sends
``logits = weight @ acc + bias`` (int64, exact) on ``logits``; the
floating-point model sends ``weight @ (acc / divisor) + bias`` (float64), the
mean when ``divisor = time_steps * H * W``.

``Tap`` forwards what it receives at every step to the host (a probe).
"""
from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var


class Readout(AbstractProcess):
    """Per-sample integer logits of a streamed classifier.

    Parameters
    ----------
    shape : input shape, Lava ``(W, H, C)``.
    weight : array ``[K, C]``; bias : array ``[K]`` (integers for the fixed-point
        model, kept as int64; floats for the floating-point model, float64).
    divisor : the accumulated sum is divided by it before the head (floating-point
        model only; the fixed-point model requires 1).
    time_steps : algorithmic steps per sample (T).
    lag : Lava steps between algorithmic time and the input's arrival.
    num_samples : samples in the stream (one logits message each).
    """

    def __init__(self, *, shape: ty.Tuple[int, int, int], weight: np.ndarray,
                 bias: np.ndarray, time_steps: int, lag: int, num_samples: int,
                 divisor: int = 1, name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        shape = tuple(int(s) for s in shape)
        weight, bias = np.asarray(weight), np.asarray(bias).reshape(-1)
        kind = np.int64 if weight.dtype.kind in "iub" and bias.dtype.kind in "iub" \
            else np.float64
        weight, bias = weight.astype(kind), bias.astype(kind)
        super().__init__(shape=shape, time_steps=int(time_steps), lag=int(lag),
                         num_samples=int(num_samples), divisor=int(divisor), name=name,
                         log_config=log_config)
        if int(divisor) < 1:
            raise ValueError(f"Readout: divisor must be >= 1; got {divisor}")
        if weight.ndim != 2 or weight.shape[1] != shape[-1] or bias.shape != (weight.shape[0],):
            raise ValueError(f"Readout: weight must be [K, {shape[-1]}] and bias [K]; got "
                             f"{weight.shape} and {bias.shape}")
        if int(time_steps) < 1 or int(lag) < 0 or int(num_samples) < 1:
            raise ValueError("Readout: need time_steps >= 1, lag >= 0, num_samples >= 1")
        self.a_in = InPort(shape=shape)
        self.logits = OutPort(shape=(weight.shape[0],))
        self.logits.flag_external_pipe(buffer_size=int(num_samples))
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)
        self.acc = Var(shape=(shape[-1],), init=0)


class Tap(AbstractProcess):
    """Forwards its input to the host every step (``buffer_size`` messages
    fit before the process blocks; make it the number of steps run)."""

    def __init__(self, *, shape: ty.Tuple[int, ...], buffer_size: int,
                 name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        shape = tuple(int(s) for s in shape)
        super().__init__(shape=shape, name=name, log_config=log_config)
        self.a_in = InPort(shape=shape)
        self.out = OutPort(shape=shape)
        self.out.flag_external_pipe(buffer_size=int(buffer_size))
