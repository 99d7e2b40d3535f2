"""Vectorised, bit-exact fixed-point ProcessModels for stock Lava processes.

``PyConvModelFixedAccelerated`` implements ``lava.proc.conv.process.Conv``
(fixed_pt, LoihiProtocol, CPU). It declares the same ports and Vars as the
stock ``PyConvModelFixed`` and reproduces its output bit for bit (see the
tests), but computes the synaptic sum as one matrix product instead of
per-channel-pair scipy calls (binary spikes with a small enough weight bound: one
float32 matmul and nothing else). ``PyLifModelBitAccAccelerated`` /
``PyLifResetModelBitAccAccelerated`` are stock ``LIF`` / ``LIFReset`` with a
cached bias and a faster exact decay; with ``du = 4095`` (the Spikformer LIF:
no current memory) a lean step of a few in-place int32 operations. On small
networks every process's per-step Python/numpy overhead adds to Lava's
synchronisation, so the step is kept short. (The backend never lowers to ``Dense``, so
there is no Dense model here: a ``Dense`` keeps Lava's stock model.)

They are never picked up automatically (Lava only looks for models next to the
Process's own module); select them with
``deploy.accelerated.accelerated_run_config()`` or an
``exception_proc_model_map``.

What "bit-exact with stock" means here, precisely
-------------------------------------------------
Conv (stock ``PyConvModelFixed``): per step it sends ``a_buf`` (one-step
delay), receives ``s_in`` (cast to bool unless ``num_message_bits > 0``),
computes the convolution **in float64** with scipy (``weight`` is used raw:
``weight_exp`` and ``num_weight_bits`` are never read), casts the float64
result with ``.astype(weight.dtype)`` and wraps it to signed 24 bits with
``utils.signed_clamp``. We produce the *same float64 array* and then apply the
same two operations, so the outputs agree whenever the float64 arrays agree:

* if ``R * max|s| < 2**53`` (``R`` = max over output channels of
  ``sum |w|``), every partial sum of stock's and of our accumulation is an
  integer below 2**53, so both are exact, hence equal (the argument is spelled
  out in :mod:`loihi_numerics.exact_matmul`); we use float32 BLAS when the bound
  is even below 2**24, float64 BLAS otherwise;
* else we compute the tight per-output bound ``T = |cols| @ |W|`` in float64
  (a sum of K non-negative terms: the computed value is within a relative
  ``(K+1) * 2**-53`` of the true one); if computed ``max T < 2**52`` the true
  bound is below 2**53, every partial sum of both accumulations is exact, and
  our float64 product is stock's;
* else stock itself rounds, in an order only stock reproduces, so we call the
  stock ``utils.conv`` for that step (counted as ``"reference"``). An exact
  int64 result would be *more* correct but would not be stock's bits.

Inputs that are not integers (a float source port carrying fractions) and
geometries where stock's int8 arithmetic on ``kernel_size``/``padding``/...
would overflow also take the stock reference path.

The Conv model recomputes its cached plan when a Var is set (``on_var_update``)
or when the weight array object is replaced (RefPort/VarPort writes).
"""

from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils as conv_utils
from lava.proc.conv.models import AbstractPyConvModel
from lava.proc.conv.process import Conv
from lava.proc.lif.models import PyLifModelBitAcc, PyLifResetModelBitAcc
from lava.proc.lif.process import LIF, LIFReset

from loihi_numerics.exact_matmul import (FLOAT32_EXACT_LIMIT,
                                         FLOAT64_EXACT_LIMIT, PATH_FLOAT32,
                                         PATH_FLOAT64,
                                         PATH_INT64, ExactIntMatmul,
                                         integral_view, max_abs_int)

PATH_REFERENCE = "reference"
_BINARY_WEIGHT_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _new_counts() -> ty.Dict[str, int]:
    return {"float32": 0, "float64": 0, "int64": 0, PATH_REFERENCE: 0}


def _max_abs(x: np.ndarray) -> int:
    """Exact ``max |x|`` of an integral array (int/bool or integral float)."""
    if x.dtype.kind == "f":
        if x.size == 0:
            return 0
        return int(max(abs(float(x.max())), abs(float(x.min()))))
    return max_abs_int(x)


