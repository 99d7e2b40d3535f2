"""Spiking self-attention (Spikformer's SSA) as one Lava process.

Ports (all in Lava's ``(W, H, D)`` layout, the layout of the LIF processes that
feed it; the tokens are the H*W cells, numbered row-major over (H, W) as in the
compiler's ``[D, H, W]`` maps):

* ``q``, ``k``, ``v`` (InPort): binary spikes of the query, key and value LIFs;
* ``a_out`` (OutPort): graded spikes, ``gain * min(counts, saturation)`` with, per
  head ``h`` of ``D / num_heads`` channels, ``counts_h = Q_h . (K_h^T . V_h)``
  (integer spike-coincidence counts, the reference executor's attention semantics;
  ``saturation`` 0: none).

Timing: like LIF (and unlike Conv/Dense) the process has no delay: ``a_out`` at
step t is computed from q, k, v received at step t (``ATTENTION_DELAY = 0``).

Loihi 2 has no neuro-core primitive for this product of two spike maps (it is
a product of *activities*, not activity times a stored weight). Its models are
Python ProcessModels: with lava-loihi (``Loihi2HwCfg``) a Python ProcessModel runs
on the HOST CPU, connected to the chip through C adapters (channels), not on the
chip's embedded x86 (Lakemont) cores, which run C ProcessModels only; see
docs/lava-backend.md.
"""
from __future__ import annotations

import typing as ty

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

#: Lava steps between receiving q, k, v and sending the result.
ATTENTION_DELAY = 0


class SpikingAttention(AbstractProcess):
    """Spiking self-attention over a ``(W, H, D)`` token grid.

    Parameters
    ----------
    shape : (W, H, D) in Lava layout.
    num_heads : number of heads; must divide D.
    gain : multiplier of the counts: an integer (the quantizer's attention gain) for
        the fixed-point model; any float (the scale times the next LIF's input gain) for
        the floating-point model.
    saturation : counts above it are sent as it (the quantizer's: they fire the next
        LIF whatever its state); 0 for none. Fixed-point model only.
    """

    def __init__(self, *, shape: ty.Tuple[int, int, int], num_heads: int,
                 gain: ty.Union[int, float] = 1, saturation: int = 0,
                 name: ty.Optional[str] = None,
                 log_config: ty.Optional[LogConfig] = None) -> None:
        shape = tuple(int(s) for s in shape)
        gain = int(gain) if float(gain).is_integer() else float(gain)
        if int(saturation) < 0:
            raise ValueError(f"SpikingAttention: saturation must be >= 0 (0: none), got "
                             f"{saturation}")
        super().__init__(shape=shape, num_heads=int(num_heads), gain=gain,
                         saturation=int(saturation), name=name, log_config=log_config)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"SpikingAttention: shape must be (W, H, D) with "
                             f"positive sizes; got {shape}")
        if int(num_heads) < 1 or shape[2] % int(num_heads):
            raise ValueError(f"SpikingAttention: num_heads={num_heads} must be "
                             f">= 1 and divide D={shape[2]}")
        self.q = InPort(shape=shape)
        self.k = InPort(shape=shape)
        self.v = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.num_heads = Var(shape=(1,), init=int(num_heads))
        self.gain = Var(shape=(1,), init=gain)
        self.saturation = Var(shape=(1,), init=int(saturation))
