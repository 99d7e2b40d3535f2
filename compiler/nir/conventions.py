"""How each toolchain's NIR LIF parameters become the IR's per-step LIF.

NIR states continuous dynamics (``tau dv/dt = (v_leak - v) + r I``, fire on ``v > v_th``,
``v := v_reset``) and no time step; every toolchain discretises them its own way and writes
its own meaning into ``tau`` and ``r``. The IR ``lif`` is one step of

    H[t] = V[t-1] + (r X[t] - V[t-1]) / tau      i.e. decay 1 - 1/tau, input gain r / tau
    S[t] = H[t] >= v_threshold  (spike_if ">=")  or  H[t] > v_threshold  (spike_if ">")
    V[t] = H[t] (1 - S[t])                       (hard reset to 0)

so a convention's job is: file (tau, r, dt) -> IR (tau, r, spike_if). The formulas below were
read from the toolchains' own code (file and line named; snntorch 1.0.0, norse 1.1.0 and
sinabs 3.1.3 as installed) and checked against the libraries themselves: files from their
own NIR writers, read here, give their own spikes exactly (tests/test_compiler/nir/
test_snntorch_interop.py, test_norse.py, test_sinabs.py).

snntorch (``snntorch/export_nir.py`` 66-79, ``snntorch/_neurons/leaky.py`` 238-240,
``snntorch/_neurons/neurons.py`` 80-81, ``snntorch/surrogate.py``: spike where ``mem - thr > 0``)
    dt = 1e-4 is hard-coded in the writer (and reader); ``tau = dt / (1 - beta)``,
    ``r = tau / dt``, all in float32. snntorch runs ``mem = beta * mem + input`` and fires
    on ``mem > threshold``. Forward Euler at that dt gives IR tau = tau/dt = 1/(1 - beta),
    r = r (= tau: gain 1), spike_if ">". To reproduce snntorch's float32 arithmetic bit for
    bit, the float32 beta that snntorch's formula maps to the stored tau is recovered exactly
    (``snntorch_beta``: exact for beta >= 0.5; below 0.5 the file does not determine it)
    and the IR tau is chosen so that ``float32(1 - 1/tau) == beta``
    (``tau_for_decay``); the float executor then computes ``beta * V + X`` like snntorch.
    Synaptic (CubaLIF): ``syn = alpha syn + input`` with ``tau_syn = dt / (1 - alpha)``,
    ``w_in = tau_syn / dt`` (export_nir.py 98-117): exact as a LIF only when alpha = 0.

norse (``norse/torch/utils/import_nir.py`` 120-130, ``norse/torch/functional/lif_box.py``
95-101, ``norse/torch/functional/heaviside.py`` 20)
    The reader builds ``LIFBoxCell(tau_mem_inv = 1 / tau)`` with ``dt = 0.001`` and runs
    ``v += dt * tau_mem_inv * (i + v_leak - v)``, fires on ``v - v_th > 0``, resets to
    v_reset. It ignores r (it only logs a warning, import_nir.py 121), so r != 1 is refused
    here rather than guessed. IR tau = tau/dt, r = 1, spike_if ">". For a float32 file the
    step factor ``k = dt * (1 / tau)`` is computed in float32 as norse's reader computes it
    (``norse_step_factor``) and IR tau = 1/k: the float executor's ``(x - v) / tau`` is
    norse's ``k * (x - v)`` bit for bit when k is a power of two, and differs from it by
    at most the last bit of the step otherwise.
    CubaLIF (import_nir.py 97-118): a synapse LI cell with tau_syn, then ``r * syn`` into
    the LIF: exact as a LIF when dt/tau_syn = 1 (the synapse copies its input), with gain
    r * w_in.
    Checked against the real norse 1.1.0 (tests/test_compiler/nir/test_norse.py): its
    writer (``export_nir.py`` 37, ``to_nir(module, sample, dt=0.001)``) stores
    ``tau = dt / tau_mem_inv``, i.e. dt * tau_mem, which its own reader takes for tau_mem
    (fixed upstream after 1.1.0, where the argument became ``time_scaling_factor = 1``).
    This convention follows the reader and NIR (tau is the time constant): a file written
    with ``to_nir(..., dt=1.0)`` holds tau_mem and gives norse's spikes exactly; a file
    written with the default dt = 0.001 holds tau 1000 times too small, which is refused
    (tau/dt < 1 step) with that explanation, or read correctly with
    ``nir_dt = 0.001 * the cells' dt`` (1e-6 for norse's defaults).

sinabs (``sinabs/nir.py`` 94-108 and 164-171, ``sinabs/layers/lif.py`` 79-80 and 121,
``sinabs/layers/functional/lif.py`` 20-29, ``sinabs/activation/spike_generation.py`` 122)
    Time constants are in time steps (no dt). The reader builds ``LIFSqueeze(tau_mem=tau,
    norm_input=False)``: ``v = alpha v + x`` with ``alpha = exp(-1/tau)``; the writer always
    writes r = 1 and the reader ignores r (refused here when != 1). SingleSpike fires on
    ``v - v_th >= 0``. IR tau = 1/(1 - exp(-1/tau)), r = IR tau (gain 1), spike_if ">=".
    sinabs holds tau_mem in float32 and computes ``alpha = torch.exp(-1.0 / tau_mem)`` in
    float32: for a float32 file that alpha is recomputed the same way (``sinabs_alpha``) and
    IR tau chosen so that ``float32(1 - 1/tau) == alpha`` (``tau_for_decay``), so the float
    executor's ``decay * v + 1 * x`` is sinabs' ``alpha * v + x`` bit for bit (the float64
    formula misses sinabs' alpha by one float32 step for about 3 % of time constants).
    The file cannot say which spike/reset functions the layer used, nor ``norm_input``
    (the writer writes r = 1 either way): sinabs' defaults (MultiSpike, MembraneSubtract,
    norm_input=True) have no IR equivalent or another gain, so this convention means a
    network of ``SingleSpike`` + ``MembraneReset()`` layers with ``norm_input=False``.
    Checked against the real sinabs 3.1.3 (tests/test_compiler/nir/test_sinabs.py).
    CubaLIF is not read by sinabs (refused).

spikeform (our own export, docs/nir.md)
    Forward Euler at dt = 1: IR tau = tau/dt, r = r; spike_if from the node's metadata
    ("spike_if" or "spikeform.spike_if"), else NIR's ">".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..ir import IRError, OptionError

SNNTORCH_DT = 1e-4   # snntorch/export_nir.py 66 (hard-coded, never written to the file)
NORSE_DT = 1e-3      # norse/torch/utils/import_nir.py 61 (the reader's default dt)


@dataclass(frozen=True)
class StepLIF:
    """The IR ``lif`` attributes of one neuron population."""

    tau: float
    r: float
    spike_if: str

    def attrs(self, v_threshold: float) -> dict:
        return {"tau": self.tau, "v_threshold": v_threshold, "r": self.r,
                "spike_if": self.spike_if}


def tau_for_decay(decay32: np.float32) -> float:
    """The float64 tau with ``float32(1 - 1/tau) == decay32`` (decay in [0, 1)).

    1/(1 - decay) is exact to float64 rounding; the check guards the float32 round trip and
    tries the neighbouring float64 values if the first guess misses.
    """
    d = float(decay32)
    tau = 1.0 / (1.0 - d)
    for cand in (tau, np.nextafter(tau, math.inf), np.nextafter(tau, -math.inf)):
        if np.float32(1.0 - 1.0 / float(cand)) == decay32:
            return float(cand)
    raise ArithmeticError(f"no float64 tau reproduces the float32 decay {d!r}")


def snntorch_beta(tau32: np.float32, dt: float) -> Optional[np.float32]:
    """The float32 beta snntorch ran, from the tau its writer stored; None if no float32 beta
    gives this tau.

    The writer computes ``tau = dt / (1 - beta)`` in float32 (export_nir.py 73: beta is a
    float32 array, dt a Python float). The x = float32(1 - beta) nearest dt/tau with
    ``float32(dt) / x == tau`` (and x = 1 - (1 - x) in float32) is searched for, and
    beta = 1 - x returned. For beta >= 0.5 this is the beta snntorch ran, exactly (1 - beta
    is exact there and the division keeps x apart; checked on 80,000 random float32 betas in
    [0.5, 1) and every 1 - k/4096). Below 0.5 the file does not determine beta: several
    float32 betas share one 1 - beta, and several x one tau; the nearest is taken, which can
    differ from snntorch's beta by a few float32 steps (then near-tie spikes can differ).
    """
    dt32, one = np.float32(dt), np.float32(1)
    guess = np.float32(dt / float(tau32))
    cands = [guess]
    lo = hi = guess
    for _ in range(8):
        lo, hi = np.nextafter(lo, np.float32(0)), np.nextafter(hi, np.float32(2))
        cands += [lo, hi]
    for x in cands:   # nearest to dt/tau first
        beta = one - x
        # x must be what snntorch's float32 1 - beta gives back (several x share a tau)
        if 0 < x <= 1 and dt32 / x == tau32 and one - beta == x:
            return np.float32(beta)
    return None


def norse_step_factor(tau32: np.float32, dt: float) -> np.float32:
    """The float32 ``dt * tau_mem_inv`` norse runs for a file's tau: import_nir.py 123
    computes ``tau_mem_inv = 1 / tau`` on a float32 tensor, lif_box.py 95 ``dt *
    tau_mem_inv`` with the Python float dt rounded to float32 (as torch does for a scalar
    operand). Both are single IEEE float32 operations, so numpy gives the same bits."""
    inv = np.float32(1) / np.float32(tau32)
    return np.float32(np.float32(dt) * inv)


def sinabs_alpha(tau32: np.ndarray) -> np.ndarray:
    """The float32 decays sinabs computes from a file's tau (sinabs/layers/lif.py 121:
    ``torch.exp(-1.0 / tau_mem)`` on the float32 parameter, of the shape the file gives;
    torch's float32 exp, not numpy's, because the two can differ in the last bit)."""
    import torch

    tau = torch.from_numpy(np.ascontiguousarray(tau32, dtype=np.float32))
    return torch.exp(-1.0 / tau).numpy()


def uniform(name: str, field: str, values: np.ndarray) -> float:
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        raise IRError(f"NIR node '{name}': parameter '{field}' is empty")
    if not (flat == flat[0]).all():
        raise IRError(f"NIR node '{name}': '{field}' differs between neurons "
                      f"({flat.min():.6g}..{flat.max():.6g}); Loihi has one value per "
                      "population, so a per-neuron value is not supported")
    return float(flat[0])


class Convention:
    """One toolchain's meaning of NIR LIF parameters (see the module docstring)."""

    name: str = ""
    default_dt: Optional[float] = None
    spike_if: str = ">"
    # what the file cannot say and the import therefore assumes (recorded in the graph meta)
    assumption: str = "LIF layers reset to 0 (NIR's v_reset) and keep no other state"

    def dt(self, given: Optional[float]) -> Optional[float]:
        if given is not None and not (given > 0 and math.isfinite(given)):
            raise OptionError(f"convention {self.name}: the time step nir_dt must be a positive "
                              f"number, got {given!r}", option="nir_dt")
        return self.default_dt if given is None else float(given)

    def lif(self, name: str, tau: np.ndarray, r: np.ndarray, dt: Optional[float],
            metadata: dict, kind: str = "LIF") -> StepLIF:
        """``kind``: "LIF", or "CubaLIF" with an instant synapse (r then includes w_in)."""
        tau_f, r_f = uniform(name, "tau", tau), uniform(name, "r", r)
        if not (tau_f > 0 and math.isfinite(tau_f)):
            raise IRError(f"NIR node '{name}': tau {tau_f} must be a positive finite number")
        return StepLIF(tau_f / dt, r_f, self.spike_if)

    def synapse_is_instant(self, tau_syn: float, dt: Optional[float]) -> bool:
        """True when the synaptic current copies its input each step (alpha = 0)."""
        return abs(tau_syn / dt - 1.0) <= 2.0 ** -22   # within float32 rounding of 1


