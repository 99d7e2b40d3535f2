"""`spikeform-compile MODEL.pth|GRAPH.nir --target TARGET`: compile a network and verify it.

The network comes from a spikeform-train checkpoint, a checkpoint of the official Spikformer
code (converted in memory as spikeform-convert does, with the same flags: --num-heads,
--time-steps, --img-size, ...) or a NIR file (ours, or another toolchain's with
--nir-convention/--time-steps; its input an image or a vector). Calibration
and verification samples come from the data set (the checkpoint's, or --dataset) or from the
user's .npy files (--data, --labels, --calibration-data; report.json's "data" says which).
`--target nir` exports it to a NIR file instead (optionally only its stock-executable part,
--nir-portable). Otherwise it compiles to
Loihi fixed point, verifies (unless --no-verify) on test samples -- the float
model, the integer reference executor and, for the Lava targets, the network running in Lava,
compared spike for spike with the reference -- and writes a self-contained artifact directory
(the quantized graph and report.json) atomically. Any Lava-vs-reference mismatch is an error
(exit 3) and no artifact is written: a compiler that silently deploys a different network is
worse than none.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional

import numpy as np

from loihi_numerics.grid import GridError
from spikformer_neuro.checkpoint import CheckpointError
from spikformer_neuro.data import DatasetError
from spikformer_neuro.official import OURS, open_source

from compiler.exact.device import resolve_device
from compiler.ir import IRError
from compiler.nir import CONVENTIONS
from compiler.pipeline import Compiled, Source, load_source
from compiler.reports.compile_report import (COMPARED_WITH_FLOAT, COMPARED_WITH_REFERENCE,
                                             LavaVerification, compile_report,
                                             nir_export_report)
from compiler.reports.measure import measure
from compiler.serialize import ARTIFACT_FILES, GRAPH_FILE, save_artifact

from spikeform_cli.common import (FLOAT_LAVA_TARGET, LAVA_TARGETS, NIR_TARGET, TARGETS, CliError,
                                  OutputDir, Progress, check_data_flags, check_output_file,
                                  check_report_file, check_target, choose_samples,
                                  compile_source, describe_samples, inside, json_bytes,
                                  labelled_batches, require_lava, same_file, stack_samples,
                                  write_or_fallback)
from spikeform_cli.convert import add_conversion_flags, conversion_options
from spikeform_cli.exit_codes import EXIT_VERIFICATION_FAILED, run_with_exit_codes

DEFAULT_LAVA_SAMPLES = 32
DEFAULT_CALIBRATION_SAMPLES = 256
DEFAULT_MARGIN = 2.0
REPORT_FILE = "report.json"
#: library parameters this command's flags name otherwise than ``--`` + the parameter
LIBRARY_FLAGS = {"portable": "--nir-portable"}   # compiler.nir.write_nir_file(portable=...)


class VerificationError(Exception):
    """Lava disagreed with the reference executor; exit code 3."""


#: the targets whose Lava verification --workers spreads over processes (the simulator's)
WORKER_TARGETS = ("lava-sim", "lava-sim-stock")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-compile", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="checkpoint written by spikeform-train (model.pth), a "
                                 "checkpoint of the official Spikformer code (*.pth.tar) or a "
                                 "NIR graph (graph.nir)")
    p.add_argument("--target", default="lava-sim", help=f"one of: {', '.join(TARGETS)} "
                   "(nir: write a .nir file, no verification; lava-sim-float: also run the "
                   "float graph on Lava's floating-point models against the float executor)")
    p.add_argument("-o", "--output", help="artifact directory (default: <model>.compiled "
                                          "next to the model); with --target nir the .nir file "
                                          "(default: <model>.nir)")
    p.add_argument("--nir-portable", action="store_true",
                   help="--target nir: export only what stock NIR consumers can execute (the "
                        "part of the network before spiking attention)")
    nir_in = p.add_argument_group(
        "NIR graphs from other toolchains (snntorch, norse, sinabs); --time-steps and "
        "--dataset also for official Spikformer checkpoints")
    nir_in.add_argument("--nir-convention", choices=CONVENTIONS,
                        help="whose discretisation of tau and r the file uses")
    nir_in.add_argument("--time-steps", type=int,
                        help="time steps per sample (an official checkpoint: instead of its "
                             "stored training arguments)")
    nir_in.add_argument("--dataset", help="data set for calibration and verification "
                                          "(e.g. digits; or give your own with --data; an "
                                          "official checkpoint: instead of the one its stored "
                                          "arguments name)")
    nir_in.add_argument("--nir-dt", type=float, help="the exporter's time step, where the "
                                                     "convention does not fix it")
    add_conversion_flags(p, "checkpoints of the official Spikformer code (spikeform-convert "
                            "takes the same flags)", with_dataset_and_steps=False)
    data = p.add_argument_group(
        "your own data (.npy, read without pickle) instead of the data set's test and "
        "training splits")
    data.add_argument("--data", metavar="X.npy",
                      help="verification samples as the network takes them: [B, *input "
                           "shape] in [0, 1] (e.g. [B, 64] for an MLP, [B, 1, 8, 8] for "
                           "images), or spike trains / event (count) frames [B, T, *input shape]; also the "
                           "calibration samples unless --calibration-data is given")
    data.add_argument("--labels", metavar="Y.npy",
                      help="integer class labels of --data, one per sample (without them "
                           "accuracy is not measured; spikes and logits still are)")
    data.add_argument("--calibration-data", metavar="C.npy",
                      help="calibration samples, shaped like --data (default: --data)")
    p.add_argument("--samples", type=int, help="test samples to verify on (default: "
                   f"{DEFAULT_LAVA_SAMPLES} for the Lava targets, the whole test split or "
                   "all of --data for reference)")
    p.add_argument("--calibration-samples", type=int,
                   help="training samples (or the first of --calibration-data / --data) used "
                        f"to calibrate the quantizer (default {DEFAULT_CALIBRATION_SAMPLES})")
    p.add_argument("--overflow", choices=("worst-case", "calibrated"), default="worst-case",
                   help="bound the 24-bit state provably, or from calibration data")
    p.add_argument("--margin", type=float, help="headroom for --overflow calibrated (default "
                                                f"{DEFAULT_MARGIN})")
    p.add_argument("--data-dir", help="directory holding the data set files (not with "
                                      "--data)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--no-verify", action="store_true", help="compile only")
    p.add_argument("--device", default="cpu",
                   help="where the verification's float model and reference executor run: "
                        "cpu, or cuda (cuda:N); the reference's integers are the same on both")
    p.add_argument("--workers", type=int, default=1,
                   help="Lava verification over N local processes, each its own Lava runtime "
                        "(lava-sim, lava-sim-stock; the same spikes and logits in the same "
                        "order)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    return p


def _is_artifact(path: Path) -> bool:
    return (path / GRAPH_FILE).is_file()


def _artifact_dir(path: Path) -> OutputDir:
    """An artifact directory: replaced only when it holds nothing but files spikeform-compile
    writes (ARTIFACT_FILES); a user's file in it makes the command refuse, naming it."""
    return OutputDir(path, f"a compiled artifact (no {GRAPH_FILE})", _is_artifact,
                     lambda _: ARTIFACT_FILES, writer="spikeform-compile")


