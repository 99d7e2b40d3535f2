"""`spikeform-report MODEL.pth | ARTIFACT_DIR`: energy, activity, Loihi 2 resources and plots.

Runs test samples through the integer reference executor (and, for a checkpoint, the float
model) and writes a report directory atomically: report.md (summary), report.json (the data)
and PNG plots. A checkpoint is compiled exactly as ``spikeform-compile`` does; an artifact
(graph.json + tensors.bin) is used as it is, without a float model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from loihi_numerics.grid import GridError
from spikformer_neuro.checkpoint import CheckpointError
from spikformer_neuro.data import DatasetError

from compiler.ir import IRError
from compiler.reports import markdown, plots
from compiler.reports.build import REPORT_FORMAT, assemble
from compiler.reports.measure import measure
from compiler.serialize import GRAPH_FILE, load_graph, write_atomic

from spikeform_cli.common import (CliError, OutputDir, Progress, compile_source, first_samples,
                                  graph_dataset, labelled_batches, source_dataset, write_json)
from spikeform_cli.exit_codes import run_with_exit_codes

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DEFAULT_SAMPLES = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="checkpoint (model.pth), NIR file written by spikeform-compile "
                                 "--target nir, or compiled artifact directory")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="test samples to measure on (the first N of the test split)")
    p.add_argument("--data-dir", help="directory holding the data set files")
    p.add_argument("-o", "--output", help="report directory (default: <model>.report next to "
                                          "the input)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="samples per executor run; memory grows with it (every population is "
                        "recorded with its membrane: about 24 bytes per neuron, step and sample)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="checkpoint only: training samples to calibrate the quantizer")
    p.add_argument("--overflow", choices=("worst-case", "calibrated"), default="worst-case",
                   help="checkpoint only: as spikeform-compile --overflow")
    p.add_argument("--margin", type=float, default=2.0,
                   help="checkpoint only: as spikeform-compile --margin")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print report.json to stdout only")
    return p


def _is_report_dir(path: Path) -> bool:
    try:
        return json.loads((path / REPORT_JSON).read_text()).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _report_dir(path: Path) -> OutputDir:
    """Only an empty directory or an earlier report may be replaced (it is swapped wholesale)."""
    return OutputDir(path, f"an earlier report (no {REPORT_JSON} of format {REPORT_FORMAT})",
                     _is_report_dir)


def _load_source(args):
    """(quantized graph, float graph or None, source description, test dataset)."""
    path = Path(args.model)
    if not path.exists():
        raise CliError(f"{path} does not exist; give a checkpoint (.pth) written by "
                       "spikeform-train or an artifact directory written by spikeform-compile")
    if path.is_dir():
        if not (path / GRAPH_FILE).is_file():
            raise CliError(f"{path} is a directory without {GRAPH_FILE}: not a compiled "
                           "artifact (spikeform-compile writes one)")
        quantized = load_graph(path)
        if quantized.meta.get("stage") != "quantized":
            raise CliError(f"{path}: the graph is at stage {quantized.meta.get('stage')!r}, "
                           "not 'quantized'; report a spikeform-compile artifact")
        test_ds = graph_dataset(quantized, "test", args.data_dir,
                                missing=f"{path}: the artifact names no data set to measure on")
        return quantized, None, {"kind": "artifact", "path": str(path)}, test_ds
    from compiler.nir import is_nir_file, is_spikeform_nir
    from compiler.pipeline import load_source  # imports the model code: sources only

    if is_nir_file(path) and not is_spikeform_nir(path):
        raise CliError(f"{path} is a NIR graph from another toolchain: compile it first "
                       "(spikeform-compile FILE.nir --nir-convention ... --time-steps T "
                       "--dataset NAME --target reference -o ART), then report on ART")
    src = load_source(path)
    compiled, n = compile_source(src, data_dir=args.data_dir,
                                 calibration_samples=args.calibration_samples,
                                 overflow=args.overflow, margin=args.margin)
    test_ds = source_dataset(src, "test", args.data_dir)
    source = {"kind": src.kind, "path": str(path), "overflow": args.overflow,
              "calibration_samples": n}
    return compiled.quantized, compiled.float_graph, source, test_ds


def _write_report_dir(out: OutputDir, report: dict, pngs) -> None:
    with out.build() as build:
        for name, data in pngs:
            write_atomic(build / name, data)
        write_json(build / REPORT_JSON, report)
        write_atomic(build / REPORT_MD, markdown.render(report).encode())


def _summary(report: dict, out_dir: Path) -> str:
    e = report["energy"]["reference"]
    est = report["resources"]["loihi2"]["total"]
    acc = report["accuracy"]
    pct = lambda v: "not measured" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    lines = [f"model             {report['model']} ({report['dataset']}), "
             f"{report['samples']} samples, T = {report['time_steps']}",
             f"accuracy          reference {pct(acc['reference'])}, float {pct(acc['float'])}",
             f"energy/inference  {e['energy_mJ'] * 1e3:.4g} µJ (reference rates): "
             f"{e['sops']:.4g} SOPs, {e['flops_first_conv']:.4g} first-conv FLOPs"]
    if report["energy"]["float"]:
        lines.append(f"                  {report['energy']['float']['energy_mJ'] * 1e3:.4g} µJ "
                     "(float-model rates)")
    lines += [f"Loihi 2 estimate  {est['cores_shared']}-{est['cores_dense']} neuro-cores, "
              f"{est['chips_shared']}-{est['chips_dense']} chip(s) (shared-weight / dense bound)",
              f"report            {out_dir} "
              f"({', '.join([REPORT_MD, REPORT_JSON] + report['plots'])})"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    progress = Progress(show=not (args.quiet or args.json))
    for key, low in (("samples", 1), ("batch_size", 1), ("calibration_samples", 0)):
        if getattr(args, key) < low:
            raise CliError(f"--{key.replace('_', '-')} must be >= {low}, "
                           f"got {getattr(args, key)}")
    if not args.margin > 0:
        raise CliError(f"--margin must be > 0, got {args.margin}")
    src = Path(args.model)
    default = src.parent / f"{src.name.removesuffix('.pth').removesuffix('.nir')}.report"
    out = _report_dir(Path(args.output) if args.output else default)
    if out.path.resolve() == src.resolve():
        raise CliError(f"output {out.path} is the input; choose another -o/--output")
    out.check()
    quantized, float_graph, source, test_ds = _load_source(args)
    test_ds = first_samples(test_ds, args.samples)
    if len(test_ds) == 0:
        raise CliError("the test split is empty: nothing to measure")
    count, batches = labelled_batches(test_ds, args.batch_size)
    desc = "reference" + (" + float" if float_graph is not None else "")
    m = measure(quantized, float_graph, batches, progress.over(desc, total=count))
    report = assemble(quantized, m, source)
    pngs = plots.render_all(report)
    report["plots"] = [name for name, _ in pngs]
    _write_report_dir(out, report, pngs)
    print(json.dumps(report, sort_keys=True) if args.json else _summary(report, out.path))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: e.g. an unwritable output location
    return run_with_exit_codes(
        "spikeform-report", lambda: run(args),
        (CliError, CheckpointError, DatasetError, IRError, GridError, OSError))


if __name__ == "__main__":
    sys.exit(main())

