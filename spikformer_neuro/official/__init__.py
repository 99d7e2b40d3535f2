"""Checkpoints of the official Spikformer code (ZK-Zhou/spikformer: spikingjelly 0.0.0.0.12
and timm 0.5.4), read without running code and converted to spikformer-neuro checkpoints.

- :mod:`.restricted_pickle`: the unpickler that admits only data (tensors, containers,
  numbers, ``argparse.Namespace``)
- :mod:`.container`: the file -> weights, EMA weights and training arguments
- :mod:`.layouts`: official-cifar10 / -imagenet / -cifar10dvs keys and shapes -> ours;
  spikingjelly 2.x's Spikformer refused
- :mod:`.settings`: heads, time steps, image size, normalisation, data set: flag > stored
  args > the official code > an error naming the flag
- :mod:`.convert`: all of it -> an in-memory ``Checkpoint`` and a summary; saving

docs/official-checkpoints.md describes what is read from where and what is refused.
"""
from .container import OURS, Container, RefusedCodeError, open_source, read_container
from .convert import (Conversion, ConversionSummary, convert_container, convert_file,
                      save_conversion)
from .errors import OfficialCheckpointError
from .layouts import LAYOUTS, SpikingJelly2Error, looks_official
from .settings import DEFAULT_MAX_COUNT, ConversionOptions

__all__ = ["Container", "Conversion", "ConversionOptions", "ConversionSummary",
           "DEFAULT_MAX_COUNT", "LAYOUTS", "OURS", "OfficialCheckpointError",
           "RefusedCodeError", "SpikingJelly2Error", "convert_container", "convert_file",
           "looks_official", "open_source", "read_container", "save_conversion"]
