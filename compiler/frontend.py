"""Frontend: a spikeform-train checkpoint -> float-level IR.

nirtorch's fx tracer cannot express attention (matmuls of two activations) or reshapes, so
the frontend walks the Spikformer's modules by name instead. The result mirrors the model
one-to-one: conv/linear, BatchNorm and LIF stay separate nodes (passes fold them later).
Token-wise Linear layers become 1x1 convolutions over the token grid (see compiler/ir.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np
from torch import nn

from spikformer_neuro.checkpoint import Checkpoint, load_checkpoint
from spikformer_neuro.model import ConvBNLIF, LinearBNLIF, Spikformer

from .ir import Graph, Node
from .ops import FLOAT


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


class _Builder:
    def __init__(self, graph: Graph):
        self.g = graph

    def add(self, name: str, op: str, inputs: List[str], shape, params=None, **attrs) -> str:
        self.g.add(Node(name, op, list(inputs), tuple(int(s) for s in shape), params or {}, attrs))
        return name

    def batchnorm(self, name: str, src: str, bn: nn.BatchNorm2d | nn.BatchNorm1d, shape) -> str:
        return self.add(name, "batchnorm", [src], shape,
                        {"gamma": _np(bn.weight), "beta": _np(bn.bias),
                         "mean": _np(bn.running_mean), "var": _np(bn.running_var)},
                        eps=float(bn.eps))

    def lif(self, name: str, src: str, lif, shape) -> str:
        return self.add(name, "lif", [src], shape, tau=lif.tau, v_threshold=lif.v_threshold)

    def conv_bn_lif(self, prefix: str, src: str, mod: ConvBNLIF, shape) -> str:
        conv = mod.conv
        x = self.add(f"{prefix}.conv", "conv2d", [src], shape, {"weight": _np(conv.weight)},
                     stride=list(conv.stride), padding=list(conv.padding), groups=conv.groups)
        x = self.batchnorm(f"{prefix}.bn", x, mod.bn, shape)
        return self.lif(f"{prefix}.lif", x, mod.lif, shape)

    def linear_bn_lif(self, prefix: str, src: str, mod: LinearBNLIF, grid: int) -> str:
        lin = mod.linear
        shape = (lin.out_features, grid, grid)
        params = {"weight": _np(lin.weight)[:, :, None, None]}
        if lin.bias is not None:
            params["bias"] = _np(lin.bias)
        x = self.add(f"{prefix}.linear", "conv2d", [src], shape, params,
                     stride=[1, 1], padding=[0, 0], groups=1)
        x = self.batchnorm(f"{prefix}.bn", x, mod.bn, shape)
        return self.lif(f"{prefix}.lif", x, mod.lif, shape)


def model_to_ir(model: Spikformer, meta: dict | None = None) -> Graph:
    """Walk a Spikformer into a float-level Graph (the model must be in eval mode semantics)."""
    cfg = model.cfg
    graph = Graph(meta={"model": cfg.name, "config": cfg.to_dict(), "time_steps": cfg.time_steps,
                        "num_classes": cfg.num_classes, "stage": FLOAT.value, **(meta or {})})
    b = _Builder(graph)
    side = cfg.img_size
    if cfg.event_max_count is not None:   # event counts: no normalisation (config.validate)
        x = b.add("input", "input", [], (cfg.in_channels, side, side), encoding="counts",
                  max_count=int(cfg.event_max_count))
    else:
        x = b.add("input", "input", [], (cfg.in_channels, side, side),
                  encoding="spikes" if cfg.event_input else "analog",
                  mean=[float(v) for v in model.input_mean.flatten()],
                  std=[float(v) for v in model.input_std.flatten()])
    for i, stage in enumerate(model.sps.stages):
        x = b.conv_bn_lif(f"sps.stages.{i}", x, stage, (stage.conv.out_channels, side, side))
        if i in model.sps.pool_stages:
            pool = model.sps.pool
            side = (side + 2 * pool.padding - pool.kernel_size) // pool.stride + 1
            x = b.add(f"sps.pool{i}", "maxpool2d", [x], (stage.conv.out_channels, side, side),
                      kernel=pool.kernel_size, stride=pool.stride, padding=pool.padding)
    grid_shape = (cfg.embed_dim, side, side)
    rpe = b.conv_bn_lif("sps.rpe", x, model.sps.rpe, grid_shape)
    x = b.add("sps.residual", "sum", [x, rpe], grid_shape)
    for j, block in enumerate(model.blocks):
        p = f"blocks.{j}"
        attn = block.attn
        q = b.linear_bn_lif(f"{p}.attn.q", x, attn.q, side)
        k = b.linear_bn_lif(f"{p}.attn.k", x, attn.k, side)
        v = b.linear_bn_lif(f"{p}.attn.v", x, attn.v, side)
        a = b.add(f"{p}.attn.attention", "spiking_attention", [q, k, v], grid_shape,
                  num_heads=attn.num_heads, scale=float(attn.scale))
        a = b.lif(f"{p}.attn.attn_lif", a, attn.attn_lif, grid_shape)
        a = b.linear_bn_lif(f"{p}.attn.proj", a, attn.proj, side)
        x = b.add(f"{p}.attn_residual", "sum", [x, a], grid_shape)
        h = b.linear_bn_lif(f"{p}.mlp.fc1", x, block.mlp.fc1, side)
        h = b.linear_bn_lif(f"{p}.mlp.fc2", h, block.mlp.fc2, side)
        x = b.add(f"{p}.mlp_residual", "sum", [x, h], grid_shape)
    x = b.add("readout", "token_time_mean", [x], (cfg.embed_dim,))
    x = b.add("head", "affine", [x], (cfg.num_classes,),
              {"weight": _np(model.head.weight), "bias": _np(model.head.bias)})
    b.add("output", "output", [x], (cfg.num_classes,))
    return graph.validate()


def checkpoint_to_ir(checkpoint: Union[str, Path, Checkpoint]) -> Graph:
    """Load a checkpoint (safely) and build its float-level IR."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    meta = {"dataset": ckpt.dataset, "class_names": list(ckpt.class_names)}
    if ckpt.quantization is not None:
        meta["loihi_hints"] = ckpt.quantization
    return model_to_ir(ckpt.build_model(), meta)
