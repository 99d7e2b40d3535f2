"""Evaluate a checkpoint on its data set's test split (default: the shipped digits model).

    python -m spikformer_neuro.evaluate [--checkpoint model.pth] [--data-dir DIR] [--samples N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import DataLoader, Subset

from .checkpoint import CheckpointError, load_checkpoint
from .data import DatasetError, load_dataset
from .training.engine import evaluate

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
SHIPPED = {"digits": CHECKPOINT_DIR / "digits-tiny.pth",
           "fashion-mnist": CHECKPOINT_DIR / "fmnist-small.pth"}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spikformer_neuro.evaluate", description=__doc__)
    p.add_argument("--checkpoint", default=str(SHIPPED["digits"]))
    p.add_argument("--data-dir")
    p.add_argument("--samples", type=int, help="evaluate the first N test samples only")
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        cfg = ckpt.config
        test_ds, info = load_dataset(ckpt.dataset, "test", args.data_dir, img_size=cfg.img_size,
                                     time_steps=cfg.time_steps)
    except (CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.samples:
        test_ds = Subset(test_ds, range(min(args.samples, len(test_ds))))
    model = ckpt.build_model()
    start = time.perf_counter()
    result = evaluate(model, DataLoader(test_ds, batch_size=args.batch_size), torch.device("cpu"),
                      amp=False)
    seconds = time.perf_counter() - start
    print(f"checkpoint   {ckpt.path}")
    print(f"model        {cfg.name}: {cfg.depth} block(s), D={cfg.embed_dim}, "
          f"{cfg.num_heads} heads, T={cfg.time_steps}, {cfg.num_tokens} tokens")
    print(f"data set     {info.name} test split, {result['samples']} samples ({info.source})")
    print(f"accuracy     {result['accuracy']:.4f} (recorded at training: "
          f"{ckpt.metrics.get('test_accuracy', float('nan')):.4f})")
    print(f"throughput   {result['samples'] / seconds:.0f} samples/s (float PyTorch, CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
