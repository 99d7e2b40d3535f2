"""Graded (integer-payload) relays: residual joins and delay lines."""
from deploy.lava.graded.process import DelayedSum

__all__ = ["DelayedSum"]
