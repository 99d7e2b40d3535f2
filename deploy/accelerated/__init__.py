"""Fast, bit-exact replacements for stock Lava 0.10 fixed-point models.

Usage::

    from deploy.accelerated import accelerated_run_config
    proc.run(condition=RunSteps(num_steps=10),
             run_cfg=accelerated_run_config())          # instead of
                                                        # Loihi2SimCfg(select_tag="fixed_pt")

``ACCELERATED_MODELS`` maps the stock Process classes to the models used:

* ``lava.proc.conv.process.Conv``   -> :class:`PyConvModelFixedAccelerated`
  (stock ``PyConvModelFixed`` loops over channel pairs calling scipy:
  0.1-several s per step at Spikformer sizes);
* ``lava.proc.lif.process.LIF`` / ``LIFReset`` ->
  :class:`PyLifModelBitAccAccelerated` / :class:`PyLifResetModelBitAccAccelerated`
  (stock LIF recomputes the bias every step and decays in slow int64 numpy
  arithmetic: ~3-5x faster at 10^5 neurons, same bits).

Lava's ``exception_proc_model_map`` matches the *exact* Process class, so
subclasses keep their stock models, and so does every other process (``Dense``
included: the backend never lowers to it).
"""

from __future__ import annotations

import typing as ty

from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.lif.process import LIF, LIFReset

from deploy.accelerated.models import (PyConvModelFixedAccelerated,
                                       PyLifModelBitAccAccelerated,
                                       PyLifResetModelBitAccAccelerated)

ACCELERATED_MODELS: ty.Dict[type, type] = {
    Conv: PyConvModelFixedAccelerated,
    LIF: PyLifModelBitAccAccelerated,
    LIFReset: PyLifResetModelBitAccAccelerated,
}


def accelerated_run_config(select_tag: str = "fixed_pt",
                           extra: ty.Optional[ty.Dict[type, type]] = None,
                           **run_cfg_kwargs: ty.Any) -> Loihi2SimCfg:
    """``Loihi2SimCfg(select_tag=select_tag, exception_proc_model_map=...)``
    with the accelerated models.

    Only models carrying ``select_tag`` among their tags are mapped (all are
    tagged ``fixed_pt``; the LIF ones also ``bit_accurate_loihi``, like stock),
    so e.g. ``select_tag="floating_pt"`` keeps the stock float models.
    ``extra`` entries (Process class -> ProcessModel class) are added last and
    win. Further keyword arguments go to ``Loihi2SimCfg`` unchanged.
    """
    mapping: ty.Dict[type, type] = {
        proc: model for proc, model in ACCELERATED_MODELS.items()
        if select_tag in getattr(model, "tags", ())
    }
    if extra:
        mapping.update(extra)
    return Loihi2SimCfg(select_tag=select_tag,
                        exception_proc_model_map=mapping,
                        **run_cfg_kwargs)


__all__ = [
    "ACCELERATED_MODELS",
    "PyConvModelFixedAccelerated",
    "PyLifModelBitAccAccelerated",
    "PyLifResetModelBitAccAccelerated",
    "accelerated_run_config",
]
