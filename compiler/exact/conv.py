"""Lava's Conv (``PyConvModelFixed``) and the sum-pool on :class:`IntSeq` values, as GEMMs.

Semantics (docs/reference-semantics.md section 4, ``fixed_point.conv_accumulate``): binary
input counts as ``x != 0``; the weights are used as given; the exact integer correlation sum is
cast to int32 (out of range: ``INT32_MIN``) and wrapped to 24 bits.

Exactness. Let R = the largest sum of |weights| of one output channel and m the bound of the
input. Every product, every partial sum in any order, and the result is an integer of
magnitude <= R * m, so a GEMM in float32 (R * m < 2**24) or float64 (< 2**53) returns the exact
integers (``loihi_numerics.exact_matmul``); beyond 2**53, where Lava's own float64 sums stop
being exact, ``fixed_point.conv_accumulate`` itself computes in int64 on the CPU. The product
is expressed as GEMMs, one per kernel tap (``tap_gemms``) or one on an im2col copy
(``im2col_gemm``), never as a library convolution whose algorithm (FFT, Winograd) might not be
a sum of the products. The finish: |acc| <= R * m < 2**23 makes the int32 cast and the 24-bit
wrap identities, so they are applied only where the bound does not rule a wrap out.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from loihi_numerics import fixed_point as fx
from loihi_numerics.constants import CONV_ACC_BITS, INT32_MAX, INT32_MIN

from .values import IntSeq, exact_dtype, from_numpy, max_abs, to_numpy, wrap_signed

Pair = Tuple[int, int]
#: im2col copies are built for this many elements at most at a time (samples are independent)
IM2COL_CHUNK = 1 << 24
_WRAP_FREE = 1 << (CONV_ACC_BITS - 1)      # |acc| below 2**23: the 24-bit wrap is the identity


class ConvWeights:
    """One conv2d node's integer weights ``[C_out, C_in / groups, kH, kW]`` and their bound R
    (the largest sum of |w| of one output channel)."""

    def __init__(self, weight: np.ndarray, device: torch.device):
        self.weight = np.asarray(weight, dtype=np.int64)
        self.device = device
        self.row_sum = max_row_abs_sum(self.weight.reshape(self.weight.shape[0], -1))

    def gemm_layout(self, dtype: torch.dtype) -> torch.Tensor:
        """``[kH, kW, C_in / groups, C_out]`` in ``dtype`` (exact: |w| <= R <= the bound that
        chose it) on the device."""
        w = torch.from_numpy(self.weight).to(dtype).to(self.device).permute(2, 3, 1, 0)
        # 1x1: w[0, 0] is a transposed matrix already, which GEMMs take as it is
        return w.contiguous() if w.shape[0] * w.shape[1] > 1 else w


def max_row_abs_sum(rows: np.ndarray) -> int:
    """``max_o sum_k |rows[o, k]|`` of an int64 matrix, exactly (Python ints where int64
    could overflow)."""
    if rows.size == 0:
        return 0
    if max_abs(rows) * rows.shape[1] < 1 << 63:
        return int(np.abs(rows).sum(axis=1).max())
    return max(sum(abs(int(v)) for v in r) for r in rows)


def conv2d(x: IntSeq, weights: ConvWeights, stride: Pair, padding: Pair, groups: int,
           graded: bool) -> IntSeq:
    """``conv_accumulate`` of every step and sample of ``x`` (``[T, B, H, W, C]``)."""
    s = x if graded or x.binary else nonzero(x)
    bound = max(weights.row_sum, 1) * s.bound   # max(R, 1): the input converts exactly too
    dtype = exact_dtype(bound)
    if dtype == torch.int64:
        return _conv_int64(s, weights, stride, padding, groups, graded)
    t, b, h, w, c = s.data.shape
    flat = s.as_dtype(dtype).reshape(t * b, h, w, c)
    acc = conv_gemm(flat, weights.gemm_layout(dtype), stride, padding, groups)
    return finish(IntSeq(acc.reshape(t, b, *acc.shape[1:]), bound))


def sum_pool(x: IntSeq, kernel: Pair, stride: Pair, padding: Pair) -> IntSeq:
    """Window sums of ``x != 0`` (a depthwise all-ones binary Conv, zero padding): the sum of
    the kernel's strided views of the padded input, kh * kw at most, exact in float32."""
    s = x if x.binary else nonzero(x)
    t, b, h, w, c = s.data.shape
    padded = _padded(s.data.reshape(t * b, h, w, c).to(torch.float32), padding)
    ho, wo = fx.conv_output_hw((h, w), kernel, stride, padding)
    out = None
    for view in _tap_views(padded, kernel, stride, (ho, wo)):
        out = view.clone() if out is None else out.add_(view)
    return finish(IntSeq(out.reshape(t, b, ho, wo, c), kernel[0] * kernel[1]))