class SnntorchConvention(Convention):
    name = "snntorch"
    default_dt = SNNTORCH_DT
    assumption = ("Leaky layers used reset_mechanism='zero' (the writer stores v_reset = 0 "
                  "for every reset mechanism; snntorch's default 'subtract' is not in the file)")

    def lif(self, name, tau, r, dt, metadata, kind="LIF"):
        step = super().lif(name, tau, r, dt, metadata, kind)
        tau32 = np.asarray(tau).ravel()[0]
        r32 = np.asarray(r).ravel()[0]
        if np.asarray(tau).dtype != np.float32:
            return step
        beta = snntorch_beta(np.float32(tau32), dt)
        if beta is None:   # not what snntorch writes: plain forward Euler
            return step
        ir_tau = tau_for_decay(beta)
        # the writer's r = tau / dt in float32 means gain 1 (mem = beta mem + input)
        gain_one = np.float32(tau32) / np.float32(dt) == np.float32(r32)
        return StepLIF(ir_tau, ir_tau if gain_one else float(r32) * ir_tau / step.tau,
                       self.spike_if)

    def synapse_is_instant(self, tau_syn, dt):
        # export_nir.py 103: tau_syn = dt / (1 - alpha) in float32; alpha = 0 exactly
        return np.float32(1) - np.float32(dt) / np.float32(tau_syn) == 0