def _write_artifact(out: OutputDir, compiled: Compiled, report: dict) -> Optional[str]:
    """Build the artifact (graph.json, tensors.bin, report.json and the manifest of all
    three) in a temporary sibling directory, then swap it in atomically. None when done;
    else where it could not go and where it was written instead."""
    def fill(directory: Path) -> None:
        save_artifact(compiled.quantized, directory, {REPORT_FILE: json_bytes(report)})

    return out.write(fill, "the artifact")


def _table(report: dict) -> str:
    acc = report["accuracy"]

    def pct(v):
        return "not measured" if v is None else f"{100 * v:.2f} %"

    data = report.get("data") or {}
    lines = [f"target            {report['target']}",
             f"model             {report['model']} ({report['dataset'] or 'no data set'})",
             f"artifact          {report['artifact']}",
             f"calibrated on     {describe_samples(data.get('calibration'))}",
             f"verified on       {describe_samples(data.get('verification'))}",
             f"samples           {report['samples']}",
             f"accuracy float    {pct(acc['float'])}",
             f"accuracy ref      {pct(acc['reference'])}",
             f"accuracy Lava     {pct(acc['lava'])}",
             f"float vs ref      {report['float_vs_reference']['prediction_mismatches']} "
             "prediction mismatches"]
    lava = report.get("lava")
    if lava:
        mm = report["mismatches"]
        versus = "float" if lava["compared_with"] == "float_exec" else "ref"
        lines += [f"Lava vs {versus:<10}{mm['spikes']} spike mismatches in "
                  f"{lava['spikes_compared']} probed values, {mm['predictions']} prediction and "
                  f"{mm['logits']} logit mismatches",
                  f"Lava speed        {lava['ms_per_step']:.1f} ms/step, "
                  f"{lava['samples_per_s']:.1f} samples/s ({lava['steps']} steps)"]
    energy = report.get("energy")
    if energy:
        lines.append(f"energy/inference  {energy['energy_mJ'] * 1e3:.4g} uJ estimated "
                     f"({energy['sops']:.4g} SOPs; paper's 45 nm method, docs/reports.md)")
    net = report["network"]
    lines += [
             f"network           {net['neurons']:,} neurons, {net['synapses_stored']:,} stored "
             f"weights ({net['synapses_dense']:,} dense-equivalent synapses)",
             f"compile time      {report['timing_s']['compile']:.2f} s",
             f"run time          {report['timing_s']['run']:.2f} s"]
    if report.get("nir_assumption"):
        lines.append(f"NIR import        assumed: {report['nir_assumption']}")
    loihi = report.get("loihi")
    if loihi:
        inside = ", ".join(f"{n} {k}" for k, n in sorted(loihi["inside_network"].items()))
        lines.append("on Loihi 2        host CPU inside the network: " + (inside or "nothing")
                     + f"; at the edges: {', '.join(sorted(loihi['edges'])) or 'nothing'}"
                     + (f"; {loihi['relay_neurons']:,} relay neurons align joins"
                        if loihi["relay_neurons"] else ""))
    layers = report["layers"]
    rounded = {n: i for n, i in layers.items() if "decay_error" in i}
    if rounded:  # 4096/tau not an integer: Loihi's decay differs from the model's
        lines.append("decay rounded     " + ", ".join(
            f"{n} (tau {i['tau_loihi']:.4g}, decay error {i['decay_error']:.2g})"
            for n, i in rounded.items()))
    if layers and "agreement" in next(iter(layers.values())):
        lines.append("\nlayer                          spike agreement  rate float/ref   "
                     "weight err  limited by")
        for name, info in layers.items():
            lines.append(f"{name:<30} {100 * info['agreement']:>13.3f} %  "
                         f"{info['rate_float']:.3f}/{info['rate_reference']:.3f}    "
                         f"{100 * info.get('weight_error', 0):>7.3f} %  {info['limited_by']}"
                         + _token_sums(info))
    return "\n".join(lines)


