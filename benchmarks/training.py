"""Training throughput on random inputs: AdamW steps (forward, backward, update) at one batch
size, median of the timed steps after a warm-up step; samples/s."""
from __future__ import annotations

import statistics
import time


def measure(config: str, batch: int = 64, repeats: int = 5) -> dict:
    import torch

    from spikformer_neuro.model import build_model, count_parameters
    from spikformer_neuro.zoo import get_config

    torch.manual_seed(0)
    cfg = get_config(config)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, *cfg.input_shape())
    y = torch.randint(0, cfg.num_classes, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"config": config, "params_m": count_parameters(model) / 1e6, "batch": batch,
            "samples_per_s": batch / statistics.median(times), "repeats": repeats,
            "torch_threads": torch.get_num_threads()}


def render(rows: list[dict]) -> list[str]:
    out = [f"{'config':<16}{'params':>9}{'batch':>7}{'train samples/s':>17}{'peak RSS':>10}"]
    for r in rows:
        out.append(f"{r['config']:<16}{r['params_m']:>8.3f}M{r['batch']:>7}"
                   f"{r['samples_per_s']:>17.1f}{r['peak_rss_mb']:>8.0f}MB")
    return out