# ----------------------------------------------------------------------------
# Conv
# ----------------------------------------------------------------------------
class _ConvPlan:
    """im2col gather indices + exact matmul for one (weight, geometry, input
    shape). ``build`` returns ``None`` when the fast path cannot promise
    stock's bits (then the model uses the stock reference for every step)."""

    def __init__(self) -> None:
        self.mm: ExactIntMatmul
        self.in_shape: ty.Tuple[int, int, int]
        self.out_shape: ty.Tuple[int, int, int]
        self.pad: ty.Tuple[int, int]
        self.padded_shape: ty.Tuple[int, int, int]
        self.groups: int
        self.identity = False          # 1x1, stride 1, no padding, 1 group
        self.binary_exact = False      # see PyConvModelFixedAccelerated._binary_conv
        self.idx: ty.Optional[np.ndarray] = None
        self._buffers: ty.Dict[type, np.ndarray] = {}
        self._abs_w64: ty.Optional[np.ndarray] = None
        self.sources: ty.Tuple[ty.Any, ...] = ()

    @classmethod
    def build(cls, weight: np.ndarray, in_shape: ty.Tuple[int, ...],
              kernel_size: np.ndarray, stride: np.ndarray,
              padding: np.ndarray, dilation: np.ndarray,
              groups: np.ndarray) -> ty.Optional["_ConvPlan"]:
        if weight.ndim != 4 or len(in_shape) != 3:
            return None
        if weight.dtype.kind not in "biu" or weight.dtype == np.uint64:
            return None
        X, Y, C = (int(v) for v in in_shape)
        O, KX, KY, Cg = (int(v) for v in weight.shape)
        kx, ky = int(kernel_size[0]), int(kernel_size[1])
        sx, sy = int(stride[0]), int(stride[1])
        px, py = int(padding[0]), int(padding[1])
        dx, dy = int(dilation[0]), int(dilation[1])
        G = int(groups[0])
        if (kx, ky) != (KX, KY) or min(sx, sy, dx, dy, G) < 1 or min(px, py) < 0:
            return None
        if C % G or O % G or Cg != C // G:
            return None
        Xp, Yp = X + 2 * px, Y + 2 * py
        kdx, kdy = dx * (KX - 1) + 1, dy * (KY - 1) + 1
        if Xp < kdx or Yp < kdy:
            return None
        Xo, Yo = (Xp - kdx) // sx + 1, (Yp - kdy) // sy + 1
        # Stock evaluates this geometry with the int8 Var arrays; make sure
        # its numbers are ours (no int8 wrap-around), else defer to stock.
        try:
            stock_out = conv_utils.output_shape(
                tuple(in_shape), weight.shape[0], kernel_size, stride,
                padding, dilation)
            stock_kd = (dilation[0] * (kernel_size[0] - 1) + 1,
                        dilation[1] * (kernel_size[1] - 1) + 1)
        except Exception:  # noqa: BLE001 - stock would fail the same way
            return None
        if tuple(int(v) for v in stock_out) != (Xo, Yo, O) \
                or (int(stock_kd[0]), int(stock_kd[1])) != (kdx, kdy):
            return None

        plan = cls()
        plan.in_shape, plan.out_shape = (X, Y, C), (Xo, Yo, O)
        plan.pad, plan.padded_shape, plan.groups = (px, py), (Xp, Yp, C), G
        Og, Kg = O // G, KX * KY * Cg
        # Lava/scipy compute a true convolution: flip the kernel, then it is
        # a correlation: out[x, y, o] = sum_{p, q, c}
        #   in_pad[x*sx + dx*p, y*sy + dy*q, g*Cg + c] * w[o, KX-1-p, KY-1-q, c]
        wflip = np.asarray(weight)[:, ::-1, ::-1, :]
        mat = wflip.reshape(G, Og, Kg).transpose(0, 2, 1)      # (G, Kg, Og)
        plan.mm = ExactIntMatmul(mat[0] if G == 1 else mat)
        plan.identity = (KX == KY == 1 and sx == sy == 1 and px == py == 0
                         and G == 1)
        if not plan.identity:
            xo, yo = np.meshgrid(np.arange(Xo), np.arange(Yo), indexing="ij")
            base = ((xo * sx) * Yp + yo * sy).reshape(-1) * C        # (P,)
            p, q, c = np.meshgrid(np.arange(KX), np.arange(KY),
                                  np.arange(Cg), indexing="ij")
            off = (((p * dx) * Yp + q * dy) * C + c).reshape(-1)     # (Kg,)
            idx = base[:, None] + off[None, :]                         # (P, Kg)
            if G > 1:
                idx = idx[None, :, :] + (np.arange(G) * Cg)[:, None, None]
            plan.idx = np.ascontiguousarray(idx, dtype=np.intp)
        return plan

    def im2col(self, x: np.ndarray, dtype: type) -> np.ndarray:
        """``(P, Kg)`` (or ``(G, P, Kg)``) patches of ``x`` in ``dtype``."""
        if self.identity:
            return x.reshape(-1, self.in_shape[2]).astype(dtype)
        buf = self._buffers.get(dtype)
        if buf is None:
            buf = np.zeros(self.padded_shape, dtype=dtype)
            self._buffers[dtype] = buf
        (px, py), (X, Y, _) = self.pad, self.in_shape
        buf[px:px + X, py:py + Y, :] = x
        return np.take(buf.reshape(-1), self.idx)

    @staticmethod
    def merge_groups(prod: np.ndarray) -> np.ndarray:
        """Matmul result -> (P, O): groups' (G, P, Og) side by side."""
        if prod.ndim == 3:
            prod = prod.transpose(1, 0, 2).reshape(prod.shape[1], -1)
        return prod

    def to_output(self, prod: np.ndarray) -> np.ndarray:
        """Matmul result -> (Xo, Yo, O) float64 (what stock's scipy returns)."""
        # C-contiguous float64, like stock's np.zeros output, so the final
        # float64 -> int cast runs the same numpy loop on the same values.
        return np.ascontiguousarray(self.merge_groups(prod).reshape(self.out_shape),
                                    dtype=np.float64)

    def abs_matrix64(self) -> np.ndarray:
        if self._abs_w64 is None:
            self._abs_w64 = np.abs(self.mm.matrix(PATH_INT64)).astype(np.float64)
        return self._abs_w64


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvModelFixedAccelerated(AbstractPyConvModel):
    """Drop-in for stock ``PyConvModelFixed``: same ports/Vars/types, same
    bits, im2col + one BLAS matmul per step (see module docstring)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    # Exactness thresholds (class attributes so tests can force fallbacks).
    float32_limit: int = FLOAT32_EXACT_LIMIT
    float64_limit: int = FLOAT64_EXACT_LIMIT
    #: the tight per-output bound must stay below this (2**52 leaves room for
    #: the float64 rounding of the bound itself) for the float64 product to be
    #: provably stock's; else the stock reference runs.
    tight_limit: int = 1 << 52

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._plan: ty.Optional[_ConvPlan] = None
        self._plan_key: ty.Optional[tuple] = None
        self.path_counts: ty.Dict[str, int] = _new_counts()

    def on_var_update(self) -> None:
        self._plan, self._plan_key = None, None

    def run_spk(self) -> None:
        if self.a_buf is None:  # mirrors stock (never true in practice)
            self.a_buf = np.zeros_like(self.a_out.shape)

        self.a_out.send(self.a_buf)

        if self.num_message_bits.item() > 0:
            s_in = self.s_in.recv()
        else:
            s_in = self.s_in.recv().astype(bool)

        plan = self._get_plan(s_in.shape)
        if plan is not None and plan.binary_exact and s_in.dtype == np.bool_:
            self.a_buf = self._binary_conv(plan, s_in)
        else:
            self.a_buf = self.clamp_precision(self._conv(s_in, plan))

    def clamp_precision(self, x: np.ndarray) -> np.ndarray:
        return conv_utils.signed_clamp(x, bits=24)

    # -- internals ------------------------------------------------------------
    def _reference(self, s_in: np.ndarray) -> np.ndarray:
        self.path_counts[PATH_REFERENCE] += 1
        return conv_utils.conv(s_in, self.weight, self.kernel_size,
                               self.stride, self.padding, self.dilation,
                               self.groups[0])

    def _get_plan(self, in_shape: ty.Tuple[int, ...]) -> ty.Optional[_ConvPlan]:
        srcs = (self.weight, self.kernel_size, self.stride, self.padding,
                self.dilation, self.groups)
        key = tuple(id(a) for a in srcs) + (tuple(in_shape),)
        if self._plan_key != key:
            plan = _ConvPlan.build(self.weight, in_shape, *srcs[1:])
            if plan is not None:
                plan.sources = srcs  # keep them alive: ids stay unique
                plan.mm.float32_limit = self.float32_limit
                # binary input: partial sums stay within R, below float32's limit and
                # stock's 24-bit wrap (int32/int64 weights: stock's float64 -> weight-dtype
                # cast is then well defined)
                plan.binary_exact = (max(plan.mm.bound, 1) < min(1 << 23, self.float32_limit)
                                     and self.weight.dtype in _BINARY_WEIGHT_DTYPES)
                plan.mm.float64_limit = self.float64_limit
            self._plan, self._plan_key = plan, key
        return self._plan

    def _binary_conv(self, plan: _ConvPlan, s_in: np.ndarray) -> np.ndarray:
        """Binary spikes in, ``R < 2**23`` (``plan.binary_exact``): every partial sum of
        any accumulation order is an integer of magnitude ``<= R``, so the float32 product
        equals stock's float64 one, and stock's 24-bit wrap leaves ``|x| < 2**23``
        unchanged: one float32 matmul and stock's cast to the weight dtype."""
        self.path_counts[PATH_FLOAT32] += 1
        prod = np.matmul(plan.im2col(s_in, np.float32), plan.mm.matrix(PATH_FLOAT32))
        return plan.merge_groups(prod).astype(self.weight.dtype).reshape(plan.out_shape)

    def _conv(self, s_in: np.ndarray, plan: ty.Optional[_ConvPlan]) -> np.ndarray:
        x = integral_view(s_in) if plan is not None else None
        if x is None:
            return self._reference(s_in)
        path = plan.mm.choose(_max_abs(x))
        if path == PATH_INT64:
            # R * max|s| is too loose to prove exactness. Check the tight
            # per-output bound sum |w| |s|; if it holds, float64 is exact.
            cols = plan.im2col(x, np.float64)
            tight = np.matmul(np.abs(cols), plan.abs_matrix64())
            if not (tight.size == 0 or float(tight.max()) < self.tight_limit):
                return self._reference(s_in)
            path = PATH_FLOAT64
        else:
            cols = plan.im2col(x, plan.mm.dtype_of(path))
        self.path_counts[path] += 1
        out = plan.to_output(plan.mm.matmul(cols, path))
        # Exactly stock's cast: float64 -> weight dtype.
        return out.astype(self.weight.dtype)