def _token_sums(info: dict) -> str:
    """A token-pooled layer's error that matters (its weights are rounded along the tokens:
    per weight up to a step, per channel's sum over the tokens within half a step)."""
    error = info.get("position_sum_error")
    return "" if error is None else f"  (token sums {100 * error:.3f} %)"


def _check_source_flags(args: argparse.Namespace, source: Path) -> None:
    """Flags that only make sense for some sources or targets: refused before any work."""
    from compiler.nir import is_nir_file

    nir_only = [f for f, v in (("--nir-convention", args.nir_convention),
                               ("--nir-dt", args.nir_dt)) if v is not None]
    shared = [f for f, v in (("--time-steps", args.time_steps), ("--dataset", args.dataset))
              if v is not None]
    official = [f for f in conversion_options(args).given() if f not in shared]
    upstream = "checkpoints of the official Spikformer code"
    if source.exists() and is_nir_file(source):
        if official:
            verb = "applies" if len(official) == 1 else "apply"
            raise CliError(f"{', '.join(official)} only {verb} to {upstream}; {source} is a "
                           "NIR file: drop them")
    elif source.exists() and (nir_only or shared or official):
        container = open_source(source)   # None: load_source names what is wrong with it
        ours = container is not None and container.kind == OURS
        if ours:   # a spikeform-train checkpoint fixes everything these flags set
            groups = [(nir_only + shared, "NIR files")] if nir_only else \
                [(shared, f"NIR files and {upstream}")]
            groups.append((official, upstream))
        else:      # an official checkpoint takes all but the NIR conventions
            groups = [(nir_only, "NIR files")]
        parts = [f"{', '.join(flags)} only apply to {where}" for flags, where in groups
                 if flags]
        if parts:
            kind = ("a spikeform-train checkpoint, which names its own data set, time steps "
                    "and architecture" if ours else
                    "a checkpoint, not a NIR file" if container is None else
                    "a checkpoint of the official Spikformer code")
            raise CliError(f"{'; '.join(parts)}; {source} is {kind}")
    if args.nir_portable and args.target != NIR_TARGET:
        raise CliError("--nir-portable only applies to --target nir")
    if args.target == NIR_TARGET:
        unused = [f for f, given in (("--samples", args.samples is not None),
                                     ("--no-verify", args.no_verify),
                                     ("--calibration-samples",
                                      args.calibration_samples is not None),
                                     ("--overflow calibrated", args.overflow == "calibrated"),
                                     ("--margin", args.margin is not None),
                                     ("--data-dir", args.data_dir is not None),
                                     ("--data", args.data is not None),
                                     ("--labels", args.labels is not None),
                                     ("--calibration-data",
                                      args.calibration_data is not None)) if given]
        if unused:
            raise CliError(f"{', '.join(unused)} do{'es' if len(unused) == 1 else ''} not "
                           "apply to --target nir, which exports the float network without "
                           "calibration or verification; drop "
                           f"{'it' if len(unused) == 1 else 'them'}, or choose a compiling "
                           "target")
    if args.device != "cpu" and (args.no_verify or args.target == NIR_TARGET):
        raise CliError(f"--device {args.device} is where the verification runs, and "
                       f"{'--no-verify' if args.no_verify else '--target nir'} runs none: drop "
                       "--device")
    if args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1 and (args.no_verify or args.target not in WORKER_TARGETS):
        raise CliError(f"--workers {args.workers} spreads the Lava verification of "
                       f"{' and '.join(WORKER_TARGETS)} over processes; "
                       + ("--no-verify runs none" if args.no_verify else
                          f"--target {args.target} runs none")
                       + ": drop --workers")
    if args.samples is not None and args.no_verify:
        raise CliError(f"--samples {args.samples} has no effect with --no-verify (the samples "
                       "are the verification's); drop one of them")
    check_data_flags(args, verify=not args.no_verify,
                     calibrate=args.calibration_samples != 0)
    if args.overflow == "calibrated" and args.calibration_samples == 0:
        raise CliError("--overflow calibrated bounds each layer from the values observed on "
                       "calibration samples, and --calibration-samples 0 gives none; pass "
                       "--calibration-samples N (e.g. 256), or use --overflow worst-case")
    if args.margin is not None and args.overflow != "calibrated":
        raise CliError(f"--margin {args.margin:g} only applies to --overflow calibrated (the "
                       "worst-case bound needs no headroom); drop --margin, or add --overflow "
                       "calibrated")
    if args.time_steps is not None and args.time_steps < 1:
        raise CliError(f"--time-steps must be >= 1, got {args.time_steps}")
    if args.nir_dt is not None and not (args.nir_dt > 0 and args.nir_dt < float("inf")):
        raise CliError(f"--nir-dt must be > 0 and finite, got {args.nir_dt}")


