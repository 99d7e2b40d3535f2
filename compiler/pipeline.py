"""The compile pipeline: source -> float IR -> passes -> quantized IR.

A source is a spikeform-train checkpoint, a checkpoint of the official Spikformer code
(converted in memory by spikformer_neuro.official) or a ``.nir`` file (:func:`load_source`);
each yields a float graph plus what the rest needs (data set, image size, time steps), so
everything after the source is shared. Each stage is a function of the previous one's
output. How faithfully the result runs (float model vs reference executor) is measured by
``compiler.reports.measure`` and reported by ``compiler.reports.compile_report``; the
command-line layer strings these together and writes the artifact and the report.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch

from spikformer_neuro.checkpoint import Checkpoint, load_checkpoint
from spikformer_neuro.official import (OURS, ConversionOptions, ConversionSummary,
                                       convert_container, open_source)

from .calibration import detect_input_grid, observed_synaptic_max
from .encoding import SPIKES, describe_input, encoding_of, is_flat, sample_shape
from .frontend import checkpoint_to_ir
from .ir import Graph, IRError, OptionError, non_finite
from .passes import float_passes
from .passes.quantize import QuantizeOptions, quantize


@dataclass
class Compiled:
    float_graph: Graph        # as the source gave it (a checkpoint's mirrors the PyTorch model)
    quantized: Graph          # Loihi fixed point: what the reference and Lava run
    seconds: float
    folded: Graph             # float_graph after the float passes (what quantize started from)


@dataclass
class Source:
    """What a checkpoint or a NIR file provides to the shared pipeline."""

    path: Path
    kind: str                 # "checkpoint", "official" (converted in memory) or "nir"
    graph: Graph              # float IR (a checkpoint's before float_passes, a NIR file's as read)
    dataset: Optional[str]    # data set name (None: a foreign NIR file given no dataset)
    img_size: Optional[int]   # side of the input images (the input node's H); None when the
                              # input is a vector [K] (compiler.encoding.sample_shape)
    time_steps: int
    model: str                # a name for reports
    # an official checkpoint's conversion: where each value came from, the dropped keys
    conversion: Optional[ConversionSummary] = None

    @property
    def hints(self) -> Optional[dict]:
        """The QAT grid of a fine-tuned checkpoint (kept in the graph meta by NIR export)."""
        return self.graph.meta.get("loihi_hints")


def load_source(path: Union[str, Path], *, nir_convention: Optional[str] = None,
                nir_dt: Optional[float] = None, time_steps: Optional[int] = None,
                dataset: Optional[str] = None,
                official: Optional[ConversionOptions] = None) -> Source:
    """A checkpoint, an official Spikformer checkpoint or a ``.nir`` file (by name or HDF5
    signature) -> :class:`Source`.

    ``time_steps`` and ``dataset`` are for NIR files from other toolchains
    (compiler.nir.read_nir_file, with ``nir_convention`` and ``nir_dt``) and for official
    checkpoints (with ``official``: heads, image size, layout, ...); a wrong or missing one
    is an ``OptionError`` whose ``option`` names it (an official checkpoint's problems are
    ``spikformer_neuro.official.OfficialCheckpointError``). A spikeform-train checkpoint
    fixes all of them itself and takes none.
    """
    from .nir import is_nir_file, read_nir_file  # NIR/h5py only when needed

    path = Path(path)
    conversion = None
    if is_nir_file(path):
        _refuse_options(path, "a NIR file", official=official)
        check_nir_numbers(path)
        graph = read_nir_file(path, convention=nir_convention, dt=nir_dt,
                              time_steps=time_steps, dataset=dataset)
        kind = "nir"
        model = str(graph.meta.get("model") or path.stem)
    else:
        _refuse_options(path, "a checkpoint", nir_convention=nir_convention, nir_dt=nir_dt)
        options = dataclasses.replace(official or ConversionOptions(), time_steps=time_steps,
                                      dataset=dataset)
        ckpt, conversion = load_checkpoint_or_official(path, options)
        graph = checkpoint_to_ir(ckpt)
        kind = "checkpoint" if conversion is None else "official"
        model = ckpt.config.name
    inp = graph.input_node
    if len(inp.shape) != 3:
        raise IRError(f"{path}: input node '{inp.name}' has shape {list(inp.shape)}; the "
                      "pipeline feeds [C, H, W] images or event frames")
    try:
        steps = graph.time_steps
    except IRError:
        raise IRError(f"{path}: the graph does not say how many time steps it runs "
                      f"(meta time_steps = {graph.meta.get('time_steps')!r})") from None
    sample_shape(graph)   # a malformed graph meta 'sample_shape' is an IRError here
    return Source(path, kind, graph, graph.meta.get("dataset") or dataset,
                  None if is_flat(graph) else int(inp.shape[1]), steps, model, conversion)


def load_checkpoint_or_official(path: Path, options: ConversionOptions
                                ) -> Tuple[Checkpoint, Optional[ConversionSummary]]:
    """(the checkpoint, None) for a spikeform-train checkpoint; (its in-memory conversion,
    the summary) for a file of the official Spikformer code, read without running code. A
    spikeform-train checkpoint given any of ``options`` is refused naming them: it fixes
    them itself. A file that is neither gets load_checkpoint's message for it."""
    container = open_source(path, ema=options.ema)
    if container is None or container.kind == OURS:
        given = options.given()
        if given and container is not None:
            raise OptionError(f"{path} is a spikeform-train checkpoint, which fixes its own "
                              f"architecture, time steps, data set and normalisation: drop "
                              f"{', '.join(given)} (they are for checkpoints of the official "
                              "Spikformer code)", option=given[0][2:].replace("-", "_"))
        return load_checkpoint(path), None
    conversion = convert_container(container, options)
    return conversion.checkpoint, conversion.summary


