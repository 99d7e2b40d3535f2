"""Run configurations for the lowered network.

=================  ============================================================
target             run configuration
=================  ============================================================
``lava-sim``       ``Loihi2SimCfg(select_tag="fixed_pt")`` with the
                   accelerated bit-exact models of ``deploy.accelerated`` for
                   Conv/LIF/LIFReset (default)
``lava-sim-stock`` ``Loihi2SimCfg(select_tag="fixed_pt")``: Lava's own models
                   only (slow; for verification on small shapes)
``loihi2``         ``Loihi2HwCfg`` -- needs Intel's ``lava-loihi`` extension
``lava-sim-float`` ``Loihi2SimCfg(select_tag="floating_pt")``: Lava's stock
                   floating-point models, for FLOAT graphs lowered by
                   ``deploy.lava.lowering.lower_float``
=================  ============================================================

The custom processes of this backend (attention, DelayedSum, Readout, Tap)
always run their own models of the target's kind, mapped explicitly.
``TARGETS`` are the fixed-point targets (quantized graphs and compiled
artifacts); ``FLOAT_TARGETS`` the floating-point one.
"""
from __future__ import annotations

import importlib
from typing import Dict

from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg, RunConfig

from deploy.accelerated import accelerated_run_config
from deploy.lava.attention.models import PySpikingAttentionFixed, PySpikingAttentionFloat
from deploy.lava.attention.process import SpikingAttention
from deploy.lava.graded.models import PyDelayedSumFixed, PyDelayedSumFloat
from deploy.lava.graded.process import DelayedSum
from deploy.lava.io.models import PyReadoutFixed, PyReadoutFloat, PyTapFixed, PyTapFloat
from deploy.lava.io.process import Readout, Tap

TARGETS = ("lava-sim", "lava-sim-stock", "loihi2")
DEFAULT_TARGET = "lava-sim"
FLOAT_TARGET = "lava-sim-float"
FLOAT_TARGETS = (FLOAT_TARGET,)

#: the backend's own processes -> their fixed-point models
CUSTOM_MODELS: Dict[type, type] = {
    SpikingAttention: PySpikingAttentionFixed,
    DelayedSum: PyDelayedSumFixed,
    Readout: PyReadoutFixed,
    Tap: PyTapFixed,
}

#: the backend's own processes -> their floating-point models
CUSTOM_FLOAT_MODELS: Dict[type, type] = {
    SpikingAttention: PySpikingAttentionFloat,
    DelayedSum: PyDelayedSumFloat,
    Readout: PyReadoutFloat,
    Tap: PyTapFloat,
}

#: modules that Intel's lava-loihi extension adds (Lava's run_configs imports them too)
LOIHI_EXTENSION_MODULES = ("lava.magma.core.model.nc.model", "lava.magma.core.model.c.model")


class LoihiUnavailableError(RuntimeError):
    """The loihi2 target was requested but lava-loihi is not installed."""


def loihi_extension_available() -> bool:
    for mod in LOIHI_EXTENSION_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError:
            return False
    return True


def numeric_of(target: str) -> str:
    """"float" for a floating-point target, "fixed" for the others."""
    return "float" if target in FLOAT_TARGETS else "fixed"


def run_config(target: str = DEFAULT_TARGET) -> RunConfig:
    """The Lava run configuration for ``target`` (one of :data:`TARGETS` or
    :data:`FLOAT_TARGETS`)."""
    if target == FLOAT_TARGET:
        # Conv, LIF, LIFReset and RingBuffer get Lava's stock floating_pt models
        return Loihi2SimCfg(select_tag="floating_pt",
                            exception_proc_model_map=dict(CUSTOM_FLOAT_MODELS))
    if target == "lava-sim":
        return accelerated_run_config(select_tag="fixed_pt", extra=CUSTOM_MODELS)
    if target == "lava-sim-stock":
        return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=dict(CUSTOM_MODELS))
    if target == "loihi2":
        if not loihi_extension_available():
            raise LoihiUnavailableError(
                "target 'loihi2' needs Intel's lava-loihi extension (Loihi 2 compilers, "
                "neuro-core and embedded-CPU process models, board runtime), which is "
                "distributed to members of the Intel Neuromorphic Research Community (INRC) "
                f"and is not installed here (cannot import {', '.join(LOIHI_EXTENSION_MODULES)}). "
                "Use target 'lava-sim': it runs the same processes with Lava's bit-accurate "
                "fixed-point models (accelerated, bit-exact with the stock ones), which this "
                "backend matches spike for spike to the reference executor.")
        # Conv/LIF get their neuro-core models; the custom processes (attention, joins,
        # readout, taps) have Python models only, which lava-loihi runs on the host CPU
        # behind C adapters (never on the embedded x86 cores: those run C models only).
        return Loihi2HwCfg(select_tag="fixed_pt")
    raise ValueError(f"unknown target {target!r}; choose one of "
                     f"{', '.join(TARGETS + FLOAT_TARGETS)}")
