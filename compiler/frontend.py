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
from spikformer_neuro.model import ConvBNLIF, LinearBNLIF
from spikformer_neuro.spike_driven import ConvBN, SpikeDrivenTransformer

from .ir import Graph, IRError, Node
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

    def conv_bn(self, prefix: str, src: str, mod: ConvBN, shape) -> str:
        """conv2d + batchnorm: a membrane input (spike-driven family)."""
        conv = mod.conv
        params = {"weight": _np(conv.weight)}
        if conv.bias is not None:
            params["bias"] = _np(conv.bias)
        x = self.add(f"{prefix}.conv", "conv2d", [src], shape, params,
                     stride=list(conv.stride), padding=list(conv.padding), groups=conv.groups)
        return self.batchnorm(f"{prefix}.bn", x, mod.bn, shape)

    def identity(self, name: str, src: str, shape) -> str:
        """A spike through a synapse of weight 1: a 1x1 sum pool."""
        return self.add(name, "sumpool2d", [src], shape, kernel=[1, 1], stride=[1, 1],
                        padding=[0, 0])

    def broadcast(self, name: str, src: str, shape) -> str:
        """A (D, 1, 1) map repeated over the (D, H, W) grid: a sum pool whose window, padded by
        (H - 1, W - 1), holds the one input value at every output position."""
        _, h, w = shape
        return self.add(name, "sumpool2d", [src], shape, kernel=[h, w], stride=[1, 1],
                        padding=[h - 1, w - 1])

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


def _graph_and_input(model: nn.Module, meta: dict | None) -> tuple:
    """A new float graph for ``model`` and its input node (name)."""
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
    return graph, b, x


def model_to_ir(model: nn.Module, meta: dict | None = None) -> Graph:
    """Walk a Spikformer or a Spike-driven Transformer into a float-level Graph (the model
    must be in eval mode semantics)."""
    if isinstance(model, SpikeDrivenTransformer):
        return spike_driven_to_ir(model, meta)
    cfg = model.cfg
    graph, b, x = _graph_and_input(model, meta)
    side = cfg.img_size
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


def spike_driven_to_ir(model: SpikeDrivenTransformer, meta: dict | None = None) -> Graph:
    """Walk a Spike-driven Transformer (spikformer_neuro/spike_driven.py) into a float Graph.

    The membrane stream is a ``sum`` of conv2d/batchnorm outputs that LIFs read (the pass
    ``distribute_membrane`` turns it into each LIF's own fan-in of synapses). SDSA becomes
    stock ops only, each equal to the model's on every value:

    - ``K ⊙ V`` (binary): ``threshold(2)`` of two identity ``sumpool2d`` (kernel 1): a spike
      reaches a neuron through a synapse, and 1 + 1 >= 2 is the AND;
    - ``SUM_tokens``: ``sumpool2d`` with a kernel covering the token grid -> (D, 1, 1) counts;
    - ``kv_lif`` (tau = 2, V_th = 0.5) on those integer counts c is ``threshold(1)``:
      H_t = V_{t-1}/2 + c_t/2 with 0 <= V_{t-1} < 1/2 (a silent H stays below V_th, a spike
      resets to 0), so H_t >= 1/2 exactly when c_t >= 1 (also in float32: for c = 1,
      fl(V + fl(1 - V)/2) >= 1/2; c = 0 gives H < 1/4); the state never matters;
    - the broadcast of that (D, 1, 1) mask over the grid: ``sumpool2d`` with the grid's kernel
      and padding (H - 1, W - 1); ``Q ⊙ mask`` is ``threshold(2)`` again.
    """
    cfg = model.cfg
    if cfg.attn_v_threshold != 0.5 or cfg.tau != 2.0:
        raise IRError(f"model '{cfg.name}': the spike-driven attention's kv_lif is a threshold "
                      f"only for tau = 2 and V_th = 0.5 (the paper's); got tau = {cfg.tau}, "
                      f"attn_v_threshold = {cfg.attn_v_threshold}")
    if 3 in model.sps.pool_stages:
        raise IRError(f"model '{cfg.name}': pool_stages {list(cfg.pool_stages)} max-pools the "
                      "real-valued output of SPS stage 3 (the paper's ImageNet/CIFAR setting); "
                      "no neuro-core primitive takes a max of membrane inputs, so it cannot be "
                      "compiled: train with pool stages among 0, 1, 2")
    graph, b, x = _graph_and_input(model, meta)
    side = cfg.img_size
    sps = model.sps
    for i, stage in enumerate(sps.stages):
        x = b.conv_bn_lif(f"sps.stages.{i}", x, stage, (stage.conv.out_channels, side, side))
        if i in sps.pool_stages:
            pool = sps.pool
            side = (side + 2 * pool.padding - pool.kernel_size) // pool.stride + 1
            x = b.add(f"sps.pool{i}", "maxpool2d", [x], (stage.conv.out_channels, side, side),
                      kernel=pool.kernel_size, stride=pool.stride, padding=pool.padding)
    grid = (cfg.embed_dim, side, side)
    feat = b.conv_bn("sps.proj", x, sps.proj, grid)
    rpe = b.conv_bn("sps.rpe", b.lif("sps.rpe_lif", feat, sps.rpe_lif, grid), sps.rpe, grid)
    x = b.add("sps.residual", "sum", [feat, rpe], grid)
    for j, block in enumerate(model.blocks):
        p, attn, mlp = f"blocks.{j}", block.attn, block.mlp
        s = b.lif(f"{p}.attn.shortcut_lif", x, attn.shortcut_lif, grid)
        q, k, v = (b.lif(f"{p}.attn.{r}_lif", b.conv_bn(f"{p}.attn.{r}", s, getattr(attn, r), grid),
                         getattr(attn, f"{r}_lif"), grid) for r in ("q", "k", "v"))
        mask = b.add(f"{p}.attn.mask", "threshold",
                     [b.identity(f"{p}.attn.q_syn", q, grid),
                      b.broadcast(f"{p}.attn.kv_broadcast",
                                  b.add(f"{p}.attn.kv_lif", "threshold",
                                        [b.add(f"{p}.attn.kv_sum", "sumpool2d",
                                               [b.add(f"{p}.attn.kv", "threshold",
                                                      [b.identity(f"{p}.attn.k_syn", k, grid),
                                                       b.identity(f"{p}.attn.v_syn", v, grid)],
                                                      grid, threshold=2.0)],
                                               (cfg.embed_dim, 1, 1), kernel=[side, side],
                                               stride=[1, 1], padding=[0, 0])],
                                        (cfg.embed_dim, 1, 1), threshold=1.0), grid)],
                     grid, threshold=2.0)
        a = b.conv_bn(f"{p}.attn.proj", mask, attn.proj, grid)
        x = b.add(f"{p}.attn_residual", "sum", [x, a], grid)
        h = b.lif(f"{p}.mlp.fc1_lif", x, mlp.fc1_lif, grid)
        h = b.conv_bn(f"{p}.mlp.fc1", h, mlp.fc1, (mlp.fc1.conv.out_channels, side, side))
        h = b.lif(f"{p}.mlp.fc2_lif", h, mlp.fc2_lif, (mlp.fc1.conv.out_channels, side, side))
        h = b.conv_bn(f"{p}.mlp.fc2", h, mlp.fc2, grid)
        x = b.add(f"{p}.mlp_residual", "sum", [x, h], grid)
    pooled = b.add("head_pool", "token_mean", [x], (cfg.embed_dim, 1, 1))
    x = b.lif("head_lif", pooled, model.head_lif, (cfg.embed_dim, 1, 1))
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
