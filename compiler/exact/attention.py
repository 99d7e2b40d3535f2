"""Spiking self-attention counts: per head ``Q.(K^T.V)`` on integer token matrices, as GEMMs.

Tokens are the ``N = H * W`` cells of a ``(D, H, W)`` map, row-major; a head takes ``D / heads``
consecutive channels. Reassociated as ``Q.(K^T.V)`` (d x d per head instead of N x N; the same
integers). Exactness: with input bounds q, k, v every entry of ``K^T.V`` and each of its partial
sums is at most N k v, every entry of ``Q.(K^T.V)`` and each partial sum at most d q N k v
(d = D / heads); the GEMMs run in the float format that bound allows, else in int64 on the CPU.
"""
from __future__ import annotations

from typing import Optional

import torch

from .values import IntSeq, exact_dtype


def counts(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[..., N, D]`` token matrices (one dtype) -> per head ``Q.(K^T.V)``, ``[..., N, D]``."""
    *lead, n, d = q.shape
    dh = d // num_heads

    def heads(x):   # [..., N, D] -> [..., heads, N, dh]
        return x.reshape(*lead, n, num_heads, dh).transpose(-2, -3)

    out = heads(q) @ (heads(k).transpose(-1, -2) @ heads(v))
    return out.transpose(-2, -3).reshape(*lead, n, d)


def counts_bound(n_tokens: int, head_dim: int, q: int, k: int, v: int) -> int:
    """The largest |entry| and partial sum of ``Q.(K^T.V)`` for inputs bounded by q, k, v."""
    return head_dim * q * n_tokens * k * v


def spiking_attention(q: IntSeq, k: IntSeq, v: IntSeq, num_heads: int,
                      saturation: Optional[int], gain: int) -> IntSeq:
    """``min(Q.(K^T.V), saturation) * gain`` of timed maps ``[T, B, H, W, D]`` (channels last
    is the token layout: ``[T, B, N, D]`` is a free reshape)."""
    t, b, h, w, d = q.data.shape
    bound = counts_bound(h * w, d // num_heads, q.bound, k.bound, v.bound)
    dtype = exact_dtype(bound)
    device = q.data.device
    if dtype == torch.int64:   # beyond 2**53: integer GEMMs, which only the CPU has
        dtype, device = torch.int64, torch.device("cpu")
    toks = [x.as_dtype(dtype).to(device).reshape(t, b, h * w, d) for x in (q, k, v)]
    out = counts(*toks, num_heads).reshape(t, b, h, w, d)
    nonnegative = q.binary and k.binary and v.binary
    if saturation is not None:   # larger counts fire the next LIF anyway (quantize pass)
        out = out.clamp_(max=int(saturation))
        saturation = int(saturation)
        bound = min(bound, saturation) if nonnegative and saturation >= 0 \
            else max(bound, abs(saturation))
    bound *= abs(int(gain))
    if out.dtype != torch.int64:   # the format the scaled bound allows (wider, or narrower)
        out = out.to(exact_dtype(bound))
    out = out * int(gain)
    return IntSeq(out.to(q.data.device), bound)
