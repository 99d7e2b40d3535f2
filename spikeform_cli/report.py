"""`spikeform-report MODEL.pth | ARTIFACT_DIR`: energy, activity, Loihi 2 resources and plots.

Runs test samples (the data set's test split, or the user's --data .npy) through the integer
reference executor (and, for a checkpoint, the float model) and writes a report directory
atomically: report.md (summary), report.json (the data, and where the samples came from)
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

from compiler.encoding import describe_input
from compiler.exact.device import resolve_device
from compiler.ir import IRError
from compiler.reports import markdown, plots
from compiler.reports.build import REPORT_FORMAT, assemble
from compiler.reports.measure import measure
from compiler.serialize import GRAPH_FILE, load_graph, write_atomic

from spikeform_cli.common import (CliError, OutputDir, Progress, check_data_flags,
                                  choose_samples, compile_source, describe_samples,
                                  file_samples, graph_samples, inside, labelled_batches,
                                  write_json)
from spikeform_cli.exit_codes import run_with_exit_codes

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DEFAULT_SAMPLES = 64
DEFAULT_CALIBRATION_SAMPLES = 256
DEFAULT_MARGIN = 2.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="checkpoint (model.pth), NIR file written by spikeform-compile "
                                 "--target nir, or compiled artifact directory")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="test samples to measure on (the first N of the test split or of "
                        "--data)")
    p.add_argument("--data-dir", help="directory holding the data set files (not with "
                                      "--data)")
    data = p.add_argument_group(
        "your own data (.npy, read without pickle) instead of the data set's test and "
        "training splits")
    data.add_argument("--data", metavar="X.npy",
                      help="samples to measure on, as the network takes them: [B, *input "
                           "shape] in [0, 1], or spike trains / event (count) frames [B, T, *input shape]; "
                           "for a checkpoint also the calibration samples unless "
                           "--calibration-data is given")
    data.add_argument("--labels", metavar="Y.npy",
                      help="integer class labels of --data, one per sample (optional)")
    data.add_argument("--calibration-data", metavar="C.npy",
                      help="checkpoint only: calibration samples, shaped like --data "
                           "(default: --data)")
    p.add_argument("-o", "--output", help="report directory (default: <model>.report next to "
                                          "the input)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="samples per executor run; memory grows with it (every population is "
                        "recorded with its membrane: about 24 bytes per neuron, step and sample)")
    p.add_argument("--calibration-samples", type=int,
                   help="checkpoint only: training samples to calibrate the quantizer "
                        f"(default {DEFAULT_CALIBRATION_SAMPLES})")
    p.add_argument("--overflow", choices=("worst-case", "calibrated"),
                   help="checkpoint only: as spikeform-compile --overflow (default worst-case)")
    p.add_argument("--margin", type=float,
                   help="checkpoint only: as spikeform-compile --margin (default "
                        f"{DEFAULT_MARGIN}, with --overflow calibrated)")
    p.add_argument("--device", default="cpu",
                   help="where the reference executor and the float model run: cpu, or cuda "
                        "(cuda:N) on a GPU; the reference's integers are the same on both")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print report.json to stdout only")
    return p


def _is_report_dir(path: Path) -> bool:
    try:
        return json.loads((path / REPORT_JSON).read_text()).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _report_files(path: Path) -> set:
    """The files an earlier report directory holds that spikeform-report wrote: report.json,
    report.md and the PNG plots its report.json lists."""
    try:
        plots = json.loads((path / REPORT_JSON).read_text()).get("plots") or []
    except (OSError, ValueError, AttributeError):
        plots = []
    return {REPORT_JSON, REPORT_MD} | {p for p in plots if isinstance(p, str)
                                        and p.endswith(".png") and "/" not in p}


def _report_dir(path: Path) -> OutputDir:
    """Only an empty directory or an earlier report holding nothing else may be replaced (it
    is swapped wholesale); a user's file in it makes the command refuse, naming it."""
    return OutputDir(path, f"an earlier report (no {REPORT_JSON} of format {REPORT_FORMAT})",
                     _is_report_dir, _report_files, writer="spikeform-report")