# ----------------------------------------------------------------------------
# LIF / LIFReset
# ----------------------------------------------------------------------------
def _trunc_shift_decay(x: np.ndarray, factor: int, shift: int) -> np.ndarray:
    """Stock's ``np.int32(sign(p) * (|p| >> shift))`` with
    ``p = int64(x) * factor`` -- i.e. ``p / 2**shift`` truncated toward zero,
    wrapped to int32 -- for an int32 array ``x``.

    * ``factor == 0``: zeros (stock: ``p = 0``).
    * ``-2**shift < factor <= 2**shift`` and ``shift < 22`` (stock's
      ``du``/``dv`` in 0..4095 give factors 0..4096): in float64. ``|p| <=
      2**31 * 2**shift < 2**53`` so ``p`` is an exactly representable
      integer; ``factor / 2**shift`` is exact (power-of-two scaling), so the
      product ``x * (factor / 2**shift)`` is exactly ``p / 2**shift`` (a
      representable number: same significand as ``p``) and ``np.trunc`` is
      exact. The result fits int32 without wrapping: for ``factor = 2**s`` it
      is ``x``; otherwise ``|result| < |x| <= 2**31``. (``factor = -2**s``
      could give ``+2**31`` and is left to the int64 path.)
      About 10x faster than numpy's int64 arithmetic.
    * otherwise, int64: ``(p + ((p >> 63) & (2**shift - 1))) >> shift``; for
      ``p < 0`` that is ``floor((p + 2**s - 1) / 2**s) = ceil(p / 2**s)``,
      i.e. truncation; valid while ``|p| < 2**62`` (callers ensure
      ``|factor| < 2**31``), then wrapped to int32 like stock's cast.
    """
    if factor == 0:
        return np.zeros(x.shape, dtype=np.int32)
    if -(1 << shift) < factor <= (1 << shift) and shift < 22:
        y = x.astype(np.float64)
        y *= factor / float(1 << shift)
        np.trunc(y, out=y)
        return y.astype(np.int32)
    p = x.astype(np.int64)
    p *= factor
    p += (p >> 63) & ((1 << shift) - 1)
    p >>= shift
    return p.astype(np.int32)


