"""Spiking self-attention as a custom Lava process (``process.py``) with its
fixed- and floating-point ProcessModels (``models.py``, found by Lava next to
the process module)."""
from deploy.lava.attention.process import ATTENTION_DELAY, SpikingAttention

__all__ = ["ATTENTION_DELAY", "SpikingAttention"]