def _load(args: argparse.Namespace, path: Path) -> Source:
    return load_source(path, nir_convention=args.nir_convention, nir_dt=args.nir_dt,
                       time_steps=args.time_steps, dataset=args.dataset,
                       official=conversion_options(args))


def _conversion_lines(src: Source) -> str:
    """An official checkpoint's conversion summary, printed above the table."""
    if src.conversion is None:
        return ""
    return "converted in memory from the official Spikformer code:\n  " + \
        "\n  ".join(src.conversion.lines()) + "\n\n"


def _with_conversion(report: dict, src: Source) -> dict:
    """report.json records an official checkpoint's conversion under source.conversion."""
    if src.conversion is not None:
        report["source"]["conversion"] = src.conversion.as_dict()
    return report


def _export_nir(args: argparse.Namespace, source: Path) -> int:
    """--target nir: the float IR after the float passes, written as a .nir file."""
    from compiler.nir import write_nir_file
    from compiler.pipeline import prepare_float

    out = Path(args.output) if args.output else source.with_suffix(".nir")
    report_path = Path(args.report) if args.report else None
    if same_file(out, source):
        raise CliError(f"the NIR output {out} is the input file; choose another -o/--output")
    if out.is_dir():
        raise CliError(f"NIR output {out} is a directory; give a file path with -o")
    if same_file(report_path, source) or same_file(report_path, out):
        which = "input" if same_file(report_path, source) else "NIR output"
        raise CliError(f"--report {report_path} is the {which} file; give another path")
    check_report_file(report_path)
    check_output_file(out, "-o/--output")
    start = time.perf_counter()
    src = _load(args, source)
    info = write_nir_file(prepare_float(src.graph), out, portable=args.nir_portable)
    report = _with_conversion(nir_export_report(src, target=NIR_TARGET, nir_file=str(out),
                                                export=info.as_dict(),
                                                seconds=time.perf_counter() - start), src)
    failed = write_or_fallback(report_path, json_bytes(report), "the report") \
        if report_path else None
    if args.json:
        print(json.dumps(report, sort_keys=True))
        if failed:
            raise CliError(failed)
        return 0
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(info.nir_nodes.items()))
    what = ("the stock-executable part of the network" if info.fragment else
            "the whole network (spiking attention as tagged nested graphs)"
            if "NIRGraph" in info.nir_nodes else "the whole network (stock NIR nodes only)")
    lines = ["target            nir",
             f"model             {src.model} ({src.dataset})",
             f"wrote             {out}: {what}",
             f"IR nodes          {info.ir_nodes}",
             f"NIR nodes         {kinds}",
             f"edges             {info.edges}",
             f"outputs           {', '.join(info.outputs)}"]
    if info.fragment:
        lines.append(f"left out          {len(info.left_out)} nodes from "
                     f"{', '.join(info.blockers)} on (no stock NIR equivalent)")
    print(_conversion_lines(src) + "\n".join(lines))
    if failed:
        raise CliError(failed)
    return 0