#: input dtypes whose ``int32 += x`` (stock) and ``copyto(int32, x, "unsafe")`` (lean) agree:
#: both wrap modulo 2**32 (stock would refuse uint64, which numpy promotes to float64)
_LEAN_INPUTS = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                               np.uint8, np.uint16, np.uint32))


class _LeanLifPlan:
    """When the lean LIF step applies, and its constants: ``du`` gives no current memory
    (stock's factor ``4096 - (du + 1) == 0``: the usual Spikformer LIF), ``dv`` an integer
    factor in ``1..4096``, stock's 12-bit decay shift and 24-bit state width, and an int32
    effective bias (array) or a Python int. Anything else keeps the general path."""

    __slots__ = ("du", "dv", "bias", "u", "v", "ok", "f_v", "v_shift", "bias_nonzero")

    def current(self, model: "_FastLifFixedMixin") -> bool:
        """Built from the model's present Var objects (a Var set through the runtime is a new
        object, and ``on_var_update`` drops the plan anyway)."""
        return (self.du is model.du and self.dv is model.dv and self.u is model.u
                and self.v is model.v and self.bias is model.effective_bias)

    @classmethod
    def build(cls, model: "_FastLifFixedMixin") -> "_LeanLifPlan":
        plan = cls()
        plan.du, plan.dv, plan.bias = model.du, model.dv, model.effective_bias
        plan.u, plan.v = u, v = model.u, model.v
        plan.ok, plan.f_v, plan.v_shift, plan.bias_nonzero = False, 0, -1, False
        if not (isinstance(u, np.ndarray) and isinstance(v, np.ndarray)
                and u.dtype == v.dtype == np.int32 and v.shape == u.shape and u.size
                and u.flags.c_contiguous and v.flags.c_contiguous):
            return plan
        factors = None if isinstance(model.du, np.ndarray) or isinstance(model.dv, np.ndarray) \
            else model._decay_factors()
        bias = model.effective_bias
        if factors is None or factors[0] != 0 or not 1 <= factors[1] <= 4096 \
                or model.decay_shift != 12 or model.max_uv_val != 1 << 23 \
                or type(model.act_shift) is not int or not 0 <= model.act_shift < 32:
            return plan
        # int32 + int32 (stock's expression) wraps exactly like our in-place int32 sums
        if isinstance(bias, np.ndarray) and bias.dtype == np.int32 \
                and bias.shape in ((), model.u.shape):
            plan.bias_nonzero = bool(bias.any())
        elif type(bias) is int and -(1 << 31) <= bias < (1 << 31):
            plan.bias_nonzero = bias != 0
        else:
            return plan
        plan.f_v = int(factors[1])
        if plan.f_v & (plan.f_v - 1) == 0:            # 2**j: trunc(v / 2**(12 - j))
            plan.v_shift = 12 - (plan.f_v.bit_length() - 1)
        plan.ok = True
        return plan

    def decay_voltage(self, v: np.ndarray) -> np.ndarray:
        """Stock's ``int32(sign(p) * (|p| >> 12))``, ``p = int64(v) * f_v``, as a new int32
        array: for ``f_v = 2**j`` the truncated shift ``(v + ((v >> 31) & (2**k - 1))) >> k``
        (``k = 12 - j``; rounds negative values toward zero, no overflow for int32 ``v``),
        else :func:`_trunc_shift_decay`'s exact float64 product."""
        k = self.v_shift
        if k < 0:
            return _trunc_shift_decay(v, self.f_v, 12)
        if k == 0:
            return v.copy()
        out = np.right_shift(v, 31)
        out &= (1 << k) - 1
        out += v
        out >>= k
        return out