def nonzero(x: IntSeq) -> IntSeq:
    """``x != 0`` as 0/1 values: what a binary port (num_message_bits == 0) takes."""
    return IntSeq((x.data != 0).to(torch.float32), 1, True)


def finish(acc: IntSeq) -> IntSeq:
    """Lava's float64 -> int32 cast (out of range: ``INT32_MIN``) and 24-bit wrap; identities,
    and skipped, when the bound is below 2**23."""
    if acc.bound < _WRAP_FREE:
        return acc
    a = acc.as_dtype(torch.int64)
    a = torch.where((a < INT32_MIN) | (a > INT32_MAX), torch.full_like(a, INT32_MIN), a)
    return IntSeq(wrap_signed(a, CONV_ACC_BITS), _WRAP_FREE)


def conv_gemm(x: torch.Tensor, w: torch.Tensor, stride: Pair, padding: Pair,
              groups: int) -> torch.Tensor:
    """Cross-correlation of channels-last ``x [N, H, W, C]`` with ``w [kH, kW, C/g, C_out]``
    (same float dtype) -> ``[N, H', W', C_out]``, by GEMMs only."""
    n, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    ho, wo = fx.conv_output_hw((h, wd), (kh, kw), stride, padding)
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    if stride == (1, 1) and 2 * ho * wo >= hp * wp:
        return tap_gemms(_padded(x, padding), w, groups, (ho, wo))
    return im2col_gemm(_padded(x, padding), w, stride, groups, (ho, wo))


def tap_gemms(padded: torch.Tensor, w: torch.Tensor, groups: int, out_hw: Pair) -> torch.Tensor:
    """Stride 1: one GEMM per kernel tap on the padded input read as one matrix, no copies.

    In the row-major flattening of ``padded [N, Hp, Wp, C]`` the input of output (h, w) under
    tap (i, j) lies ``i * Wp + j`` rows after row ``h * Wp + w``. So for every tap one GEMM of
    the row range shifted by that offset, accumulated, gives all outputs at once; rows whose
    (h, w) lies outside ``out_hw`` mix neighbouring rows or images and are dropped (every row
    that is kept stays inside its own image). Each accumulation adds a partial sum of the
    output's terms: exact under the same bound."""
    n, hp, wp, c = padded.shape
    kh, kw, cg, cout = w.shape
    flat = padded.reshape(n * hp * wp, c)
    rows = n * hp * wp - ((kh - 1) * wp + kw - 1)
    out = padded.new_empty(n * hp * wp, cout)
    first = True
    for i in range(kh):
        for j in range(kw):
            src = flat[i * wp + j:i * wp + j + rows]
            _gemm_into(out[:rows], src, w[i, j], groups, accumulate=not first)
            first = False
    return out.reshape(n, hp, wp, cout)[:, :out_hw[0], :out_hw[1]]