def run(args: argparse.Namespace) -> int:
    progress = Progress(show=not (args.quiet or args.json))
    check_target(args.target)
    if args.samples is not None and args.samples < 1:
        raise CliError(f"--samples must be >= 1, got {args.samples}")
    if args.calibration_samples is not None and args.calibration_samples < 0:
        raise CliError(f"--calibration-samples must be >= 0, got {args.calibration_samples}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.margin is not None and not args.margin > 0:
        raise CliError(f"--margin must be > 0, got {args.margin}")
    model_path = Path(args.model)
    _check_source_flags(args, model_path)
    if args.target == NIR_TARGET:
        return _export_nir(args, model_path)
    lava_target = args.target in LAVA_TARGETS + (FLOAT_LAVA_TARGET,)
    if lava_target:
        require_lava(args.target)
    samples = args.samples if args.samples is not None else (
        DEFAULT_LAVA_SAMPLES if lava_target else None)
    out = _artifact_dir(Path(args.output) if args.output else model_path.with_suffix(".compiled"))
    report_path = Path(args.report) if args.report else None
    if inside(model_path, out.path) and model_path.exists():
        raise CliError(f"the model {model_path} lies inside the output directory {out.path}, "
                       "which is replaced as a whole; choose another -o/--output")
    out.check()
    resolve_device(args.device)   # before any work: a missing GPU is named at once
    if inside(report_path, out.path):
        raise CliError(f"--report {report_path} lies inside the artifact directory {out.path}, "
                       "which is replaced as a whole (and already holds report.json); give a "
                       "path outside it")
    if same_file(report_path, model_path):
        raise CliError(f"--report {report_path} is the model file; give another path")
    check_report_file(report_path)
    src = _load(args, model_path)
    calibration = (DEFAULT_CALIBRATION_SAMPLES if args.calibration_samples is None
                   else args.calibration_samples)
    src, calib_data, test_data = choose_samples(src, args, calibrate=calibration > 0,
                                                verify=not args.no_verify)
    compiled, n_calib = compile_source(
        src, calib_data, calibration_samples=calibration, overflow=args.overflow,
        margin=DEFAULT_MARGIN if args.margin is None else args.margin,
        progress=progress.over("calibration"))
    data = {"calibration": {**calib_data.record, "samples": n_calib} if calib_data else None,
            "verification": None}

    m, lava, run_seconds = None, None, 0.0
    if not args.no_verify:
        test_data = test_data.first(samples)
        data["verification"] = test_data.record
        test_ds = test_data.dataset
        count, batches = labelled_batches(test_ds, args.batch_size)
        start = time.perf_counter()
        # float model vs reference executor: accuracies, per-layer agreement, energy
        m = measure(compiled.quantized, compiled.float_graph, batches,
                    progress.over("float + reference", total=count),
                    membrane=False, float_energy=False, attention=False,
                    device=args.device)
        if args.target == FLOAT_LAVA_TARGET:
            lava = _verify_lava_float(compiled, test_ds, progress)
        elif lava_target:
            lava = _verify_lava(compiled, test_ds, args.target, progress, args.workers)
        run_seconds = time.perf_counter() - start
    report = _with_conversion(compile_report(compiled, src, m, lava, target=args.target,
                                             artifact=str(out.path), run_seconds=run_seconds,
                                             loihi=_loihi_placement(compiled)),
                              src)
    report["data"] = data   # where the calibration and verification samples came from
    exact = lava is None or lava.exact
    # results are never lost to a failure in writing them: what cannot go where it was asked
    # to goes to $TMPDIR, and the command says where and exits 2
    failed = [msg for msg in (
        _write_artifact(out, compiled, report) if exact else None,
        write_or_fallback(report_path, json_bytes(report), "the --report JSON")
        if report_path else None) if msg]
    print(json.dumps(report, sort_keys=True) if args.json
          else _conversion_lines(src) + _table(report))
    if failed and exact:
        raise CliError("; ".join(failed))
    if not exact:
        floating = lava.compared_with == COMPARED_WITH_FLOAT
        truth = "the float executor" if floating else "the reference executor"
        what = "predictions" if floating else "logits"
        raise VerificationError(
            f"the network running in Lava ({args.target}) differs from {truth}: "
            f"{lava.spike_mismatches} spike values and {getattr(lava, lava.decisive)} samples' "
            f"{what} differ (per layer: {lava.layer_mismatches}); no artifact was written. "
            "This is a compiler bug: please report it with the model"
            + "".join(f"; {msg}" for msg in failed))
    return 0


def _loihi_placement(compiled: Compiled) -> dict:
    """The lowered network's Lava processes by where they would run on Loihi 2 (report key
    ``loihi``): stock Conv/LIF/LIFReset on neuro-cores; processes with only a Python model on
    the host CPU -- at the edges (input injection, output reading) or inside the network,
    where every step spikes go to the host and values come back."""
    from deploy.lava.lowering import lower
    from deploy.lava.stages import StageKind

    plan = lower(compiled.quantized)
    host, edges = plan.host_processes(), plan.host_edges()
    cores = Counter(st.kind.label for st in plan.stages.values() if not st.kind.host_only)
    # stock relays align joins (docs/lava-backend.md): neurons the graph itself does not have
    relays = [st for st in plan.stages.values()
              if st.kind is StageKind.LIF and st.name != st.node]
    return {"host_processes": host, "edges": edges,
            "inside_network": {k: n for k, n in host.items() if k not in edges},
            "neuro_core_processes": dict(cores),
            "relay_neurons": int(sum(np.prod(st.shape) for st in relays))}


def _verify_lava(compiled: Compiled, test_ds, target: str, progress: Progress,
                 workers: int = 1) -> LavaVerification:
    """Run the test samples through Lava (on ``workers`` local processes) and compare with
    the reference executor."""
    from compiler.encoding import encode_integer
    from deploy.lava.verify import verify_against_reference

    x, y = stack_samples(test_ds, len(test_ds))
    x_seq = encode_integer(compiled.quantized, x)
    what = f"Lava ({target})" + (f", {workers} workers" if workers > 1 else "")
    with progress.steps(what) as update:
        check = verify_against_reference(compiled.quantized, x_seq, target, update,
                                         workers=workers)
    return _lava_verification(check, y, COMPARED_WITH_REFERENCE)


def _verify_lava_float(compiled: Compiled, test_ds, progress: Progress) -> LavaVerification:
    """lava-sim-float: the float graph (after the float passes) on Lava's floating-point
    models, compared with the float executor (float64): every spike, prediction and logit."""
    from deploy.lava.verify import verify_float_against_float_exec

    x, y = stack_samples(test_ds, len(test_ds))
    with progress.steps(f"Lava ({FLOAT_LAVA_TARGET})") as update:
        check = verify_float_against_float_exec(compiled.folded, x, progress=update)
    return _lava_verification(check, y, COMPARED_WITH_FLOAT)


def _lava_verification(check, y, compared_with: str) -> LavaVerification:
    """The numbers of a ``deploy.lava.verify.LavaCheck`` (the compiler does not import
    deploy: the report takes plain numbers)."""
    res = check.lava
    return LavaVerification(
        samples=int(len(res.predictions)),
        accuracy=None if y is None else float((res.predictions == y).mean()),
        compared_with=compared_with, spike_mismatches=check.spike_mismatches,
        spikes_compared=check.spikes_compared, layer_mismatches=check.layer_mismatches,
        logit_mismatches=check.logit_mismatches,
        prediction_mismatches=check.prediction_mismatches, steps=res.num_steps,
        ms_per_step=res.ms_per_step, samples_per_s=res.samples_per_s, start_s=res.compile_s,
        run_s=res.run_s)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: e.g. an unwritable output location
    return run_with_exit_codes(
        "spikeform-compile", lambda: run(args),
        (CliError, CheckpointError, DatasetError, IRError, GridError, OSError),
        failures=[(VerificationError, "verification failed", EXIT_VERIFICATION_FAILED)],
        flags=LIBRARY_FLAGS)


if __name__ == "__main__":
    sys.exit(main())
