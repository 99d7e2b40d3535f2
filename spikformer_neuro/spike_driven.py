"""Spike-driven Transformer (Yao et al., NeurIPS 2023): spike-driven self-attention (SDSA)
and the membrane shortcut.

Differences from Spikformer (model.py), as the paper defines them:

- **Membrane shortcut.** The residual stream carries membrane inputs (real values: the
  outputs of conv + BN), not spikes; every branch starts with a LIF (``shortcut_lif``,
  ``fc1_lif``, ``head_lif``), so every neuron still sends binary spikes.
- **SDSA** (the paper's SDSA-V1): with binary Q, K, V of shape [tokens, D],
  ``SDSA = Q ⊙ SN(SUM_tokens(K ⊙ V))``: a mask, a column sum and a LIF (``kv_lif``, the
  official code's ``talking_heads_lif``, V_th = 0.5), then a mask again -- no product of two
  activations beyond ANDs of spikes. Heads do not change the result (every operation is per
  channel), so ``num_heads`` only names the configuration.
- **SPS.** Stages 0..2 are conv-BN-LIF (max-pool on spikes); stage 3 is conv-BN without a LIF:
  its output is the start of the membrane stream, and the relative position embedding adds
  ``rpe(rpe_lif(x))`` to it. A max-pool after stage 3 (``3 in pool_stages``, the paper's
  ImageNet and CIFAR settings) pools real values: the model runs it, the compiler refuses it
  (no neuro-core primitive takes a max of membrane inputs).
- **Head.** The mean over tokens of the membrane stream feeds ``head_lif``; the linear head
  reads its spikes, averaged over time.

Tensors are time-major maps [T, B, C, H, W] throughout (tokens = H * W, row-major), as in the
official code; token-wise linear layers are 1x1 convolutions. Module names are stable: the
compiler frontend walks them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SpikformerConfig
from .model import ConvBNLIF, _flat, _unflat, attach_input, to_time_major
from .neuron import MultiStepLIF


class ConvBN(nn.Module):
    """conv (k x k, same padding) -> BatchNorm2d on [T, B, C, H, W]: a membrane input.

    A 1x1 conv (a token-wise linear layer) runs as ``F.linear`` + batch norm on the
    contiguous tokens [T, B, N, C], exactly as Spikformer's ``LinearBNLIF`` does, so that the
    compiler's float executor reproduces it bit for bit (oneDNN's 1x1 convolution and the GEMM
    behind ``F.linear`` round differently); the parameters keep the official Conv2d/BatchNorm2d
    shapes. The output is a contiguous map.
    """

    fake_quant = None  # set by spikformer_neuro.qat_spike_driven: folded, Loihi-grid conv + BN

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=1, padding=kernel // 2,
                              bias=bias)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fake_quant is not None:
            return self.fake_quant(x)
        if self.conv.kernel_size != (1, 1):
            return _unflat(self.bn(self.conv(_flat(x))), x.shape[0])
        t, b, c, h, w = x.shape
        tokens = x.flatten(3).transpose(2, 3).contiguous()            # [T, B, N, C]
        y = F.linear(tokens, self.conv.weight.flatten(1), self.conv.bias)
        bn = self.bn
        y = F.batch_norm(y.reshape(-1, y.shape[-1]), bn.running_mean, bn.running_var,
                         bn.weight, bn.bias, bn.training, bn.momentum, bn.eps)
        return y.reshape(t, b, h * w, -1).transpose(2, 3).reshape(t, b, -1, h, w).contiguous()


class MembraneStream:
    """The membrane shortcut's stream: its terms (a ConvBN and the spikes it reads, in the
    order they were added) and their running sum. Quantization-aware training reads the terms
    (each neuron gets its own integer sum of them, as on Loihi); the float model the sum."""

    def __init__(self, summed: bool = True) -> None:
        self.terms: list = []
        self.value = None
        self.summed = summed   # False under QAT: each reader computes its input from the terms

    def add(self, conv_bn: "ConvBN", spikes: torch.Tensor) -> None:
        if self.terms is not None:   # None: a max-pool of real values has no terms
            self.terms.append((conv_bn, spikes))
        if self.summed:
            y = conv_bn(spikes)
            self.value = y if self.value is None else self.value + y


class SpikeDrivenSPS(nn.Module):
    """Stages 0..2 conv-BN-LIF (+ max-pool on spikes), stage 3 conv-BN, RPE on the membrane."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        chans = (cfg.in_channels,) + cfg.stage_channels
        self.stages = nn.ModuleList(ConvBNLIF(chans[i], chans[i + 1], cfg) for i in range(3))
        self.proj = ConvBN(chans[3], chans[4], kernel=3)
        self.pool_stages = tuple(cfg.pool_stages)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_lif = MultiStepLIF(cfg.tau, cfg.v_threshold)
        self.rpe = ConvBN(cfg.embed_dim, cfg.embed_dim, kernel=3)

    def forward(self, x: torch.Tensor, stream: MembraneStream, read) -> None:
        """Add the embedding and the RPE to ``stream``; ``read(name, lif, stream)`` is the
        model's reader of the stream."""
        t = x.shape[0]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.pool_stages:
                x = _unflat(self.pool(_flat(x)), t)  # max over binary spikes
        if 3 in self.pool_stages:   # the paper's max over real values (float only)
            stream.value = _unflat(self.pool(_flat(self.proj(x))), t)
            stream.terms = None     # no term structure survives a max
        else:
            stream.add(self.proj, x)
        stream.add(self.rpe, read("sps.rpe_lif", self.rpe_lif, stream))


