"""One training epoch and one evaluation pass, on CPU or CUDA (with AMP on CUDA)."""
from __future__ import annotations

import time
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .distributed import DistContext, all_reduce_sum


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler,
                    scaler: Optional[torch.cuda.amp.GradScaler], device: torch.device, *,
                    label_smoothing: float, amp: bool, ctx: DistContext, desc: str,
                    show_progress: bool) -> Dict[str, float]:
    model.train()
    # Sums kept on the device and reduced once: no host sync per batch.
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not show_progress, unit="batch")
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        n = y.shape[0]
        totals += torch.stack([loss.detach().double() * n,
                               (logits.argmax(1) == y).sum().double(),
                               torch.tensor(float(n), dtype=torch.float64, device=device)])
        if show_progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    seconds = time.perf_counter() - start
    loss_sum, correct, n = all_reduce_sum(totals, ctx).tolist()
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "samples": int(n),
            "seconds": seconds, "samples_per_s": n / seconds if seconds > 0 else 0.0}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, *, amp: bool,
             desc: str = "eval", show_progress: bool = False) -> Dict[str, float]:
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not show_progress, unit="batch"):
        x, y = x.to(device), y.to(device)
        with _autocast(device, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        n += y.shape[0]
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "samples": n}