def im2col_gemm(padded: torch.Tensor, w: torch.Tensor, stride: Pair, groups: int,
                out_hw: Pair) -> torch.Tensor:
    """Any stride: the ``[kH, kW, C]`` window of every output copied into a row (im2col),
    then one GEMM per chunk of samples."""
    n, hp, wp, c = padded.shape
    kh, kw, cg, cout = w.shape
    ho, wo = out_hw
    sn, sh, sw, sc = padded.stride()
    per_sample = ho * wo * kh * kw * c
    chunk = max(1, IM2COL_CHUNK // max(per_sample, 1))
    # per group [kh*kw*cg, cout/g]: output channels are group-major, like the input's
    wk = w.reshape(kh * kw, cg, groups, cout // groups).permute(2, 0, 1, 3)
    wk = wk.reshape(groups, kh * kw * cg, cout // groups)
    out = padded.new_empty(n, ho, wo, cout)
    for lo in range(0, n, chunk):
        part = padded[lo:lo + chunk]
        windows = part.as_strided((part.shape[0], ho, wo, kh, kw, c),
                                  (sn, stride[0] * sh, stride[1] * sw, sh, sw, sc))
        cols = windows.reshape(-1, kh * kw, groups, cg)
        if groups == 1:
            res = cols.reshape(-1, kh * kw * c) @ w.reshape(kh * kw * c, cout)
        else:   # per group [rows, kh*kw*cg] @ [kh*kw*cg, cout/g], batched over the groups
            res = torch.bmm(cols.permute(2, 0, 1, 3).reshape(groups, -1, kh * kw * cg), wk)
            res = res.permute(1, 0, 2).reshape(-1, cout)
        out[lo:lo + chunk] = res.reshape(part.shape[0], ho, wo, cout)
    return out


def _gemm_into(out: torch.Tensor, src: torch.Tensor, w: torch.Tensor, groups: int,
               accumulate: bool) -> None:
    """``out (+)= src @ w`` (``w [C/g, C_out]``), per group on the channel slices."""
    cg, cout = w.shape
    og = cout // groups
    for g in range(groups):
        o = out if groups == 1 else out[:, g * og:(g + 1) * og]
        a = src if groups == 1 else src[:, g * cg:(g + 1) * cg]
        b = w if groups == 1 else w[:, g * og:(g + 1) * og]
        if accumulate:
            o.addmm_(a, b)
        else:
            torch.mm(a, b, out=o) if groups == 1 else o.copy_(a @ b)


def _padded(x: torch.Tensor, padding: Pair) -> torch.Tensor:
    """``x [N, H, W, C]`` with ``padding`` zero rows/columns on each side (no copy without)."""
    ph, pw = padding
    if not (ph or pw):
        return x.contiguous()
    n, h, w, c = x.shape
    out = x.new_zeros(n, h + 2 * ph, w + 2 * pw, c)
    out[:, ph:ph + h, pw:pw + w] = x
    return out


def _tap_views(padded: torch.Tensor, kernel: Pair, stride: Pair, out_hw: Pair):
    """For each tap (i, j): the strided view of ``padded`` its outputs read."""
    ho, wo = out_hw
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield padded[:, i:i + (ho - 1) * stride[0] + 1:stride[0],
                         j:j + (wo - 1) * stride[1] + 1:stride[1]]


def _conv_int64(s: IntSeq, weights: ConvWeights, stride: Pair, padding: Pair, groups: int,
                graded: bool) -> IntSeq:
    """Beyond 2**53 (where Lava's own float64 sums are no longer exact): the semantics'
    own int64 ``conv_accumulate``, on the CPU."""
    seq = to_numpy(s)
    t, b = seq.shape[:2]
    acc = fx.conv_accumulate(seq.reshape(t * b, *seq.shape[2:]), weights.weight, stride,
                             padding, 1, groups, num_message_bits=1 if graded else 0)
    return from_numpy(acc.reshape(t, b, *acc.shape[1:]), weights.device, binary=False)
