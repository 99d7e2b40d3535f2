"""`spikeform-train`: train a Spikformer from the model zoo on a data set and save a checkpoint.

    spikeform-train --config digits-tiny --dataset digits --epochs 30 --out model.pth
    spikeform-train --list-configs
    torchrun --nproc_per_node 4 -m spikeform_cli.train --config ... (DDP)

The best checkpoint goes to --out: the epoch with the highest accuracy on a validation split
held out of the training set (--val-fraction), so that the test accuracy it reports was not
used to choose it. The latest epoch, with optimizer, scheduler and RNG state, goes to
<out>.last.pth, which --resume continues from (on the same validation split).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from spikformer_neuro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikformer_neuro.config import ConfigError, SpikformerConfig
from spikformer_neuro.data import DatasetError, dataset_names, load_dataset
from spikformer_neuro.data.split import (
    dataset_labels,
    indices_digest,
    stratified_split,
    without_augmentation,
)
from loihi_numerics.grid import detect_input_levels
from spikformer_neuro.model import build_model, count_parameters
from spikformer_neuro.qat import disable_qat, enable_qat, snap_to_grid
from spikformer_neuro.zoo import config_names, get_config
from spikformer_neuro.training.distributed import (
    DistContext,
    init_distributed,
    loader_worker_ignores_stop_signals,
    same_on_every_rank,
    shutdown_distributed,
)
from spikformer_neuro.training.engine import evaluate, train_one_epoch
from spikformer_neuro.training.schedule import warmup_cosine

from spikeform_cli.common import CliError, check_output_file
from spikeform_cli.exit_codes import EXIT_OK, run_with_exit_codes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--list-configs", action="store_true", help="print the model zoo and exit")
    p.add_argument("--config", help="model zoo configuration name (see --list-configs); with "
                                    "--init/--resume optional, and it must be the checkpoint's")
    p.add_argument("--dataset", help=f"data set: {', '.join(dataset_names())}")
    p.add_argument("--data-dir", help="directory holding the data set files")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="model.pth", help="best checkpoint path")
    p.add_argument("--resume", help="continue from a <out>.last.pth checkpoint")
    p.add_argument("--init", help="start from this checkpoint's configuration and weights "
                                  "(fine-tuning)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning on the Loihi integer grid (use with "
                        "--init); the saved checkpoint carries the grid for the compiler")
    p.add_argument("--qat-from-epoch", type=int, metavar="K",
                   help="train in float, then switch to --qat from epoch K (1-based) on; only "
                        "QAT epochs compete for the best checkpoint")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--no-augment", action="store_true", help="disable training augmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="hold out this fraction of the training samples (stratified, drawn with "
                        "--seed) to choose the best checkpoint; 0: no validation split, the "
                        "best checkpoint is chosen by test accuracy (optimistic)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--time-steps", type=int, help="override the configuration's time steps "
                                                  "(not with --init/--resume: the checkpoint's "
                                                  "own)")
    p.add_argument("--train-subset", type=int, help="use only the first N training samples")
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test samples only")
    p.add_argument("--log", help="per-epoch JSON-lines log (default: <out>.log.jsonl)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def list_configs() -> str:
    rows = [("name", "family", "params", "input", "T", "classes", "tokens", "description")]
    for name in config_names():
        cfg = get_config(name)
        params = count_parameters(build_model(cfg))
        rows.append((name, cfg.family, f"{params / 1e6:.3f}M",
                     "x".join(map(str, cfg.input_shape())),
                     str(cfg.time_steps), str(cfg.num_classes), str(cfg.num_tokens),
                     cfg.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return torch.device(name)


def _check_matches(cfg: SpikformerConfig, info) -> None:
    if tuple(info.input_shape) != cfg.input_shape() or info.num_classes != cfg.num_classes:
        raise CliError(
            f"configuration '{cfg.name}' expects inputs {list(cfg.input_shape())} and "
            f"{cfg.num_classes} classes, but data set '{info.name}' gives "
            f"{list(info.input_shape)} and {info.num_classes} classes; pick a configuration "
            "made for this data set (spikeform-train --list-configs)")


def _subset(ds, n: Optional[int]):
    return ds if n is None else Subset(ds, range(min(n, len(ds))))


def _input_levels(model, dataset) -> Optional[int]:
    """Integer levels per unit that encode this data set's images exactly (None: 8-bit)."""
    if model.cfg.event_input:
        return None
    x = torch.stack([dataset[i][0] for i in range(min(len(dataset), 512))])
    return detect_input_levels(((x - model.input_mean) / model.input_std).numpy())


