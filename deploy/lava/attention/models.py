"""ProcessModels of :class:`~deploy.lava.attention.process.SpikingAttention`.

* ``PySpikingAttentionFixed`` (tag ``fixed_pt``): int32 graded output,
  ``gain * min(counts, saturation)`` with exact integer counts.
* ``PySpikingAttentionFloat`` (tag ``floating_pt``): the same product in float64.

The arithmetic (:func:`attention_products`) is this module's own: the q, k, v maps
arrive in Lava's ``(W, H, D)`` layout, become the compiler's ``[D, H, W]`` maps
(``fixed_point.from_lava_layout``), tokens ``[N, D]`` and heads ``[heads, N, d]``
(``compiler.layout``), and per head ``Q.K^T.V`` is computed in the cheaper association:
``Q.(K^T.V)`` costs ``N d^2`` multiply-adds and ``(Q.K^T).V`` costs ``N^2 d``
(N tokens, d channels per head), so ``Q.(K^T.V)`` whenever ``d <= N`` (every
Spikformer configuration). Integer inputs are multiplied in the cheapest dtype whose
products are provably exact (``loihi_numerics.exact_matmul.exact_dtype`` on the bound
``N d max|q| max|k| max|v|``, which bounds every partial sum of either association), so
both orders give the same exact integers. This module does not use the reference
executor: the tests compare its results with the reference's attention counts
(tests/test_deploy/test_lava_attention_model.py), so the agreement is checked, not built in.
"""
from __future__ import annotations

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from compiler import layout
from loihi_numerics import fixed_point as fx
from loihi_numerics.exact_matmul import exact_dtype, max_abs_int

from deploy.lava.attention.process import SpikingAttention


def attention_products(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       num_heads: int) -> np.ndarray:
    """Per-head ``Q.K^T.V`` on ``[..., D, H, W]`` maps (tokens = the H*W cells, row-major;
    ``D / num_heads`` consecutive channels per head), in the cheaper association.

    Integer (or bool) inputs give exact integers (int64); float inputs the float64
    product (exact integers too when the inputs are binary: every value < 2**53).
    """
    shape = q.shape[-3:]
    heads = [layout.split_heads(layout.map_to_tokens(a), num_heads) for a in (q, k, v)]
    floating = q.dtype.kind == "f"
    n, d = heads[0].shape[-2], heads[0].shape[-1]                  # tokens, channels per head
    dtype = _product_dtype(n, d, q, k, v)
    out = _head_products(*(a.astype(dtype) for a in heads))
    out = layout.tokens_to_map(layout.merge_heads(out), shape)
    return out if floating else out.astype(np.int64)


def lava_layout_products(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                         num_heads: int) -> np.ndarray:
    """:func:`attention_products` of one integer message each, read and written in Lava's
    ``(W, H, D)`` layout: int64 counts of shape ``(W, H, D)``. The fixed model's per-step
    path: the token view ``(H, W, D)`` is one transpose away, so each map is converted once
    (to the exact dtype) and the result once (to int64), instead of going through the
    compiler's ``[D, H, W]`` layout."""
    W, H, D = q.shape
    n, d = H * W, D // num_heads
    # (W, H, D) -> tokens (H, W, D) row-major (one copy, in the exact dtype) -> heads
    # (heads, N, d) as a view
    tokens = [a.transpose(1, 0, 2) for a in (q, k, v)]
    dtype = _product_dtype(n, d, q, k, v)
    out = _head_products(*(t.astype(dtype, order="C").reshape(n, num_heads, d)
                           .transpose(1, 0, 2) for t in tokens))      # [heads, N, d]
    return out.transpose(1, 0, 2).astype(np.int64, order="C") \
        .reshape(H, W, D).transpose(1, 0, 2)


def _product_dtype(n: int, d: int, q: np.ndarray, k: np.ndarray, v: np.ndarray):
    """float64 for float maps; else the cheapest dtype in which every partial sum of either
    association is exact, from the bound ``N d max|q| max|k| max|v|`` (N tokens, d channels
    per head)."""
    if q.dtype.kind == "f":
        return np.float64
    mq, mk, mv = (max_abs_int(np.asarray(a)) for a in (q, k, v))
    return exact_dtype(max(n * d * mq * mk * mv, mq, mk, mv))


def _head_products(qh: np.ndarray, kh: np.ndarray, vh: np.ndarray) -> np.ndarray:
    """``Q.K^T.V`` per head (``[..., heads, N, d]``) in the cheaper association:
    ``Q.(K^T.V)`` costs ``N d^2`` multiply-adds, ``(Q.K^T).V`` ``N^2 d``."""
    n, d = qh.shape[-2], qh.shape[-1]
    kt = kh.swapaxes(-1, -2)
    return qh @ (kt @ vh) if d <= n else (qh @ kt) @ vh


class _AbstractAttentionModel(PyLoihiProcessModel):
    q = None
    k = None
    v = None
    a_out = None
    num_heads = None
    gain = None
    saturation = None

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
    saturation: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        raw = [p.recv() for p in (self.q, self.k, self.v)]
        heads, gain = self._heads_gain()
        saturation = int(np.asarray(self.saturation).item())
        if not all(r.any() for r in raw):  # a zero map makes every product 0
            out = np.zeros(raw[0].shape, dtype=np.int64)
        elif raw[0].ndim == 3 and all(r.dtype.kind in "biu" for r in raw):
            out = lava_layout_products(*raw, heads)
        else:
            q, k, v = (fx.from_lava_layout(r.astype(np.int64)) for r in raw)
            out = fx.to_lava_layout(attention_products(q, k, v, heads))
        if saturation:   # larger counts fire the next LIF anyway (the quantizer's proof)
            np.minimum(out, saturation, out=out)
        out *= int(gain)
        # the int32 channel wraps like every stock fixed-point model's output
        self.a_out.send(out.astype(np.int32, order="C"))


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
    saturation: np.ndarray = LavaPyType(np.ndarray, int)   # float graphs: never set

    def run_spk(self) -> None:
        q, k, v = (fx.from_lava_layout(p.recv().astype(np.float64))
                   for p in (self.q, self.k, self.v))
        heads, gain = self._heads_gain()
        self.a_out.send(fx.to_lava_layout(attention_products(q, k, v, heads) * float(gain)))


__all__ = ["PySpikingAttentionFixed", "PySpikingAttentionFloat", "attention_products",
           "lava_layout_products"]
