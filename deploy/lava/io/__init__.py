"""Processes that hand results to the host: the classification readout and
spike taps (both through Lava external pipes: whole arrays per message, no
per-element Var reads)."""
from deploy.lava.io.process import Readout, Tap

__all__ = ["Readout", "Tap"]