class SDSA(nn.Module):
    """Spike-driven self-attention on the membrane stream; returns the branch's membrane input."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        d = cfg.embed_dim
        self.shortcut_lif = MultiStepLIF(cfg.tau, cfg.v_threshold)
        self.q, self.k, self.v = (ConvBN(d, d) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = (MultiStepLIF(cfg.tau, cfg.v_threshold)
                                              for _ in range(3))
        self.kv_lif = MultiStepLIF(cfg.tau, cfg.attn_v_threshold)
        self.proj = ConvBN(d, d, bias=True)

    def mask(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Q ⊙ SN(SUM_tokens(K ⊙ V)) on spike maps [T, B, D, H, W]."""
        kv = (k * v).sum(dim=(3, 4), keepdim=True)        # per channel: coincidences
        return q * self.kv_lif(kv)

    def forward(self, stream: MembraneStream, read, prefix: str) -> None:
        s = read(f"{prefix}.shortcut_lif", self.shortcut_lif, stream)
        q, k, v = self.q_lif(self.q(s)), self.k_lif(self.k(s)), self.v_lif(self.v(s))
        stream.add(self.proj, self.mask(q, k, v))


class SpikeDrivenMLP(nn.Module):
    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        hidden = cfg.embed_dim * cfg.mlp_ratio
        self.fc1_lif = MultiStepLIF(cfg.tau, cfg.v_threshold)
        self.fc1 = ConvBN(cfg.embed_dim, hidden, bias=True)
        self.fc2_lif = MultiStepLIF(cfg.tau, cfg.v_threshold)
        self.fc2 = ConvBN(hidden, cfg.embed_dim, bias=True)

    def forward(self, stream: MembraneStream, read, prefix: str) -> None:
        h = read(f"{prefix}.fc1_lif", self.fc1_lif, stream)
        stream.add(self.fc2, self.fc2_lif(self.fc1(h)))


class SpikeDrivenBlock(nn.Module):
    """x = x + SDSA(x); x = x + MLP(x), on membrane inputs (the membrane shortcut)."""

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        self.attn = SDSA(cfg)
        self.mlp = SpikeDrivenMLP(cfg)

    def forward(self, stream: MembraneStream, read, prefix: str) -> None:
        self.attn(stream, read, f"{prefix}.attn")
        self.mlp(stream, read, f"{prefix}.mlp")


class SpikeDrivenTransformer(nn.Module):
    # set by spikformer_neuro.qat_spike_driven: the stream readers' and the head's Loihi grids
    fake_quant_stream = None
    fake_quant_head = None

    def __init__(self, cfg: SpikformerConfig):
        super().__init__()
        if cfg.family != "spike-driven":
            raise ValueError(f"configuration '{cfg.name}' is of family {cfg.family!r}, "
                             "not 'spike-driven'")
        attach_input(self, cfg)
        self.sps = SpikeDrivenSPS(cfg)
        self.blocks = nn.ModuleList(SpikeDrivenBlock(cfg) for _ in range(cfg.depth))
        self.head_lif = MultiStepLIF(cfg.tau, cfg.v_threshold)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        return to_time_major(self.cfg, x, self.input_mean, self.input_std)

    def read(self, name: str, lif: MultiStepLIF, stream: MembraneStream,
             pooled: bool = False) -> torch.Tensor:
        """The spikes of the LIF ``name`` that reads the membrane stream (``pooled``: its mean
        over the tokens)."""
        if self.fake_quant_stream is not None:   # QAT: this neuron's integer sum of the terms
            return lif(self.fake_quant_stream(name, stream.terms, pooled))
        x = stream.value
        return lif(x.mean(dim=(3, 4), keepdim=True) if pooled else x)

    def forward_features(self, x: torch.Tensor) -> MembraneStream:
        """The membrane stream after the last block."""
        stream = MembraneStream(summed=self.fake_quant_stream is None)
        self.sps(self.to_time_major(x), stream, self.read)
        for j, block in enumerate(self.blocks):
            block(stream, self.read, f"blocks.{j}")
        return stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.read("head_lif", self.head_lif, self.forward_features(x), pooled=True)
        pooled = spikes.flatten(2).mean(dim=0)                           # [B, D]
        return self.head(pooled) if self.fake_quant_head is None else self.fake_quant_head(pooled)
