"""`spikeform-train`: train a Spikformer from the model zoo on a data set and save a checkpoint.

    spikeform-train --config digits-tiny --dataset digits --epochs 30 --out model.pth
    spikeform-train --list-configs
    torchrun --nproc_per_node 4 -m spikformer_neuro.training.cli --config ... (DDP)

The best checkpoint (highest test accuracy) goes to --out; the latest epoch, with optimizer,
scheduler and RNG state, to <out>.last.pth, which --resume continues from.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..config import ConfigError, SpikformerConfig
from ..data import DatasetError, dataset_names, load_dataset
from ..loihi_grid import detect_input_levels
from ..model import build_model, count_parameters
from ..qat import disable_qat, enable_qat, snap_to_grid
from ..zoo import config_names, get_config
from .distributed import DistContext, init_distributed, shutdown_distributed
from .engine import evaluate, train_one_epoch
from .schedule import warmup_cosine


class TrainError(Exception):
    """Bad arguments or inputs: reported as one paragraph, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--list-configs", action="store_true", help="print the model zoo and exit")
    p.add_argument("--config", help="model zoo configuration name (see --list-configs)")
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--time-steps", type=int, help="override the configuration's time steps")
    p.add_argument("--train-subset", type=int, help="use only the first N training samples")
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test samples only")
    p.add_argument("--log", help="per-epoch JSON-lines log (default: <out>.log.jsonl)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def list_configs() -> str:
    rows = [("name", "params", "input", "T", "classes", "tokens", "description")]
    for name in config_names():
        cfg = get_config(name)
        params = count_parameters(build_model(cfg))
        rows.append((name, f"{params / 1e6:.3f}M", "x".join(map(str, cfg.input_shape())),
                     str(cfg.time_steps), str(cfg.num_classes), str(cfg.num_tokens),
                     cfg.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return torch.device(name)


def _check_matches(cfg: SpikformerConfig, info) -> None:
    if tuple(info.input_shape) != cfg.input_shape() or info.num_classes != cfg.num_classes:
        raise TrainError(
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


def run(args: argparse.Namespace) -> int:
    if not args.config or not args.dataset:
        raise TrainError("--config and --dataset are required (or use --list-configs)")
    if args.epochs < 1:
        raise TrainError(f"--epochs must be >= 1, got {args.epochs}")
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
            raise TrainError(f"{args.resume} has no training state; resume from the "
                             f"'{_last_path(out).name}' file written next to --out")
        cfg = resume.config
    elif args.init:
        init = load_checkpoint(args.init)
        cfg = init.config
    else:
        try:
            cfg = get_config(args.config)
        except KeyError as e:
            raise TrainError(str(e.args[0])) from None
        if args.time_steps:
            cfg = cfg.replace(time_steps=args.time_steps)
    torch.manual_seed(args.seed + ctx.rank)
    train_ds, info = load_dataset(args.dataset, "train", args.data_dir, augment=not args.no_augment,
                                  img_size=cfg.img_size, time_steps=cfg.time_steps)
    test_ds, _ = load_dataset(args.dataset, "test", args.data_dir, img_size=cfg.img_size,
                              time_steps=cfg.time_steps)
    _check_matches(cfg, info)
    train_ds, test_ds = _subset(train_ds, args.train_subset), _subset(test_ds, args.test_subset)

    model = build_model(cfg).to(device)
    if resume is not None:
        model.load_state_dict(resume.state_dict)
    elif args.init:
        model.load_state_dict(init.state_dict)
    qat_start = 1 if args.qat else args.qat_from_epoch
    if qat_start is not None and not 1 <= qat_start <= args.epochs:
        raise TrainError(f"--qat-from-epoch must be in 1..{args.epochs}, got {qat_start}")
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
                              pin_memory=device.type == "cuda")
    test_loader = DataLoader(test_ds, batch_size=max(args.batch_size, 256),
                             num_workers=args.workers)

    amp = device.type == "cuda" and not args.no_amp
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = warmup_cosine(optimizer, int(args.warmup_epochs * steps_per_epoch),
                              args.epochs * steps_per_epoch, args.min_lr / args.lr)
    scaler = torch.cuda.amp.GradScaler() if amp else None

    start_epoch, best = 0, -1.0
    if resume is not None:
        state = resume.training_state
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        loader_gen.set_state(state["loader_rng"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best_accuracy"])

    log_path = Path(args.log) if args.log else out.with_name(out.stem + ".log.jsonl")
    train_args = {k: v for k, v in vars(args).items() if v is not None}
    show = ctx.is_main and not args.quiet
    if ctx.is_main:
        print(f"spikeform-train: {cfg.name} ({count_parameters(model) / 1e6:.3f}M parameters) on "
              f"{info.name} [{len(train_ds)} train / {len(test_ds)} test] on {device}"
              f"{f' x{ctx.world_size} processes' if ctx.enabled else ''}, AMP {'on' if amp else 'off'}",
              flush=True)
    for epoch in range(start_epoch, args.epochs):
        qat = qat_start is not None and epoch + 1 >= qat_start
        if qat and model.fake_quant_head is None:
            enable_qat(model, qat_levels)
            if epoch + 1 == qat_start:
                best = -1.0  # the shipped checkpoint must lie on the grid
        if sampler is not None:
            sampler.set_epoch(epoch)
        train = train_one_epoch(train_model, train_loader, optimizer, scheduler, scaler, device,
                                label_smoothing=args.label_smoothing, amp=amp, ctx=ctx,
                                desc=f"epoch {epoch + 1}/{args.epochs}", show_progress=show)
        if ctx.is_main:
            test = evaluate(model, test_loader, device, amp=amp, show_progress=show)
            record = {"epoch": epoch + 1, "train_loss": train["loss"],
                      "train_accuracy": train["accuracy"], "test_loss": test["loss"],
                      "test_accuracy": test["accuracy"], "lr": scheduler.get_last_lr()[0],
                      "train_seconds": train["seconds"],
                      "train_samples_per_s": train["samples_per_s"], "time": time.time()}
            improved = test["accuracy"] > best
            best = max(best, test["accuracy"])
            metrics = {**{k: v for k, v in record.items() if k != "time"},
                       "best_test_accuracy": best}
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None,
                     "torch_rng": torch.get_rng_state(), "loader_rng": loader_gen.get_state(),
                     "epoch": epoch, "best_accuracy": best}
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
                  f"test loss {test['loss']:.4f} acc {test['accuracy']:.4f}"
                  f"{' (best, saved)' if improved else ''}", flush=True)
        ctx.barrier()
    if ctx.is_main:
        print(f"best test accuracy {best:.4f}; checkpoint {out}", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_configs:
        print(list_configs())
        return 0
    try:
        return run(args)
    except (TrainError, DatasetError, CheckpointError, ConfigError) as e:
        print(f"spikeform-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikeform-train: interrupted; the last completed epoch is in "
              f"{_last_path(Path(args.out))}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