def _refuse_options(path: Path, what: str, *, official: Optional[ConversionOptions] = None,
                    **nir_options) -> None:
    """Options that do not apply to ``path``'s kind of source, as an OptionError."""
    given = list(official.given()) if official is not None else []
    given = [flag for flag in given if flag not in ("--time-steps", "--dataset")]
    given += [name for name, value in nir_options.items() if value is not None]
    if given:
        raise OptionError(f"{path} is {what}: {', '.join(given)} do not apply to it",
                          option=given[0].lstrip("-").replace("-", "_"))


def with_spike_input(src: Source) -> Source:
    """``src`` with its input read as spikes (``[B, T, *sample]`` spike trains) instead of
    analog samples repeated over time. Only for a NIR file from another toolchain, whose
    encoding is not in the file (the import guesses it from the data set's name); a
    checkpoint or a spikeform NIR file fixes its own, and is refused (an IRError)."""
    graph = src.graph
    if encoding_of(graph) == SPIKES:
        return src
    if src.kind != "nir" or "nir_convention" not in graph.meta:
        raise IRError(f"{src.path}: the network takes {describe_input(graph)}, not spike "
                      "trains")
    graph = graph.copy()
    graph.input_node.attrs["encoding"] = SPIKES
    return dataclasses.replace(src, graph=graph.validate())


def check_nir_numbers(path: Union[str, Path]) -> None:
    """Refuse a NIR file with a parameter that is not a real, finite number (NaN, infinity,
    complex), naming the NIR node, its NIR type (the layer as the exporting toolchain wrote
    it: Affine, Conv2d, LIF, ...) and the field. Checked on the file itself, before any
    conversion could hide the value (a cast dropping an imaginary part) or turn it into a
    misleading error further down (an 8-bit overflow, a per-neuron parameter)."""
    import h5py

    def type_of(group) -> str:
        kind = group["type"][()] if "type" in group else b"?"
        return kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)

    def walk(group, prefix: str) -> None:
        for key, node in group.get("nodes", {}).items():
            kind = type_of(node)
            if kind == "NIRGraph":
                walk(node, f"{prefix}{key}/")
                continue
            for field, data in node.items():
                if not isinstance(data, h5py.Dataset) or data.dtype.kind not in "fc":
                    continue
                values = np.asarray(data[()])
                where = f"{path}: NIR node '{prefix}{key}' ({kind}): '{field}'"
                if values.dtype.kind == "c":
                    raise IRError(f"{where} holds complex numbers ({values.dtype}); NIR "
                                  "parameters must be real: export the model again")
                problem = non_finite(values)
                if problem:
                    raise IRError(f"{where} {problem}; a network with non-finite parameters "
                                  "cannot be compiled: fix the model in its toolchain (retrain "
                                  "it, or repair the layer) and export it again")

    try:
        with h5py.File(path, "r") as f:
            root = f["node"] if "node" in f else None
            if root is not None:
                walk(root, "")
    except IRError:
        raise
    except (OSError, KeyError, TypeError, ValueError):
        return   # not readable as NIR here: read_nir_file names the problem


def prepare_float(graph: Graph) -> Graph:
    """``float_passes`` unless the graph has been through them (a spikeform NIR file has:
    running them twice would record them twice in the meta, and change the artifact)."""
    done = graph.meta.get("passes", [])
    if "fold_batchnorm" in done and "maxpool_to_sumpool" in done:
        return graph.validate()
    return float_passes(graph)


def compile_graph(graph: Graph, calibration_x: Optional[torch.Tensor],
                  overflow: str = "worst-case", margin: float = 2.0,
                  progress: Callable = lambda it: it) -> Compiled:
    """Float passes, calibration (input grid; observed maxima if calibrated), quantize."""
    start = time.perf_counter()
    folded = prepare_float(graph)
    levels, observed = None, None
    if calibration_x is not None and len(calibration_x):
        levels = detect_input_grid(folded, calibration_x)
        if overflow == "calibrated":
            observed = observed_synaptic_max(folded, calibration_x, progress=progress)
    if "loihi_hints" in folded.meta:
        levels = None  # QAT fixed the input encoding; quantize takes it from the hints
    q = quantize(folded, observed, QuantizeOptions(overflow=overflow, margin=margin,
                                                   input_levels=levels))
    return Compiled(graph, q, time.perf_counter() - start, folded)


def compile_checkpoint(ckpt: Checkpoint, calibration_x: Optional[torch.Tensor],
                       overflow: str = "worst-case", margin: float = 2.0) -> Compiled:
    """:func:`compile_graph` of the checkpoint's float IR."""
    start = time.perf_counter()
    compiled = compile_graph(checkpoint_to_ir(ckpt), calibration_x, overflow, margin)
    compiled.seconds = time.perf_counter() - start
    return compiled