class NorseConvention(Convention):
    name = "norse"
    default_dt = NORSE_DT

    def lif(self, name, tau, r, dt, metadata, kind="LIF"):
        step = super().lif(name, tau, r, dt, metadata, kind)
        # its CubaLIF applies w_in and r (import_nir.py 50-52); its LIF drops r
        if kind == "LIF" and step.r != 1.0:
            raise IRError(f"NIR node '{name}': r = {step.r:.6g}, but norse ignores r for LIF "
                          "(import_nir.py only warns), so the file's meaning is ambiguous; "
                          "fold r into the preceding weights or use another convention")
        if step.tau < 1.0:
            raise OptionError(
                f"NIR node '{name}': tau / nir_dt = {step.tau:.6g} time steps (tau "
                f"{step.tau * dt:.6g}, nir_dt {dt:g}); forward Euler needs at least one step. "
                "norse 1.1.0's to_nir(module, sample, dt=0.001) writes dt * tau_mem instead "
                "of tau_mem: export with to_nir(..., dt=1.0), or read such a file with "
                "nir_dt = 0.001 * the cells' dt (1e-06 for norse's defaults)",
                option="nir_dt")
        tau_arr = np.asarray(tau)
        if tau_arr.dtype == np.float32:   # the step norse runs from this file, in float32
            k = norse_step_factor(tau_arr.ravel()[0], dt)
            if 0 < k <= 1:
                return StepLIF(1.0 / float(k), step.r, self.spike_if)
        return step


