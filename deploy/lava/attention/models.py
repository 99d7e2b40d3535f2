"""ProcessModels of :class:`~deploy.lava.attention.process.SpikingAttention`.

* ``PySpikingAttentionFixed`` (tag ``fixed_pt``): int32 graded output, exactly
  ``gain * compiler.reference.attention_counts(q, k, v)``.
* ``PySpikingAttentionFloat`` (tag ``floating_pt``): the same product in float.

Both pick the cheaper association per head: ``Q.(K^T.V)`` costs ``N d^2``
multiply-adds and ``(Q.K^T).V`` costs ``N^2 d`` (N tokens, d channels per
head), so ``Q.(K^T.V)`` whenever ``d <= N`` (every Spikformer configuration).
For binary inputs both give the same integers (counts < 2**53 keep the float64
products exact).
"""
from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from compiler.reference import attention_counts
from deploy.lava.attention.process import SpikingAttention


def to_maps(x: np.ndarray) -> np.ndarray:
    """Lava ``(W, H, D)`` -> the compiler's ``[1, D, H, W]``."""
    return x.transpose(2, 1, 0)[None]


def from_maps(x: np.ndarray) -> np.ndarray:
    """``[1, D, H, W]`` -> Lava ``(W, H, D)``."""
    return np.ascontiguousarray(x[0].transpose(2, 1, 0))


def attention_products(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       num_heads: int) -> np.ndarray:
    """Per-head ``Q.K^T.V`` on ``[B, D, H, W]`` maps in the cheaper order.

    Integer inputs give the exact integers of
    :func:`compiler.reference.attention_counts` (which this calls when
    ``d <= N``); float inputs give the float product.
    """
    b, d, h, w = q.shape
    dh, n = d // num_heads, h * w
    if dh <= n:
        if q.dtype.kind == "f":
            return _product(q, k, v, num_heads, kv_first=True)
        return attention_counts(q, k, v, num_heads)
    out = _product(q, k, v, num_heads, kv_first=False)
    return out if q.dtype.kind == "f" else np.rint(out).astype(np.int64)


def _product(q, k, v, num_heads: int, kv_first: bool) -> np.ndarray:
    b, d, h, w = q.shape
    dh = d // num_heads

    def heads(a):  # [B, D, H, W] -> [B, heads, N, dh]
        return a.reshape(b, num_heads, dh, h * w).transpose(0, 1, 3, 2).astype(np.float64)

    qh, kh, vh = heads(q), heads(k), heads(v)
    kt = kh.transpose(0, 1, 3, 2)
    out = qh @ (kt @ vh) if kv_first else (qh @ kt) @ vh
    return out.transpose(0, 1, 3, 2).reshape(b, d, h, w)


class _AbstractAttentionModel(PyLoihiProcessModel):
    q = None
    k = None
    v = None
    a_out = None
    num_heads = None
    gain = None

    def _heads_gain(self):
        return int(np.asarray(self.num_heads).item()), np.asarray(self.gain).item()


@implements(proc=SpikingAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikingAttentionFixed(_AbstractAttentionModel):
    """Bit-exact integer model: ``a_out = gain * Q.(K^T.V)`` (int32)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        if not float(proc_params["gain"]).is_integer():
            raise ValueError(f"SpikingAttention '{proc_params.get('name')}': the fixed-point "
                             f"model needs an integer gain, got {proc_params['gain']}")

    q: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    k: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    v: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    num_heads: np.ndarray = LavaPyType(np.ndarray, np.int32)
    gain: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        raw = [p.recv() for p in (self.q, self.k, self.v)]
        heads, gain = self._heads_gain()
        if not all(r.any() for r in raw):  # a zero map makes every product 0
            out = np.zeros(raw[0].shape, dtype=np.int64)
        else:
            q, k, v = (to_maps(r.astype(np.int64)) for r in raw)
            out = from_maps(attention_products(q, k, v, heads) * int(gain))
        # the int32 channel wraps like every stock fixed-point model's output
        self.a_out.send(out.astype(np.int32))


@implements(proc=SpikingAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikingAttentionFloat(_AbstractAttentionModel):
    """Floating-point model: ``a_out = gain * Q.(K^T.V)`` in float64."""

    q: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    k: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    v: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    num_heads: np.ndarray = LavaPyType(np.ndarray, int)
    gain: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        q, k, v = (to_maps(p.recv().astype(np.float64)) for p in (self.q, self.k, self.v))
        heads, gain = self._heads_gain()
        self.a_out.send(from_maps(attention_products(q, k, v, heads) * float(gain)))
