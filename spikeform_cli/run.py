"""`spikeform-run ARTIFACT`: run a compiled network in the Lava simulator.

    spikeform-run runs/digits-tiny.compiled --samples 100
    spikeform-run ART --input images.npy [--labels labels.npy] --out results.json
    spikeform-run MLP_ART --input vectors.npy        # [B, K] for a network whose input is [K]
    spikeform-run ART --probe blocks.0.attn.q.lif --probe-out q_spikes.npz
    spikeform-run ART --samples 10000 --shard 2/4      # the third of four contiguous shards
    spikeform-run ART --samples 1000 --workers 4       # four local worker processes
    spikeform-run ART --samples 1000 --cluster ray     # Ray tasks (or ray://HOST:10001)

Samples stream back to back (one every T steps) in chunks of --chunk samples per Lava run. The
artifact alone is enough: no checkpoint, no PyTorch model code. With --workers N or --cluster
the samples (of this --shard) are split into N contiguous shards, each run in its own Lava
runtime, and merged in order: the results equal one process's (docs/scaling.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from compiler.encoding import describe_input, encode_integer
from compiler.ir import Graph, IRError
from compiler.serialize import load_graph

from deploy.parallel import (ArtifactFiles, ClusterSpec, ClusterUnavailable, ShardedResult,
                             WorkerFailed, parse_cluster)
from deploy.parallel.ray_cluster import import_ray
from deploy.parallel.shards import shard_range
from spikeform_cli.common import (LAVA_TARGETS, CliError, Progress, check_output_file,
                                  check_target, graph_dataset, inside, json_bytes,
                                  load_labels, load_samples, require_lava, same_file,
                                  write_or_fallback)
from spikeform_cli.exit_codes import EXIT_WORKER_FAILED, run_with_exit_codes

DEFAULT_SAMPLES = 32
DEFAULT_PROBE_OUT = "probes.npz"

__all__ = ["build_parser", "main", "parse_shard", "run", "shard_range"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("artifact", help="directory written by spikeform-compile")
    p.add_argument("--target", default=LAVA_TARGETS[0], help=", ".join(LAVA_TARGETS))
    p.add_argument("--samples", type=int, help=f"samples to run (default {DEFAULT_SAMPLES}; "
                                               "all of --input)")
    p.add_argument("--input", help=".npy of inputs as the model takes them: images [B, C, H, W] "
                                   "or vectors [B, K] (an MLP's input) in [0, 1], binary "
                                   "event frames [B, T, C, H, W] / spike trains [B, T, K], or "
                                   "event-count frames for a network that takes counts")
    p.add_argument("--labels", help=".npy of integer labels for --input (optional)")
    p.add_argument("--data-dir", help="data set directory (without --input: the artifact's "
                                      "data set, test split)")
    p.add_argument("--shard", default="0/1", help="i/n: run only the i-th (0-based) of n "
                                                  "contiguous shards of the samples")
    p.add_argument("--chunk", type=int, default=64, help="samples per Lava run")
    p.add_argument("--workers", type=int, metavar="N",
                   help="split the samples into N contiguous shards, each in its own worker "
                        "process and Lava runtime (default 1: this process; with --cluster: "
                        "Ray tasks, default one per CPU of the cluster)")
    p.add_argument("--cluster", metavar="ray|ray://HOST:PORT|ray:auto",
                   help="run the shards as Ray tasks: 'ray' starts a local Ray instance for "
                        "this run, 'ray://HOST:PORT' uses an existing cluster (Ray Client), "
                        "'ray:auto' the one in RAY_ADDRESS (needs the [cluster] extra)")
    p.add_argument("--probe", action="append", default=[], metavar="LAYER",
                   help="record this layer's spikes (repeatable)")
    p.add_argument("--probe-out", help=f"where --probe spikes go (default {DEFAULT_PROBE_OUT})")
    p.add_argument("--out", help="write results (predictions, accuracy, throughput) as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    return p


def parse_shard(text: str) -> Tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise CliError(f"--shard must look like i/n (e.g. 0/4), got '{text}'") from None
    if not (n >= 1 and 0 <= i < n):
        raise CliError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def parse_cluster_flag(args: argparse.Namespace) -> Optional[ClusterSpec]:
    """--cluster and --workers, checked before any work (Ray imported here: without it,
    exit 2 with the install command)."""
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    if args.cluster is None:
        return None
    try:
        cluster = parse_cluster(args.cluster)
    except ValueError as e:
        raise CliError(f"--cluster {e}") from None
    try:
        import_ray()
    except ClusterUnavailable as e:
        raise CliError(f"--cluster {args.cluster}: {e}") from None
    return cluster


def load_inputs(graph: Graph, args, count: Optional[int]):
    """(number of samples, ``get(indices) -> (float inputs, labels or None)``). A user's
    --input is checked whole before Lava starts (``spikeform_cli.common.load_samples``: the
    shape, real finite numbers, [0, 1] or binary spikes), its --labels too."""
    if args.input:
        x = load_samples(graph, args.input, "--input")
        y = (load_labels(args.labels, len(x), int(graph.output_node.shape[0]))
             if args.labels else None)
        total = len(x) if count is None else min(count, len(x))
        get = lambda idx: (x[idx], None if y is None else y[idx])  # noqa: E731
    else:
        ds = graph_dataset(graph, "test", args.data_dir,
                           missing="the artifact names no data set; pass --input "
                                   f"samples.npy ({describe_input(graph)})")
        total = min(DEFAULT_SAMPLES if count is None else count, len(ds))

        def get(idx):
            items = [ds[int(k)] for k in idx]
            return (np.stack([t.numpy() for t, _ in items]),
                    np.array([label for _, label in items], dtype=np.int64))
    return total, get


def _encode(graph: Graph, x: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    try:
        return encode_integer(graph, x)
    except ValueError as e:
        source = f"--input '{args.input}'" if args.input else "the data set's samples"
        raise CliError(f"{source} does not fit this network: {e}") from None


def _check_outputs(args: argparse.Namespace) -> Tuple[Optional[Path], Optional[Path]]:
    """(--out, --probe-out) checked before any work: creatable files, distinct, and none of
    them a file this command reads (the inputs, the artifact's own files)."""
    if args.probe_out and not args.probe:
        raise CliError(f"--probe-out {args.probe_out} without --probe records nothing; name "
                       "the layers with --probe LAYER, or drop --probe-out")
    if args.labels and not args.input:
        raise CliError("--labels goes with --input (the artifact's data set brings its own "
                       "labels); add --input images.npy, or drop --labels")
    if args.input and args.data_dir:
        raise CliError("--data-dir is for the artifact's data set and has no effect with "
                       "--input; drop one of them")
    out = Path(args.out) if args.out else None
    probe_out = Path(args.probe_out or DEFAULT_PROBE_OUT) if args.probe else None
    if same_file(out, probe_out):
        raise CliError(f"--out and --probe-out are the same file ({out}); give two paths")
    for flag, path in (("--out", out), ("--probe-out", probe_out)):
        for what, given in (("--input", args.input), ("--labels", args.labels)):
            if given and same_file(path, Path(given)):
                raise CliError(f"{flag} {path} is the {what} file, which would be overwritten; "
                               "give another path")
        if inside(path, Path(args.artifact)):
            raise CliError(f"{flag} {path} lies inside the artifact {args.artifact}, whose files "
                           "are checked against its manifest; write it elsewhere")
        check_output_file(path, flag)
    return out, probe_out


def run(args: argparse.Namespace) -> int:
    progress = Progress(show=not (args.quiet or args.json))
    if args.samples is not None and args.samples < 1:
        raise CliError(f"--samples must be >= 1, got {args.samples}")
    if args.chunk < 1:
        raise CliError(f"--chunk must be >= 1, got {args.chunk}")
    shard_i, shard_n = parse_shard(args.shard)
    cluster = parse_cluster_flag(args)
    out, probe_out = _check_outputs(args)
    graph = load_graph(args.artifact)
    check_target(args.target, LAVA_TARGETS)
    total, get = load_inputs(graph, args, args.samples)
    indices = np.asarray(shard_range(total, shard_i, shard_n))
    if not len(indices):
        raise CliError(f"--shard {args.shard} of {total} sample{'s' if total != 1 else ''} is "
                       f"empty (more shards than samples); use at most {total} shards")
    require_lava(args.target)  # imports Lava: after the cheap checks
    from deploy.lava import LoweringError, lower

    artifact = None
    if cluster is not None or (args.workers or 1) > 1:
        # the workers get these bytes; this process uses the same ones
        artifact = ArtifactFiles.read(args.artifact)
        graph = artifact.graph()
    try:
        network = lower(graph)
    except LoweringError as e:
        raise CliError(f"{args.artifact}: {e}") from None
    unknown = [p for p in args.probe if p not in network.probe_names()]
    if unknown:
        raise CliError(f"cannot probe {unknown}: not layers of this network; probe-able: "
                       f"{', '.join(network.probe_names())}")
    _note_idle_workers(args, len(indices))
    labels = {}

    def inputs(start: int, stop: int) -> np.ndarray:
        x, y = get(indices[start:stop])
        if y is not None:
            labels[start] = np.asarray(y)
        return _encode(graph, x, args)

    start = time.perf_counter()
    with progress.bar(len(indices), _bar_title(args, cluster), unit="sample") as bar:
        try:
            res = _execute(args, cluster, network, artifact, inputs, indices, bar.update)
        except WorkerFailed as e:
            if e.details:
                print(f"{e.shard.describe(e.kind)} reported:\n"
                      + textwrap.indent(e.details, "  "), file=sys.stderr)
            raise
    wall = time.perf_counter() - start
    predictions = res.predictions
    y_all = np.concatenate([labels[k] for k in sorted(labels)]) if labels else None
    class_names = graph.meta.get("class_names")
    results = {
        "artifact": str(args.artifact), "target": args.target, "shard": f"{shard_i}/{shard_n}",
        "workers": len(res.workers),
        **({"cluster": args.cluster} if cluster is not None else {}),
        "sample_indices": [int(indices[0]), int(indices[-1]) + 1] if len(indices) else [0, 0],
        "samples": int(len(predictions)),
        "accuracy": None if y_all is None or not len(y_all) else float((predictions == y_all).mean()),
        "predictions": predictions.tolist(),
        "predicted_classes": [class_names[p] for p in predictions] if class_names else None,
        "throughput": {"samples_per_s": len(predictions) / res.run_s if res.run_s else None,
                       "ms_per_step": res.ms_per_step if res.num_steps else None,
                       "wall_s": wall, "lava_steps": res.num_steps,
                       **({"per_worker": [w.as_dict() for w in res.workers]}
                          if len(res.workers) > 1 else {})},
    }
    # results are never lost to a failure in writing them: what cannot go where it was asked
    # to goes to $TMPDIR, and the command says where (after printing the results) and exits 2
    failed = []
    if probe_out is not None:
        # [T, B, C, H, W] per layer, samples in shard order; written whole or not at all
        import io
        buf = io.BytesIO()
        np.savez_compressed(buf, **{p: res.outputs[p].astype(np.uint8) for p in args.probe},
                            sample_indices=indices)
        results["probe_file"] = str(probe_out)
        failed.append(write_or_fallback(probe_out, buf.getvalue(), "the --probe-out spikes"))
    if out is not None:
        failed.append(write_or_fallback(out, json_bytes(results, sort_keys=False),
                                        "the --out results"))
    failed = [msg for msg in failed if msg]
    if args.json:
        print(json.dumps(results))
    else:
        acc = results["accuracy"]
        tp = results["throughput"]
        print(f"samples    {results['samples']} (indices {results['sample_indices'][0]}.."
              f"{results['sample_indices'][1] - 1}, shard {results['shard']})")
        print(f"accuracy   {'not measured (no labels)' if acc is None else f'{100 * acc:.2f} %'}")
        if tp["samples_per_s"]:
            print(f"throughput {tp['samples_per_s']:.1f} samples/s, {tp['ms_per_step']:.1f} ms/step "
                  f"({args.target}{_parallel_text(args, cluster, len(res.workers))})")
        if probe_out is not None:
            print(f"probes     {', '.join(args.probe)} -> {probe_out}")
    if failed:
        raise CliError("; ".join(failed))
    return 0


def _execute(args, cluster: Optional[ClusterSpec], network, artifact: Optional[ArtifactFiles],
             inputs, indices: np.ndarray, on_samples) -> ShardedResult:
    """This process (one worker), local worker processes, or Ray tasks: one merged result
    in sample order either way."""
    from deploy.parallel import run_in_process, run_local_workers, run_on_ray

    common = dict(chunk=args.chunk, target=args.target, probes=args.probe,
                  sample_ids=indices, on_samples=on_samples)
    if cluster is not None:
        try:
            return run_on_ray(artifact, inputs, len(indices), cluster=cluster,
                              tasks=args.workers, **common)
        except ClusterUnavailable as e:
            raise CliError(f"--cluster {args.cluster}: {e}") from None
    if (args.workers or 1) > 1:
        return run_local_workers(artifact, inputs, len(indices), workers=args.workers,
                                 **common)
    return run_in_process(network, inputs, len(indices), **common)


def _note_idle_workers(args, samples: int) -> None:
    if args.workers is not None and args.workers > samples and not args.quiet:
        kind = "Ray tasks" if args.cluster else "worker processes"
        print(f"spikeform-run: note: --workers {args.workers} is more than the {samples} "
              f"sample{'s' if samples != 1 else ''} to run: using {samples} {kind}",
              file=sys.stderr)


def _bar_title(args, cluster: Optional[ClusterSpec]) -> str:
    if cluster is not None:
        return f"Lava ({args.target}, Ray)"
    if (args.workers or 1) > 1:
        return f"Lava ({args.target}, {args.workers} workers)"
    return f"Lava ({args.target})"


def _parallel_text(args, cluster: Optional[ClusterSpec], workers: int) -> str:
    if cluster is not None:
        return f", {workers} Ray task{'s' if workers != 1 else ''}"
    return f", {workers} workers" if workers > 1 else ""


def _interrupted_text(args) -> str:
    """What the one line after Ctrl-C/SIGTERM/SIGHUP says was stopped."""
    if args.cluster:
        return "the Ray tasks were cancelled" + (
            " and the local Ray instance shut down" if args.cluster == "ray" else "")
    if (args.workers or 1) > 1:
        return "the workers and their Lava runtimes were stopped"
    return "the Lava runtime was stopped"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: e.g. an artifact file this user cannot read
    return run_with_exit_codes("spikeform-run", lambda: run(args), (CliError, IRError, OSError),
                               failures=[(WorkerFailed, "error", EXIT_WORKER_FAILED)],
                               interrupted=_interrupted_text(args))


if __name__ == "__main__":
    sys.exit(main())