class SinabsConvention(Convention):
    name = "sinabs"
    default_dt = None
    spike_if = ">="
    assumption = ("LIF layers used SingleSpike and MembraneReset(0) (sinabs' defaults, "
                  "MultiSpike and MembraneSubtract, are not in the file and not in the IR)")

    def dt(self, given):
        if given is not None:
            raise OptionError("convention sinabs: time constants are in time steps; a time "
                              f"step nir_dt ({given!r}) does not apply (leave nir_dt unset)",
                              option="nir_dt")
        return None

    def lif(self, name, tau, r, dt, metadata, kind="LIF"):
        tau_f, r_f = uniform(name, "tau", tau), uniform(name, "r", r)
        if r_f != 1.0:
            raise IRError(f"NIR node '{name}': r = {r_f:.6g}, but sinabs writes r = 1 and "
                          "ignores r when reading; the file's meaning is ambiguous")
        if not (tau_f > 0 and math.isfinite(tau_f)):
            raise IRError(f"NIR node '{name}': tau {tau_f} must be a positive finite number")
        tau_arr = np.asarray(tau)
        if tau_arr.dtype == np.float32:      # sinabs' own float32 decay, bit for bit
            alpha32 = np.float32(uniform(name, "exp(-1/tau)", sinabs_alpha(tau_arr)))
            if 0 < alpha32 < 1:
                ir_tau = tau_for_decay(alpha32)
                return StepLIF(ir_tau, ir_tau, self.spike_if)
        alpha = math.exp(-1.0 / tau_f)       # sinabs/layers/lif.py 121
        ir_tau = 1.0 / (1.0 - alpha)
        return StepLIF(ir_tau, ir_tau, self.spike_if)

    def synapse_is_instant(self, tau_syn, dt):
        return False


class SpikeformConvention(Convention):
    name = "spikeform"
    default_dt = 1.0

    def lif(self, name, tau, r, dt, metadata, kind="LIF"):
        step = super().lif(name, tau, r, dt, metadata, kind)
        rule = metadata.get("spike_if", metadata.get("spikeform.spike_if", ">"))
        rule = rule.decode() if isinstance(rule, bytes) else str(rule)
        if rule not in (">=", ">"):
            raise IRError(f"NIR node '{name}': metadata spike_if {rule!r} is not '>=' or '>'")
        return StepLIF(step.tau, step.r, rule)


CONVENTIONS: Dict[str, Callable[[], Convention]] = {
    "snntorch": SnntorchConvention, "norse": NorseConvention, "sinabs": SinabsConvention,
    "spikeform": SpikeformConvention,
}


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]()
    except KeyError:
        raise OptionError(f"unknown NIR convention {name!r} (nir_convention); known: "
                          f"{', '.join(CONVENTIONS)}", option="nir_convention") from None
