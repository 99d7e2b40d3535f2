"""The networks and inputs the benchmarks run: the shipped checkpoints on their test samples,
or zoo configurations with random weights that fire (``spikformer_neuro.testing``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS_CKPT = "spikformer_neuro/checkpoints/digits-tiny.pth"


@dataclass
class Workload:
    label: str
    graph: object                    # quantized compiler.ir.Graph
    x: object                        # float input batch, as the model takes it
    labels: np.ndarray | None     # ground truth (checkpoints only)
    model: object                    # the float PyTorch model, eval mode


def compile_random(model):
    """Random-weight model -> quantized graph with the default options (no calibration)."""
    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize

    return quantize(float_passes(model_to_ir(model)))


def load_workload(spec: str, batch: int) -> Workload:
    """``spec``: a ``.pth`` checkpoint (its first ``batch`` test samples, repeated when the
    split is smaller) or a zoo name (random weights that fire densely, random images)."""
    import torch

    if spec.endswith(".pth"):
        from compiler.pipeline import compile_checkpoint
        from spikformer_neuro.checkpoint import load_checkpoint
        from spikformer_neuro.data import load_dataset

        path = Path(spec) if Path(spec).is_absolute() else ROOT / spec
        ckpt = load_checkpoint(path)
        graph = compile_checkpoint(ckpt, None).quantized
        ds, _ = load_dataset(ckpt.dataset, "test")
        idx = [i % len(ds) for i in range(batch)]
        x = torch.stack([ds[i][0] for i in idx])
        labels = np.array([int(ds[i][1]) for i in idx])
        return Workload(f"{ckpt.config.name} (checkpoint, {ckpt.dataset} test)", graph, x,
                        labels, ckpt.build_model())
    from spikformer_neuro.testing import densely_firing_model, random_input
    from spikformer_neuro.zoo import get_config

    cfg = get_config(spec)
    model = densely_firing_model(cfg, seed=0)
    return Workload(f"{cfg.name} (random weights)", compile_random(model),
                    random_input(cfg, batch), None, model)
