"""``spikeform-compile``'s report (report.json): what was compiled, from which source, and how
faithfully it runs.

:func:`compile_report` assembles it from the pipeline's results (:class:`~compiler.pipeline.
Compiled`, :class:`~compiler.pipeline.Source`), the float-vs-reference :class:`~.measure.
Measurement` and, for the Lava targets, a :class:`LavaVerification` of plain numbers (the
command-line layer fills it from the Lava backend's check: the compiler does not import the
backend). :func:`nir_export_report` is the report of ``--target nir``.

Keys (README, "Report keys"): ``target``, ``source``, ``checkpoint``, ``model``, ``dataset``,
``artifact``, ``samples``, ``accuracy.{float,reference,lava}``,
``mismatches.{spikes,predictions,logits}`` (Lava vs its ground truth), ``lava``,
``float_vs_reference``, ``timing_s``, ``quantization``, ``input_encoding``, ``network``,
``energy`` (per inference, the paper's method, reference spikes), ``layers`` (per LIF layer:
the quantizer's record plus agreement and rates, float vs reference), ``nir_assumption`` and
``loihi`` (the Lava processes by where they would run on Loihi 2: ``host_processes`` have only
Python models, so the host CPU runs them under lava-loihi).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Dict, Optional

from ..resources import network_size
from .measure import Measurement

if TYPE_CHECKING:  # types only: the pipeline imports the model code
    from ..pipeline import Compiled, Source

#: what a Lava run is compared with: the integer reference executor, or (a float graph on
#: Lava's floating-point models) the float executor
COMPARED_WITH_REFERENCE = "reference"
COMPARED_WITH_FLOAT = "float_exec"


@dataclass
class LavaVerification:
    """A Lava run of the verification samples compared with its ground truth, as numbers."""

    samples: int
    accuracy: float                   # Lava's predictions against the labels
    compared_with: str                # COMPARED_WITH_REFERENCE or COMPARED_WITH_FLOAT
    spike_mismatches: int             # differing probed spike values, all populations
    spikes_compared: int
    logit_mismatches: int             # samples whose logits differ anywhere
    prediction_mismatches: int        # samples whose argmax differs
    steps: int                        # Lava time steps run
    ms_per_step: float
    samples_per_s: float
    start_s: float                    # building and starting the Lava runtime
    run_s: float
    layer_mismatches: Dict[str, int] = field(default_factory=dict)  # population -> values

    @property
    def decisive(self) -> str:
        """The per-sample count that must be zero besides the spikes. Against the float
        executor the logits may differ in the last bit (another summation order in the head)
        without any spike differing: informative, not a failure; the predictions are."""
        return ("prediction_mismatches" if self.compared_with == COMPARED_WITH_FLOAT
                else "logit_mismatches")

    @property
    def exact(self) -> bool:
        return self.spike_mismatches == 0 and getattr(self, self.decisive) == 0

    def as_dict(self) -> dict:
        return asdict(self)


def source_info(source: "Source") -> dict:
    """Where the network came from (the report keys ``source``, ``checkpoint``, ``model``,
    ``dataset``)."""
    return {"source": {"kind": source.kind, "path": str(source.path)},
            "checkpoint": str(source.path) if source.kind in ("checkpoint", "official")
            else None,
            "model": source.model, "dataset": source.dataset}


def layer_report(compiled: "Compiled", m: Optional[Measurement]) -> Dict[str, dict]:
    """Per quantized LIF layer: the quantizer's record (without its input description) and,
    when measured, spike agreement and firing rates, float vs reference."""
    measured = m.lif_layers() if m is not None else {}
    return {name: {**{k: v for k, v in info.items() if k != "input"}, **measured.get(name, {})}
            for name, info in compiled.quantized.meta["quantization"]["layers"].items()}


def compile_report(compiled: "Compiled", source: "Source", m: Optional[Measurement],
                   lava: Optional[LavaVerification], *, target: str, artifact: str,
                   run_seconds: float, loihi: Optional[dict] = None) -> dict:
    """The report of a compilation to ``target`` (written to ``artifact``); ``m`` is None
    when nothing was verified, ``lava`` None when Lava did not run; ``loihi`` is where the
    lowered network's processes would run on Loihi 2 (plain data from the command line:
    ``host_processes``, ``edges``, ``inside_network``, ``neuro_core_processes``)."""
    q = compiled.quantized
    measured = m is not None and m.samples > 0
    return {
        "target": target, **source_info(source), "artifact": str(artifact),
        "samples": m.samples if m is not None else 0,
        "accuracy": {"float": m.accuracy_float() if measured else None,
                     "reference": m.accuracy_reference() if measured else None,
                     "lava": lava.accuracy if lava else None},
        # Lava vs the reference (lava-sim-float: vs the float executor), over every LIF
        # population and every logit (null: not measured)
        "mismatches": {"spikes": lava.spike_mismatches if lava else None,
                       "predictions": lava.prediction_mismatches if lava else None,
                       "logits": lava.logit_mismatches if lava else None},
        "lava": lava.as_dict() if lava else None,
        "float_vs_reference": {"prediction_mismatches":
                               m.prediction_mismatches if m is not None else None},
        "timing_s": {"compile": compiled.seconds, "run": run_seconds,
                     "float": m.seconds_float if m is not None else None,
                     "reference": m.seconds_reference if m is not None else None},
        "quantization": {k: v for k, v in q.meta["quantization"].items() if k != "layers"},
        "input_encoding": dict(q.input_node.attrs),
        "network": network_size(q),
        # per inference, the paper's method (docs/reports.md): rates from the reference spikes
        "energy": ({k: v for k, v in m.energy_reference.summary().items() if k != "layers"}
                   if measured else None),
        "layers": layer_report(compiled, m),
        "nir_assumption": source.graph.meta.get("nir_assumption"),
        "loihi": loihi,
    }


def nir_export_report(source: "Source", *, target: str, nir_file: str, export: dict,
                      seconds: float) -> dict:
    """The report of exporting ``source`` to the NIR file ``nir_file`` (``export``: what the
    exporter wrote, ``compiler.nir.ExportInfo.as_dict()``)."""
    return {"target": target, **source_info(source), "nir_file": str(nir_file),
            "export": export, "timing_s": {"compile": seconds}}