def _last_path(out: Path) -> Path:
    return out.with_name(out.stem + ".last.pth")


def _validation_split(args: argparse.Namespace, train_ds, ctx: DistContext,
                      device: torch.device):
    """(training part, validation part or None, record of the split or None).

    The record (fraction, seed, sizes, digest of the held-out positions) goes into the
    checkpoint's train_args, so that --resume can prove it continues on the same split."""
    fraction = args.val_fraction
    if fraction == 0.0:
        return train_ds, None, None
    train_idx, val_idx = stratified_split(dataset_labels(train_ds), fraction, args.seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise CliError(f"--val-fraction {fraction} of {len(train_ds)} training samples leaves "
                       f"{len(train_idx)} to train on and {len(val_idx)} to validate on; "
                       "use more training samples (--train-subset), another fraction, or "
                       "--val-fraction 0")
    digest = indices_digest(val_idx)
    record = {"val_fraction": float(fraction), "seed": int(args.seed),
              "train_size": len(train_idx), "val_size": len(val_idx),
              "val_indices_sha256": digest}
    # Each process draws the split itself; a process that read other data files (a node
    # with a different copy of the data set) would silently validate on other samples.
    if not same_on_every_rank(int(digest[:15], 16), ctx, device):
        raise CliError("the training processes drew different validation splits from the "
                       "same --val-fraction and --seed, so their training sets differ; give "
                       "every process identical data set files (--data-dir)")
    return (Subset(train_ds, train_idx.tolist()),
            Subset(without_augmentation(train_ds), val_idx.tolist()), record)


def _describe_split(record: Optional[dict]) -> str:
    if record is None:
        return "no validation split (--val-fraction 0, best checkpoint chosen on the test split)"
    return (f"--val-fraction {record['val_fraction']} --seed {record['seed']} "
            f"({record['train_size']} train / {record['val_size']} validation samples, "
            f"validation indices sha256 {record['val_indices_sha256'][:16]})")


def _check_resume_split(path: str, saved: Optional[dict], current: Optional[dict]) -> None:
    """Refuse to resume on another split: samples chosen on before would be trained on (or
    the reverse), and the best accuracy carried over would compare different sample sets."""
    if saved == current:
        return
    fix = ("--val-fraction 0" if saved is None else
           f"--val-fraction {saved['val_fraction']} --seed {saved['seed']} and the same "
           "--train-subset and data set files")
    raise CliError(f"{path} was trained with {_describe_split(saved)}, but this run would use "
                   f"{_describe_split(current)}; a resumed run must keep its validation "
                   f"split. Resume with {fix}, or start a new run without --resume")


def _warn(message: str) -> None:
    print(f"spikeform-train: warning: {message}", flush=True)


def _warn_if_init_split_differs(path: str, init, dataset: str, split: dict) -> None:
    """Fine-tuning a model that was trained on this run's validation samples makes validation
    accuracy, and so the choice of the best checkpoint, optimistic."""
    saved = init.train_args.get("validation_split")
    if init.dataset == dataset and saved != split:
        _warn(f"--init {path} was trained with {_describe_split(saved)}, not with this run's "
              f"{_describe_split(split)}: it may have trained on this run's validation samples, "
              "so validation accuracy is optimistic; train it on the same split to avoid that")


def _config_from_flags(args: argparse.Namespace) -> SpikformerConfig:
    """The zoo configuration --config names, with --time-steps applied."""
    try:
        cfg = get_config(args.config)
    except KeyError as e:
        raise CliError(str(e.args[0])) from None
    return cfg.replace(time_steps=args.time_steps) if args.time_steps else cfg


def _config_of_checkpoint(args: argparse.Namespace, cfg: SpikformerConfig, flag: str,
                          path: str) -> SpikformerConfig:
    """The configuration of the --init/--resume checkpoint; --config and --time-steps may
    repeat it but never contradict it (they would be silently ignored: the weights fix the
    architecture)."""
    if args.config:
        wanted = _config_from_flags(args)
        if wanted != cfg:
            diffs = [f"{f.name} {getattr(wanted, f.name)!r} vs {getattr(cfg, f.name)!r}"
                     for f in dataclasses.fields(cfg)
                     if f.compare and getattr(wanted, f.name) != getattr(cfg, f.name)]
            given = f"--config {args.config}" + (f" --time-steps {args.time_steps}"
                                                 if args.time_steps else "")
            drop = "--config and --time-steps" if args.time_steps else "--config"
            raise CliError(f"{given} contradicts {flag} {path}, whose model is '{cfg.name}' "
                           f"(--config vs the checkpoint: {'; '.join(diffs[:6])}): the "
                           f"checkpoint's weights fix the configuration. Drop {drop} to "
                           f"continue from {path} as it is, or train '{args.config}' from "
                           f"scratch without {flag}")
    elif args.time_steps and args.time_steps != cfg.time_steps:
        raise CliError(f"--time-steps {args.time_steps} contradicts {flag} {path}, whose model "
                       f"runs {cfg.time_steps} time steps: the checkpoint's configuration is "
                       f"used as it is. Drop --time-steps, or train with --config "
                       f"{cfg.name} --time-steps {args.time_steps} from scratch")
    return cfg


def _check_train_outputs(args: argparse.Namespace) -> None:
    """--out, <out>.last.pth and the log: creatable files, checked before any training (a
    checkpoint that cannot be written would otherwise lose the first epoch's work)."""
    out = Path(args.out)
    check_output_file(out, "--out")
    check_output_file(_last_path(out), "--out (its <out>.last.pth)")
    log = Path(args.log) if args.log else out.with_name(out.stem + ".log.jsonl")
    check_output_file(log, "--log" if args.log else "--out (its <out>.log.jsonl)")


def run(args: argparse.Namespace) -> int:
    if not args.dataset or not (args.config or args.init or args.resume):
        raise CliError("--config (or --init/--resume) and --dataset are required (or use "
                       "--list-configs)")
    if args.init and args.resume:
        raise CliError("--init and --resume exclude each other: --resume continues a run "
                       "from its <out>.last.pth (weights, optimizer and schedule), --init "
                       "starts a new run from a checkpoint's weights; pass one")
    if args.qat and args.qat_from_epoch is not None:
        raise CliError(f"--qat trains on the Loihi grid from epoch 1, --qat-from-epoch "
                       f"{args.qat_from_epoch} from a later one; pass one of them")
    if args.time_steps is not None and args.time_steps < 1:
        raise CliError(f"--time-steps must be >= 1, got {args.time_steps}")
    if args.epochs < 1:
        raise CliError(f"--epochs must be >= 1, got {args.epochs}")
    if not 0.0 <= args.val_fraction < 1.0:  # also refuses nan
        raise CliError(f"--val-fraction must be in [0, 1), got {args.val_fraction}; 0.1 holds "
                         "out 10 % of the training samples, 0 selects on the test split")
    _check_train_outputs(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _pick_device(args.device)
    ctx = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    try:
        return _train(args, device, ctx)
    finally:
        shutdown_distributed(ctx)


def _train(args: argparse.Namespace, device: torch.device, ctx: DistContext) -> int:
    out = Path(args.out)
    resume = load_checkpoint(args.resume) if args.resume else None
    if resume is not None:
        if resume.training_state is None:
            raise CliError(f"{args.resume} has no training state; resume from the "
                           f"'{_last_path(out).name}' file written next to --out")
        cfg = _config_of_checkpoint(args, resume.config, "--resume", args.resume)
    elif args.init:
        init = load_checkpoint(args.init)
        cfg = _config_of_checkpoint(args, init.config, "--init", args.init)
    else:
        cfg = _config_from_flags(args)
    torch.manual_seed(args.seed + ctx.rank)
    counts = cfg.event_max_count is not None   # event data as the network takes it
    train_ds, info = load_dataset(args.dataset, "train", args.data_dir, augment=not args.no_augment,
                                  img_size=cfg.img_size, time_steps=cfg.time_steps,
                                  event_counts=counts)
    test_ds, _ = load_dataset(args.dataset, "test", args.data_dir, img_size=cfg.img_size,
                              time_steps=cfg.time_steps, event_counts=counts)
    _check_matches(cfg, info)
    train_ds, test_ds = _subset(train_ds, args.train_subset), _subset(test_ds, args.test_subset)
    train_ds, val_ds, split = _validation_split(args, train_ds, ctx, device)
    if resume is not None:
        _check_resume_split(args.resume, resume.train_args.get("validation_split"), split)

    model = build_model(cfg).to(device)
    if resume is not None:
        model.load_state_dict(resume.state_dict)
    elif args.init:
        model.load_state_dict(init.state_dict)
    qat_start = 1 if args.qat else args.qat_from_epoch
    if qat_start is not None and not 1 <= qat_start <= args.epochs:
        raise CliError(f"--qat-from-epoch must be in 1..{args.epochs}, got {qat_start}")
    qat_levels = _input_levels(model, train_ds) if qat_start is not None else None
    train_model = model
    if ctx.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(train_ds, seed=args.seed) if ctx.enabled else None
    loader_gen = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=sampler is None,
                              sampler=sampler, drop_last=len(train_ds) > args.batch_size,
                              num_workers=args.workers, generator=loader_gen,
                              pin_memory=device.type == "cuda",
                              worker_init_fn=loader_worker_ignores_stop_signals)
    # the loaders' workers leave SIGINT/SIGTERM/SIGHUP to this process (spikeform_cli.exit_codes)
    test_loader = DataLoader(test_ds, batch_size=max(args.batch_size, 256),
                             num_workers=args.workers,
                             worker_init_fn=loader_worker_ignores_stop_signals)
    val_loader = None if val_ds is None else DataLoader(
        val_ds, batch_size=max(args.batch_size, 256), num_workers=args.workers,
        worker_init_fn=loader_worker_ignores_stop_signals)
    chosen_by = "test_accuracy" if val_ds is None else "val_accuracy"

    amp = device.type == "cuda" and not args.no_amp
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = warmup_cosine(optimizer, int(args.warmup_epochs * steps_per_epoch),
                              args.epochs * steps_per_epoch, args.min_lr / args.lr)
    scaler = torch.cuda.amp.GradScaler() if amp else None

    start_epoch, best, best_epoch, test_at_best = 0, -1.0, 0, None
    if resume is not None:
        state = resume.training_state
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        loader_gen.set_state(state["loader_rng"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best_accuracy"])
        best_epoch, test_at_best = int(state.get("best_epoch", 0)), state.get("test_at_best")

    log_path = Path(args.log) if args.log else out.with_name(out.stem + ".log.jsonl")
    train_args = {k: v for k, v in vars(args).items() if v is not None}
    if split is not None:
        train_args["validation_split"] = split
    show = ctx.is_main and not args.quiet
    if ctx.is_main:
        sizes = (f"{len(train_ds)} train / "
                 f"{'' if val_ds is None else f'{len(val_ds)} val / '}{len(test_ds)} test")
        print(f"spikeform-train: {cfg.name} ({count_parameters(model) / 1e6:.3f}M parameters) on "
              f"{info.name} [{sizes}] on {device}"
              f"{f' x{ctx.world_size} processes' if ctx.enabled else ''}, AMP {'on' if amp else 'off'}",
              flush=True)
        if split is None:
            _warn("--val-fraction 0: the best checkpoint is chosen by TEST accuracy, so the test "
                  "accuracy it reports is optimistic (selected on the test split); hold out a "
                  "validation split with --val-fraction 0.1 for an unbiased estimate")
        elif args.init and resume is None:
            _warn_if_init_split_differs(args.init, init, info.name, split)
    for epoch in range(start_epoch, args.epochs):
        qat = qat_start is not None and epoch + 1 >= qat_start
        if qat and model.fake_quant_head is None:
            enable_qat(model, qat_levels)
            if epoch + 1 == qat_start:
                # The shipped checkpoint must lie on the grid: only QAT epochs compete.
                best, best_epoch, test_at_best = -1.0, 0, None
        if sampler is not None:
            sampler.set_epoch(epoch)
        train = train_one_epoch(train_model, train_loader, optimizer, scheduler, scaler, device,
                                label_smoothing=args.label_smoothing, amp=amp, ctx=ctx,
                                desc=f"epoch {epoch + 1}/{args.epochs}", show_progress=show)
        if ctx.is_main:
            val = None if val_loader is None else evaluate(model, val_loader, device, amp=amp,
                                                            desc="val", show_progress=show)
            # Evaluated and logged every epoch, but never used to choose the checkpoint when a
            # validation split exists.
            test = evaluate(model, test_loader, device, amp=amp, show_progress=show)
            record = {"epoch": epoch + 1, "train_loss": train["loss"],
                      "train_accuracy": train["accuracy"],
                      **({} if val is None else {"val_loss": val["loss"],
                                                 "val_accuracy": val["accuracy"]}),
                      "test_loss": test["loss"],
                      "test_accuracy": test["accuracy"], "lr": scheduler.get_last_lr()[0],
                      "train_seconds": train["seconds"],
                      "train_samples_per_s": train["samples_per_s"], "time": time.time()}
            improved = record[chosen_by] > best
            if improved:
                best, best_epoch, test_at_best = record[chosen_by], epoch + 1, test["accuracy"]
            metrics = {**{k: v for k, v in record.items() if k != "time"},
                       f"best_{chosen_by}": best, "selected_by": chosen_by}
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None,
                     "torch_rng": torch.get_rng_state(), "loader_rng": loader_gen.get_state(),
                     "epoch": epoch, "best_accuracy": best, "best_epoch": best_epoch,
                     "test_at_best": test_at_best}
            common = dict(model=model, dataset=info.name, class_names=list(info.class_names),
                          train_args=train_args)
            if improved:
                best_model, hints = model, None
                if qat:  # a plain model whose folded weights lie on the Loihi grid
                    best_model = copy.deepcopy(model)
                    hints = snap_to_grid(best_model)
                    disable_qat(best_model)
                save_checkpoint(out, metrics={**metrics, "test_accuracy": test["accuracy"]},
                                **{**common, "model": best_model}, quantization=hints)
            save_checkpoint(_last_path(out), metrics=metrics, training_state=state, **common)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"epoch {epoch + 1}/{args.epochs}: train loss {train['loss']:.4f} "
                  f"acc {train['accuracy']:.4f} ({train['samples_per_s']:.0f} samples/s) | "
                  + ("" if val is None else
                     f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f} | ")
                  + f"test loss {test['loss']:.4f} acc {test['accuracy']:.4f}"
                  f"{' (best, saved)' if improved else ''}", flush=True)
        ctx.barrier()
    if ctx.is_main:
        if val_ds is None:
            print(f"best test accuracy {best:.4f}; checkpoint {out} (chosen on the test split: "
                  "its test accuracy is optimistic)", flush=True)
        else:
            at_best = "" if test_at_best is None else f", test accuracy {test_at_best:.4f}"
            print(f"best validation accuracy {best:.4f} (epoch {best_epoch}{at_best}); "
                  f"checkpoint {out}", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_configs:
        print(list_configs())
        return EXIT_OK
    return run_with_exit_codes(
        "spikeform-train", lambda: run(args),
        (CliError, DatasetError, CheckpointError, ConfigError),
        interrupted=f"the last completed epoch is in {_last_path(Path(args.out))}")


if __name__ == "__main__":
    sys.exit(main())
