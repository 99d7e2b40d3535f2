"""The one error type of the official-checkpoint reader."""
from __future__ import annotations

from typing import Optional

from spikformer_neuro.checkpoint import CheckpointError


class OfficialCheckpointError(CheckpointError):
    """A file of the official Spikformer code that cannot be converted; the message names the
    file, the problem (the key, the global, the setting) and the fix. ``option``, when set, is
    the conversion parameter the fix concerns (``num_heads``): a command line names its flag
    (``--num-heads``) instead, as for the other library errors (spikeform_cli.common)."""

    def __init__(self, message: str, option: Optional[str] = None):
        super().__init__(message)
        self.option = option
