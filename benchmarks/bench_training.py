"""Training and inference throughput of the shipped configurations on this machine's CPU.

    .venv/bin/python benchmarks/bench_training.py [--configs digits-tiny,fmnist-small] [--threads 2]

Training: AdamW steps (forward, backward, update) on random inputs at --batch-size; inference:
float model forward in eval mode. Prints samples/s (median of --repeats timed steps).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from spikformer_neuro.model import build_model, count_parameters
from spikformer_neuro.zoo import get_config


def _median_rate(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="digits-tiny,fmnist-small")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {platform.machine()}, torch threads {args.threads}, batch {args.batch_size}")
    print(f"{'config':<16}{'params':>9}{'train samples/s':>18}{'inference samples/s':>22}")
    for name in args.configs.split(","):
        cfg = get_config(name)
        model = build_model(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.rand(args.batch_size, *cfg.input_shape())
        y = torch.randint(0, cfg.num_classes, (args.batch_size,))

        def train_step():
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        @torch.no_grad()
        def infer():
            model.eval()
            model(x)

        train = _median_rate(train_step, args.batch_size, args.repeats)
        inference = _median_rate(infer, args.batch_size, args.repeats)
        print(f"{name:<16}{count_parameters(model) / 1e6:>8.3f}M{train:>18.0f}{inference:>22.0f}")


if __name__ == "__main__":
    main()