class _FastLifFixedMixin:
    """Speeds up stock ``AbstractPyLifModelFixed`` subclasses, bit-exactly:

    * ``scale_bias`` (stock recomputes it every step) is cached and redone
      only when ``bias_mant``/``bias_exp`` are set or replaced;
    * the two decays are computed exactly in float64 (``_trunc_shift_decay``)
      and skipped when the decay factor is 0 (``du = 4095``: no memory);
    * the voltage reset multiplies by the negated spike mask instead of a
      masked store.

    Everything else -- input shift, stock's 24-bit wrap of ``u``, clipping of
    ``v``, threshold, reset, LIFReset's periodic zeroing -- is stock's code.
    Unusual types (float ``du``, non-int32 state, ...) use stock's code too.
    """

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._bias_sources: ty.Optional[tuple] = None
        self._lean: ty.Optional[_LeanLifPlan] = None

    def on_var_update(self) -> None:
        self._bias_sources = None
        self._lean = None
        super().on_var_update()

    def scale_bias(self) -> None:
        srcs = (self.bias_mant, self.bias_exp)
        cached = self._bias_sources
        if cached is None or cached[0] is not srcs[0] \
                or cached[1] is not srcs[1]:
            super().scale_bias()
            self._bias_sources = srcs
        elif not self.isbiasscaled:   # (the model's __setattr__ costs an ABC check per call)
            self.isbiasscaled = True

    @staticmethod
    def _int_factor(f: ty.Any) -> ty.Optional[int]:
        """``f`` as a Python int if stock's ``np.int64(x) * f`` is an int64
        product by the integer ``f`` (Python int, or numpy integer scalar /
        1-element array that promotes to int64), else ``None``."""
        if isinstance(f, (bool, np.bool_)):
            return None
        if isinstance(f, int):
            val = f
        elif isinstance(f, (np.integer, np.ndarray)):
            if f.size != 1 or f.dtype.kind not in "iu" \
                    or np.promote_types(np.int64, f.dtype) != np.int64:
                return None
            val = int(f.item() if isinstance(f, np.ndarray) else f)
        else:
            return None
        return val if -(1 << 31) < val < (1 << 31) else None

    def _decay_factors(self) -> ty.Optional[ty.Tuple[int, int]]:
        f_u = self._int_factor(self.decay_unity - (self.du + self.ds_offset))
        f_v = self._int_factor(self.decay_unity - (self.dv + self.dm_offset))
        if f_u is None or f_v is None:
            return None
        for x in (self.u, self.v):
            if not isinstance(x, np.ndarray) or x.dtype != np.int32:
                return None
        if type(self.decay_shift) is not int or not 0 < self.decay_shift < 32:
            return None
        return f_u, f_v

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        plan = self._lean_plan(activation_in)
        if plan is not None:
            return self._lean_subthr_dynamics(activation_in, plan)
        factors = self._decay_factors()
        if factors is None:
            return super().subthr_dynamics(activation_in)
        f_u, f_v = factors
        # Update current (stock's statements, fast decay)
        decayed_curr = _trunc_shift_decay(self.u, f_u, self.decay_shift)
        activation_in = np.left_shift(activation_in, self.act_shift)
        decayed_curr += activation_in
        wrapped_curr = np.where(
            decayed_curr > self.max_uv_val,
            decayed_curr - 2 * self.max_uv_val,
            decayed_curr,
        )
        wrapped_curr = np.where(
            wrapped_curr <= -self.max_uv_val,
            decayed_curr + 2 * self.max_uv_val,
            wrapped_curr,
        )
        self.u[:] = wrapped_curr
        # Update voltage
        neg_voltage_limit = -np.int32(self.max_uv_val) + 1
        pos_voltage_limit = np.int32(self.max_uv_val) - 1
        decayed_volt = _trunc_shift_decay(self.v, f_v, self.decay_shift)
        updated_volt = decayed_volt + self.u + self.effective_bias
        self.v[:] = np.clip(updated_volt, neg_voltage_limit, pos_voltage_limit)
        return None

    # -- the lean step: a few in-place int32 operations ------------------------
    def _lean_plan(self, activation_in: ty.Any) -> ty.Optional[_LeanLifPlan]:
        """The cached :class:`_LeanLifPlan` if this step may take the lean path, else None.

        Cached against the identity of the Vars it reads (:meth:`_LeanLifPlan.current`);
        ``du``/``dv`` held as (mutable) arrays never qualify. Per step only the input's
        dtype and shape are checked."""
        if not (isinstance(activation_in, np.ndarray) and activation_in.dtype in _LEAN_INPUTS):
            return None
        plan = self._lean
        if plan is None or not plan.current(self):
            plan = self._lean = _LeanLifPlan.build(self)
        return plan if plan.ok and activation_in.shape == plan.u.shape else None

    def _lean_subthr_dynamics(self, activation_in: np.ndarray, plan: _LeanLifPlan) -> None:
        """Stock's sub-threshold update with du = 4095 (no current memory), bit for bit.

        Current: stock computes ``0 + (a << act_shift)`` in int32 and wraps values outside
        ``(-2**23, 2**23]`` once by 2**24; the wrap runs only when the step's extremes need
        it. Voltage: ``trunc(v f_v / 4096)`` (``_LeanLifPlan.decay_voltage``) ``+ u + bias``
        summed in int32 in stock's order (so any int32 wrap is stock's), then stock's clip to
        ``+-(2**23 - 1)``, written into ``v`` in place."""
        u, v = self.u, self.v
        np.copyto(u, np.left_shift(activation_in, self.act_shift), casting="unsafe")
        m = self.max_uv_val
        if u.max() > m or u.min() <= -m:       # stock's two-sided wrap, as stock writes it
            raw = u.copy()
            wrapped = np.where(raw > m, raw - 2 * m, raw)
            u[:] = np.where(wrapped <= -m, raw + 2 * m, wrapped)
        volt = plan.decay_voltage(v)
        volt += u
        if plan.bias_nonzero:
            volt += plan.bias
        np.core.umath.clip(volt, 1 - m, m - 1, out=v)

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        """Stock: ``v[spike_vector] = 0``; for a same-shape bool mask this is
        ``v *= ~mask`` (int32 * {0, 1}), which avoids a scattered store."""
        v = self.v
        if isinstance(spike_vector, np.ndarray) \
                and spike_vector.dtype == np.bool_ \
                and spike_vector.shape == getattr(v, "shape", None) \
                and isinstance(v, np.ndarray) and v.dtype.kind == "i":
            np.multiply(v, np.logical_not(spike_vector), out=v)
        else:
            super().reset_voltage(spike_vector)


@implements(proc=LIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifModelBitAccAccelerated(_FastLifFixedMixin, PyLifModelBitAcc):
    """Stock ``PyLifModelBitAcc`` with cached bias and a faster exact decay."""
    # Start the decorator-accumulated lists afresh (not stock's + ours).
    tags: ty.List[str] = []
    required_resources: ty.List[ty.Any] = []


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifResetModelBitAccAccelerated(_FastLifFixedMixin,
                                       PyLifResetModelBitAcc):
    """Stock ``PyLifResetModelBitAcc`` with cached bias and faster decay."""
    tags: ty.List[str] = []
    required_resources: ty.List[ty.Any] = []