def _load_source(args):
    """(quantized graph, float graph or None, source description, test samples
    (``spikeform_cli.common.Samples``), the report's "data" entry so far)."""
    path = Path(args.model)
    if not path.exists():
        raise CliError(f"{path} does not exist; give a checkpoint (.pth) written by "
                       "spikeform-train or an artifact directory written by spikeform-compile")
    if path.is_dir():
        if not (path / GRAPH_FILE).is_file():
            raise CliError(f"{path} is a directory without {GRAPH_FILE}: not a compiled "
                           "artifact (spikeform-compile writes one)")
        given = [f for f, v in (("--calibration-samples", args.calibration_samples),
                                ("--overflow", args.overflow), ("--margin", args.margin),
                                ("--calibration-data", args.calibration_data))
                 if v is not None]
        if given:
            raise CliError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to "
                           f"a checkpoint or NIR file; {path} is a compiled artifact, quantized "
                           "already (compile it again with these options instead)")
        quantized = load_graph(path)
        if quantized.meta.get("stage") != "quantized":
            raise CliError(f"{path}: the graph is at stage {quantized.meta.get('stage')!r}, "
                           "not 'quantized'; report a spikeform-compile artifact")
        check_data_flags(args, verify=True, calibrate=False)
        if args.data:
            test = file_samples(quantized, args.data, "--data", args.labels)
        else:
            dataset = quantized.meta.get("dataset")
            if not dataset:
                raise CliError(f"{path}: the artifact names no data set to measure on; pass "
                               f"--data X.npy ({describe_input(quantized)}) [--labels Y.npy]")
            test = graph_samples(quantized, dataset, "test", args.data_dir)
        return (quantized, None, {"kind": "artifact", "path": str(path)}, test,
                {"calibration": None})
    from compiler.nir import is_nir_file, is_spikeform_nir
    from compiler.pipeline import load_source  # imports the model code: sources only

    if is_nir_file(path) and not is_spikeform_nir(path):
        raise CliError(f"{path} is a NIR graph from another toolchain: compile it first "
                       "(spikeform-compile FILE.nir --nir-convention ... --time-steps T "
                       "--dataset NAME or --data X.npy --target reference -o ART), then report "
                       "on ART")
    overflow = args.overflow or "worst-case"
    if overflow == "calibrated" and args.calibration_samples == 0:
        raise CliError("--overflow calibrated bounds each layer from the values observed on "
                       "calibration samples, and --calibration-samples 0 gives none; pass "
                       "--calibration-samples N (e.g. 256), or use --overflow worst-case")
    if args.margin is not None and overflow != "calibrated":
        raise CliError(f"--margin {args.margin:g} only applies to --overflow calibrated; drop "
                       "--margin, or add --overflow calibrated")
    calibration = (DEFAULT_CALIBRATION_SAMPLES if args.calibration_samples is None
                   else args.calibration_samples)
    check_data_flags(args, verify=True, calibrate=calibration > 0)
    src, calib, test = choose_samples(load_source(path), args, calibrate=calibration > 0,
                                      verify=True)
    compiled, n = compile_source(
        src, calib, calibration_samples=calibration, overflow=overflow,
        margin=DEFAULT_MARGIN if args.margin is None else args.margin)
    source = {"kind": src.kind, "path": str(path), "overflow": overflow,
              "calibration_samples": n}
    return (compiled.quantized, compiled.float_graph, source, test,
            {"calibration": {**calib.record, "samples": n} if calib else None})


def _write_report_dir(out: OutputDir, report: dict, pngs) -> Optional[str]:
    """None when written; else where it could not go and where it was written instead."""
    def fill(directory: Path) -> None:
        for name, data in pngs:
            write_atomic(directory / name, data)
        write_json(directory / REPORT_JSON, report)
        write_atomic(directory / REPORT_MD, markdown.render(report).encode())

    return out.write(fill, "the report")


def _summary(report: dict, out_dir: Path) -> str:
    e = report["energy"]["reference"]
    est = report["resources"]["loihi2"]["total"]
    acc = report["accuracy"]
    pct = lambda v: "not measured" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    data = report.get("data") or {}
    lines = [f"model             {report['model']} ({report['dataset'] or 'no data set'}), "
             f"{report['samples']} samples, T = {report['time_steps']}",
             f"measured on       {describe_samples(data.get('verification'))}"]
    if data.get("calibration"):
        lines.append(f"calibrated on     {describe_samples(data['calibration'])}")
    lines += [
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
        if getattr(args, key) is not None and getattr(args, key) < low:
            raise CliError(f"--{key.replace('_', '-')} must be >= {low}, "
                           f"got {getattr(args, key)}")
    if args.margin is not None and not args.margin > 0:
        raise CliError(f"--margin must be > 0, got {args.margin}")
    src = Path(args.model)
    default = src.parent / f"{src.name.removesuffix('.pth').removesuffix('.nir')}.report"
    out = _report_dir(Path(args.output) if args.output else default)
    if out.path.resolve() == src.resolve():
        raise CliError(f"output {out.path} is the input; choose another -o/--output")
    if inside(src, out.path) and src.exists():
        raise CliError(f"the input {src} lies inside the output directory {out.path}, which "
                       "is replaced as a whole; choose another -o/--output")
    out.check()
    resolve_device(args.device)   # before any work: a missing GPU is named at once
    quantized, float_graph, source, test, data = _load_source(args)
    test = test.first(args.samples)
    if len(test.dataset) == 0:
        raise CliError("the test split is empty: nothing to measure")
    data["verification"] = test.record
    count, batches = labelled_batches(test.dataset, args.batch_size)
    desc = "reference" + (" + float" if float_graph is not None else "")
    m = measure(quantized, float_graph, batches, progress.over(desc, total=count),
                device=args.device)
    report = assemble(quantized, m, source)
    report["data"] = data   # where the calibration and measured samples came from
    pngs = plots.render_all(report)
    report["plots"] = [name for name, _ in pngs]
    failed = _write_report_dir(out, report, pngs)
    print(json.dumps(report, sort_keys=True) if args.json else _summary(report, out.path))
    if failed:
        raise CliError(failed)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: e.g. an unwritable output location
    return run_with_exit_codes(
        "spikeform-report", lambda: run(args),
        (CliError, CheckpointError, DatasetError, IRError, GridError, OSError))


if __name__ == "__main__":
    sys.exit(main())

