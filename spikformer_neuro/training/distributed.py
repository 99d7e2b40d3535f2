"""Multi-process training with PyTorch's own engine (``torchrun --nproc_per_node N``).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them training is single-process.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun set up (NCCL on CUDA, Gloo on CPU), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def same_on_every_rank(value: int, ctx: DistContext, device: torch.device) -> bool:
    """Whether every process holds the same ``value`` (an int below 2**62), e.g. a digest of
    the data split each one derived on its own; True without a process group."""
    if not ctx.enabled:
        return True
    both = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)  # max(v) and -min(v) in one collective
    return int(both[0]) == -int(both[1])


def loader_worker_ignores_stop_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker ignores SIGINT, SIGTERM and SIGHUP sent to
    the whole process group (a terminal, ``timeout``, Slurm). The main process handles them
    (``spikeform_cli.exit_codes``) and shuts its loaders' workers down with their own protocol;
    without this, torch's worker handler lets a worker die of a group SIGTERM and the main
    process reports the dead worker with a traceback while it stops. A worker still exits when
    the main process dies (torch's workers watch their parent)."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
