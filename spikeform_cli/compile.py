"""`spikeform-compile MODEL.pth|GRAPH.nir --target TARGET`: compile a network and verify it.

The network comes from a spikeform-train checkpoint or a NIR file (ours, or another
toolchain's with --nir-convention/--time-steps). `--target nir` exports it to a NIR file
instead (optionally only its stock-executable part, --nir-portable). Otherwise it compiles to
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
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from spikformer_neuro.checkpoint import CheckpointError
from spikformer_neuro.data import DatasetError, load_dataset
from loihi_numerics.grid import GridError

from spikeform_cli.exit_codes import run_with_exit_codes
from compiler.ir import IRError
from compiler.nir import CONVENTIONS
from compiler.pipeline import Compiled, Fidelity, Source, compile_graph, load_source, measure_fidelity
from compiler.resources import network_size
from compiler.serialize import (GRAPH_FILE, make_build_dir, replace_directory_atomic, save_graph,
                        write_atomic)

LAVA_TARGETS = ("lava-sim", "lava-sim-stock", "loihi2")
FLOAT_LAVA_TARGET = "lava-sim-float"  # the float graph on Lava's floating-point models
NIR_TARGET = "nir"
TARGETS = LAVA_TARGETS + (FLOAT_LAVA_TARGET, "reference", NIR_TARGET)
DEFAULT_LAVA_SAMPLES = 32
REPORT_FILE = "report.json"
EXIT_MISMATCH = 3


class CompileError(Exception):
    """Bad arguments; reported as one paragraph with exit code 2."""


class VerificationError(Exception):
    """Lava disagreed with the reference executor; exit code 3."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-compile", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="checkpoint written by spikeform-train (model.pth) or a NIR "
                                 "graph (graph.nir)")
    p.add_argument("--target", default="lava-sim", help=f"one of: {', '.join(TARGETS)} "
                   "(nir: write a .nir file, no verification; lava-sim-float: also run the "
                   "float graph on Lava's floating-point models against the float executor)")
    p.add_argument("-o", "--output", help="artifact directory (default: <model>.compiled "
                                          "next to the model); with --target nir the .nir file "
                                          "(default: <model>.nir)")
    p.add_argument("--nir-portable", action="store_true",
                   help="--target nir: export only what stock NIR consumers can execute (the "
                        "part of the network before spiking attention)")
    nir_in = p.add_argument_group("NIR graphs from other toolchains (snntorch, norse, sinabs)")
    nir_in.add_argument("--nir-convention", choices=CONVENTIONS,
                        help="whose discretisation of tau and r the file uses")
    nir_in.add_argument("--time-steps", type=int, help="time steps per sample")
    nir_in.add_argument("--dataset", help="data set for calibration and verification "
                                          "(e.g. digits)")
    nir_in.add_argument("--nir-dt", type=float, help="the exporter's time step, where the "
                                                     "convention does not fix it")
    p.add_argument("--samples", type=int, help="test samples to verify on (default: "
                   f"{DEFAULT_LAVA_SAMPLES} for the Lava targets, the whole test split for "
                   "reference)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="training samples used to calibrate the quantizer")
    p.add_argument("--overflow", choices=("worst-case", "calibrated"), default="worst-case",
                   help="bound the 24-bit state provably, or from calibration data")
    p.add_argument("--margin", type=float, default=2.0, help="headroom for --overflow calibrated")
    p.add_argument("--data-dir", help="directory holding the data set files")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--report", help="also write the JSON report here")
    p.add_argument("--no-verify", action="store_true", help="compile only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    return p


def _stack(dataset, n: int):
    n = min(n, len(dataset))
    xs, ys = zip(*(dataset[i] for i in range(n))) if n else ((), ())
    return (torch.stack(xs) if xs else torch.empty(0)), np.asarray(ys, dtype=np.int64)


def _check_outputs(out_dir: Path, report: Optional[Path]) -> None:
    """Refuse output paths the run could not write, or would destroy, before any work.

    The artifact replaces ``out_dir`` wholesale, so only an empty directory or an earlier
    artifact may be there: anything else would be deleted.
    """
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CompileError(f"output {out_dir} exists and is not a directory; choose "
                               "another -o/--output")
        if any(out_dir.iterdir()) and not (out_dir / GRAPH_FILE).is_file():
            raise CompileError(f"output directory {out_dir} is not empty and is not a compiled "
                               f"artifact (no {GRAPH_FILE}); the artifact would replace it and "
                               "delete its contents: choose another -o/--output")
    _check_writable(out_dir, report)


def _check_writable(out: Path, report: Optional[Path]) -> None:
    """The report is not a directory, and no existing ancestor of either path is a file."""
    if report is not None and report.is_dir():
        raise CompileError(f"--report {report} is a directory; give a file path")
    for path in (out, report):
        parent = path.parent if path is not None else None
        while parent is not None and not parent.exists():
            parent = parent.parent
        if parent is not None and not parent.is_dir():
            raise CompileError(f"cannot write {path}: {parent} is not a directory")


def _write_artifact(out_dir: Path, compiled: Compiled, report: dict) -> None:
    """Build the artifact in a temporary sibling directory, then swap it in atomically."""
    build = make_build_dir(out_dir)
    try:
        save_graph(compiled.quantized, build)
        write_atomic(build / REPORT_FILE, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
        replace_directory_atomic(build, out_dir,
                                 replaceable=lambda d: (d / GRAPH_FILE).is_file())
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _layer_report(compiled: Compiled, fid: Optional[Fidelity]) -> dict:
    quant_layers = compiled.quantized.meta["quantization"]["layers"]
    measured = fid.layers() if fid else {}
    return {name: {**{k: v for k, v in info.items() if k != "input"}, **measured.get(name, {})}
            for name, info in quant_layers.items()}


def _table(report: dict) -> str:
    acc = report["accuracy"]

    def pct(v):
        return "not measured" if v is None else f"{100 * v:.2f} %"

    lines = [f"target            {report['target']}",
             f"model             {report['model']} ({report['dataset']})",
             f"artifact          {report['artifact']}",
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
                         f"{100 * info.get('weight_error', 0):>7.3f} %  {info['limited_by']}")
    return "\n".join(lines)


def _check_source_flags(args: argparse.Namespace, source: Path) -> None:
    """Flags that only make sense for some sources or targets: refused before any work."""
    from compiler.nir import is_nir_file

    foreign = [f for f, v in (("--nir-convention", args.nir_convention),
                              ("--time-steps", args.time_steps), ("--dataset", args.dataset),
                              ("--nir-dt", args.nir_dt)) if v is not None]
    if foreign and source.exists() and not is_nir_file(source):
        raise CompileError(f"{', '.join(foreign)} only apply to NIR files; {source} is a "
                           "checkpoint, which names its own data set and time steps")
    if args.nir_portable and args.target != NIR_TARGET:
        raise CompileError("--nir-portable only applies to --target nir")
    if args.time_steps is not None and args.time_steps < 1:
        raise CompileError(f"--time-steps must be >= 1, got {args.time_steps}")
    if args.nir_dt is not None and not args.nir_dt > 0:
        raise CompileError(f"--nir-dt must be > 0, got {args.nir_dt}")


def _load(args: argparse.Namespace, path: Path) -> Source:
    return load_source(path, nir_convention=args.nir_convention, nir_dt=args.nir_dt,
                       time_steps=args.time_steps, dataset=args.dataset)


def _source_report(src: Source) -> dict:
    return {"source": {"kind": src.kind, "path": str(src.path)},
            "checkpoint": str(src.path) if src.kind == "checkpoint" else None,
            "model": src.model, "dataset": src.dataset}


def _export_nir(args: argparse.Namespace, source: Path) -> int:
    """--target nir: the float IR after the float passes, written as a .nir file."""
    from compiler.nir import write_nir_file
    from compiler.pipeline import prepare_float

    out = Path(args.output) if args.output else source.with_suffix(".nir")
    if out.exists() and out.resolve() == source.resolve():
        raise CompileError(f"the NIR output {out} is the input file; choose another -o/--output")
    if out.is_dir():
        raise CompileError(f"NIR output {out} is a directory; give a file path with -o")
    _check_writable(out, Path(args.report) if args.report else None)
    start = time.perf_counter()
    src = _load(args, source)
    info = write_nir_file(prepare_float(src.graph), out, portable=args.nir_portable)
    report = {"target": NIR_TARGET, **_source_report(src), "nir_file": str(out),
              "export": info.as_dict(), "timing_s": {"compile": time.perf_counter() - start}}
    if args.report:
        write_atomic(Path(args.report), (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    if args.json:
        print(json.dumps(report, sort_keys=True))
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
    print("\n".join(lines))
    return 0


def _thread_lock_for_progress_bars() -> None:
    """tqdm's default lock is a multiprocessing RLock, and creating it fixes the process's
    multiprocessing start method; Lava's import then fails ("context has already been set")
    when a later compilation in the same process targets Lava. This CLI's bars live in one
    process: a thread lock is all they need."""
    if getattr(tqdm, "_lock", None) is None:
        tqdm.set_lock(threading.RLock())


def run(args: argparse.Namespace) -> int:
    _thread_lock_for_progress_bars()
    if args.target not in TARGETS:
        raise CompileError(f"unknown target '{args.target}'; choose one of: {', '.join(TARGETS)}")
    if args.samples is not None and args.samples < 1:
        raise CompileError(f"--samples must be >= 1, got {args.samples}")
    if args.calibration_samples < 0:
        raise CompileError(f"--calibration-samples must be >= 0, got {args.calibration_samples}")
    if args.batch_size < 1:
        raise CompileError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.margin > 0:
        raise CompileError(f"--margin must be > 0, got {args.margin}")
    model_path = Path(args.model)
    _check_source_flags(args, model_path)
    if args.target == NIR_TARGET:
        return _export_nir(args, model_path)
    lava_target = args.target in LAVA_TARGETS + (FLOAT_LAVA_TARGET,)
    if lava_target:
        from deploy.lava import loihi_extension_available  # imports Lava: only when needed
        if args.target == "loihi2" and not loihi_extension_available():
            raise CompileError(
                "target loihi2 needs Intel's lava-loihi extension (available to INRC members), "
                "which is not installed; compile with --target lava-sim instead, which runs the "
                "same processes with Lava's bit-accurate fixed-point models")
    samples = args.samples if args.samples is not None else (
        DEFAULT_LAVA_SAMPLES if lava_target else None)
    out_dir = Path(args.output) if args.output else model_path.with_suffix(".compiled")
    show = not (args.quiet or args.json)
    _check_outputs(out_dir, Path(args.report) if args.report else None)
    src = _load(args, model_path)
    if src.dataset is None:
        raise CompileError(f"{model_path} does not name a data set for calibration and "
                           "verification: pass --dataset NAME (e.g. digits)")
    train_ds, _ = load_dataset(src.dataset, "train", args.data_dir, img_size=src.img_size,
                               time_steps=src.time_steps)
    calib_x, _ = _stack(train_ds, args.calibration_samples)
    compiled = compile_graph(src.graph, calib_x, args.overflow, args.margin,
                             lambda it: tqdm(it, desc="calibration", disable=not show,
                                             leave=False))

    fid, lava, run_seconds = None, None, 0.0
    if not args.no_verify:
        test_ds, _ = load_dataset(src.dataset, "test", args.data_dir, img_size=src.img_size,
                                  time_steps=src.time_steps)
        if samples is not None:
            test_ds = Subset(test_ds, range(min(samples, len(test_ds))))
        loader = DataLoader(test_ds, batch_size=args.batch_size)
        start = time.perf_counter()
        fid = measure_fidelity(compiled, ((x, y.numpy()) for x, y in loader),
                               lambda it: tqdm(it, total=len(loader), desc="float + reference",
                                               disable=not show, leave=False))
        if args.target == FLOAT_LAVA_TARGET:
            lava = _verify_lava_float(compiled, test_ds, show)
        elif lava_target:
            lava = _verify_lava(compiled, test_ds, args.target, show)
        run_seconds = time.perf_counter() - start
    report = {
        "target": args.target, **_source_report(src), "artifact": str(out_dir),
        "samples": fid.samples if fid else 0,
        "accuracy": {"float": fid.correct_float / fid.samples if fid and fid.samples else None,
                     "reference": (fid.correct_reference / fid.samples
                                   if fid and fid.samples else None),
                     "lava": lava["accuracy"] if lava else None},
        # Lava vs the reference (lava-sim-float: vs the float executor), over every LIF
        # population and every logit (null: not measured)
        "mismatches": {"spikes": lava["spike_mismatches"] if lava else None,
                       "predictions": lava["prediction_mismatches"] if lava else None,
                       "logits": lava["logit_mismatches"] if lava else None},
        "lava": lava,
        "float_vs_reference": {"prediction_mismatches": fid.prediction_mismatches if fid else None},
        "timing_s": {"compile": compiled.seconds, "run": run_seconds,
                     "float": fid.seconds_float if fid else None,
                     "reference": fid.seconds_reference if fid else None},
        "quantization": {k: v for k, v in compiled.quantized.meta["quantization"].items()
                         if k != "layers"},
        "input_encoding": {k: v for k, v in compiled.quantized.input_node.attrs.items()},
        "network": network_size(compiled.quantized),
        # per inference, the paper's method (docs/reports.md): rates from the reference spikes
        "energy": ({k: v for k, v in fid.energy.summary().items() if k != "layers"}
                   if fid and fid.samples else None),
        "layers": _layer_report(compiled, fid),
        "nir_assumption": src.graph.meta.get("nir_assumption"),
    }
    # lava-sim-float: float logits may differ in the last bit (another summation order in the
    # head) without any spike differing: informative, not a failure; spikes and predictions are.
    last_check = "prediction_mismatches" if args.target == FLOAT_LAVA_TARGET else "logit_mismatches"
    exact = lava is None or (lava["spike_mismatches"] == 0 and lava[last_check] == 0)
    if exact:
        _write_artifact(out_dir, compiled, report)
    if args.report:
        write_atomic(Path(args.report), (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    print(json.dumps(report, sort_keys=True) if args.json else _table(report))
    if not exact:
        truth = "the float executor" if args.target == FLOAT_LAVA_TARGET else "the reference executor"
        what = "predictions" if last_check == "prediction_mismatches" else "logits"
        raise VerificationError(
            f"the network running in Lava ({args.target}) differs from {truth}: "
            f"{lava['spike_mismatches']} spike values and {lava[last_check]} samples' {what} "
            f"differ (per layer: {lava['layer_mismatches']}); no artifact was written. "
            "This is a compiler bug: please report it with the model")
    return 0


def _verify_lava(compiled: Compiled, test_ds, target: str, show: bool) -> dict:
    """Run the test samples through Lava and compare with the reference executor."""
    from compiler.encoding import encode_integer
    from deploy.lava.verify import verify_against_reference

    x, y = _stack(test_ds, len(test_ds))
    x_seq = encode_integer(compiled.quantized, x)
    with tqdm(desc=f"Lava ({target})", unit="step", disable=not show, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        check = verify_against_reference(compiled.quantized, x_seq, target, progress)
    return _lava_summary(check, y, compared_with="reference")


def _lava_summary(check, y: np.ndarray, compared_with: str) -> dict:
    res = check.lava
    return {"samples": int(len(y)), "accuracy": float((res.predictions == y).mean()),
            "compared_with": compared_with,
            "spike_mismatches": check.spike_mismatches, "spikes_compared": check.spikes_compared,
            "layer_mismatches": check.layer_mismatches,
            "logit_mismatches": check.logit_mismatches,
            "prediction_mismatches": check.prediction_mismatches,
            "steps": res.num_steps, "ms_per_step": res.ms_per_step,
            "samples_per_s": res.samples_per_s, "start_s": res.compile_s, "run_s": res.run_s}


def _verify_lava_float(compiled: Compiled, test_ds, show: bool) -> dict:
    """lava-sim-float: the float graph (after the float passes) on Lava's floating-point
    models, compared with the float executor (float64): every spike, prediction and logit."""
    from deploy.lava.verify import verify_float_against_float_exec

    x, y = _stack(test_ds, len(test_ds))
    with tqdm(desc=f"Lava ({FLOAT_LAVA_TARGET})", unit="step", disable=not show,
              leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        check = verify_float_against_float_exec(compiled.folded, x, progress=progress)
    return _lava_summary(check, y, compared_with="float_exec")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: e.g. an unwritable output location
    return run_with_exit_codes(
        "spikeform-compile", lambda: run(args),
        (CompileError, CheckpointError, DatasetError, IRError, GridError, OSError),
        failures=[(VerificationError, "verification failed", EXIT_MISMATCH)])


if __name__ == "__main__":
    sys.exit(main())
