"""Named Spikformer configurations: the paper's, and small ones for the offline data sets."""
from __future__ import annotations

from typing import Dict, List

from .config import SpikformerConfig

IMAGENET_POOLS = (0, 1, 2, 3)  # 224 -> 14: 16x16 patches
CIFAR_POOLS = (2, 3)  # 32 -> 8: 4x4 patches

# name -> (config, parameter count published in the paper, in millions; None for our own)
_ZOO: Dict[str, tuple] = {}


def _add(cfg: SpikformerConfig, paper_params_m: float | None = None) -> None:
    _ZOO[cfg.name] = (cfg, paper_params_m)


def _imagenet(depth: int, dim: int, heads: int, params_m: float) -> None:
    _add(SpikformerConfig(
        name=f"imagenet-{depth}-{dim}", img_size=224, in_channels=3, num_classes=1000,
        embed_dim=dim, depth=depth, num_heads=heads, time_steps=4, pool_stages=IMAGENET_POOLS,
        description=f"paper: ImageNet {depth}-{dim}"), params_m)


def _cifar(classes: int, depth: int, dim: int, heads: int, params_m: float) -> None:
    _add(SpikformerConfig(
        name=f"cifar{classes}-{depth}-{dim}", img_size=32, in_channels=3, num_classes=classes,
        embed_dim=dim, depth=depth, num_heads=heads, time_steps=4, pool_stages=CIFAR_POOLS,
        description=f"paper: CIFAR-{classes} {depth}-{dim}"),
        params_m if classes == 10 else None)


_imagenet(8, 384, 12, 16.81)
_imagenet(6, 512, 8, 23.37)
_imagenet(8, 512, 8, 29.68)
_imagenet(10, 512, 8, 36.01)
_imagenet(8, 768, 12, 66.34)
for _classes in (10, 100):
    _cifar(_classes, 4, 256, 8, 4.15)
    _cifar(_classes, 2, 384, 12, 5.76)
    _cifar(_classes, 4, 384, 12, 9.32)
_add(SpikformerConfig(
    name="dvs-gesture-2-256", img_size=128, in_channels=2, num_classes=11, embed_dim=256,
    depth=2, num_heads=16, time_steps=16, pool_stages=IMAGENET_POOLS, event_input=True,
    description="paper: DVS128 Gesture 2-256, T = 16"), 2.59)
_add(SpikformerConfig(
    name="cifar10dvs-2-256", img_size=128, in_channels=2, num_classes=10, embed_dim=256,
    depth=2, num_heads=16, time_steps=16, pool_stages=IMAGENET_POOLS, event_input=True,
    attn_scale=0.25,  # the official cifar10dvs model scales Q.K^T.V by 0.25, not 0.125
    description="paper: CIFAR10-DVS 2-256, T = 16"), 2.59)

# Small configurations sized for the offline data sets and for a 2-core CPU.
_add(SpikformerConfig(
    name="digits-tiny", img_size=8, in_channels=1, num_classes=10, embed_dim=64, depth=1,
    num_heads=4, time_steps=4, pool_stages=(3,),
    description="scikit-learn 8x8 digits: 16 tokens, 1 block"))
_add(SpikformerConfig(
    name="fmnist-small", img_size=28, in_channels=1, num_classes=10, embed_dim=96, depth=1,
    num_heads=4, time_steps=4, pool_stages=(1, 2),
    description="Fashion-MNIST / MNIST 28x28: 49 tokens, 1 block"))
_add(SpikformerConfig(
    name="test-micro", img_size=8, in_channels=1, num_classes=4, embed_dim=16, depth=1,
    num_heads=2, time_steps=2, pool_stages=(3,),
    description="smallest useful network, for tests"))
_add(SpikformerConfig(
    name="test-micro-events", img_size=8, in_channels=2, num_classes=4, embed_dim=16, depth=1,
    num_heads=2, time_steps=3, pool_stages=(3,), event_input=True,
    description="smallest event-input network, for tests"))


# Spike-driven Transformer (Yao et al., NeurIPS 2023; spikformer_neuro/spike_driven.py). The
# paper's ImageNet and CIFAR settings pool after SPS stage 3 (real values): they train and run
# in PyTorch, the compiler refuses that pool. The small ones pool spikes only, so they deploy.
def _sdt(name: str, paper_params_m: float | None, **kw) -> None:
    _add(SpikformerConfig(name=name, family="spike-driven", **kw), paper_params_m)


for _depth, _dim, _heads, _params in ((8, 384, 12, 16.81), (6, 512, 8, 23.37),
                                      (8, 512, 8, 29.68), (10, 512, 8, 36.01),
                                      (8, 768, 12, 66.34)):
    _sdt(f"sdt-imagenet-{_depth}-{_dim}", _params, img_size=224, in_channels=3,
         num_classes=1000, embed_dim=_dim, depth=_depth, num_heads=_heads, time_steps=4,
         pool_stages=IMAGENET_POOLS, description=f"paper: ImageNet {_depth}-{_dim}")
for _classes in (10, 100):
    _sdt(f"sdt-cifar{_classes}-2-512", 10.28 if _classes == 10 else None, img_size=32,
         in_channels=3, num_classes=_classes, embed_dim=512, depth=2, num_heads=8,
         time_steps=4, pool_stages=CIFAR_POOLS, description=f"paper: CIFAR-{_classes} 2-512")
_sdt("sdt-dvs-gesture-2-256", 2.57, img_size=128, in_channels=2, num_classes=11,
     embed_dim=256, depth=2, num_heads=16, time_steps=16, pool_stages=IMAGENET_POOLS,
     event_input=True, description="paper: DVS128 Gesture 2-256, T = 16")
_sdt("sdt-digits-tiny", None, img_size=8, in_channels=1, num_classes=10, embed_dim=64,
     depth=1, num_heads=4, time_steps=4, pool_stages=(2,),
     description="scikit-learn 8x8 digits: 16 tokens, 1 block, spike-driven")
_sdt("sdt-fmnist-small", None, img_size=28, in_channels=1, num_classes=10, embed_dim=96,
     depth=1, num_heads=4, time_steps=4, pool_stages=(0, 1),
     description="Fashion-MNIST / MNIST 28x28: 49 tokens, 1 block, spike-driven")
_sdt("test-micro-sdt", None, img_size=8, in_channels=1, num_classes=4, embed_dim=16, depth=1,
     num_heads=2, time_steps=2, pool_stages=(2,),
     description="smallest spike-driven network, for tests")


def config_names() -> List[str]:
    return list(_ZOO)


def get_config(name: str) -> SpikformerConfig:
    try:
        return _ZOO[name][0]
    except KeyError:
        raise KeyError(f"unknown configuration '{name}'; known: {', '.join(_ZOO)}") from None


def paper_parameter_count(name: str) -> float | None:
    """Parameters (millions) the paper reports for this configuration, or None."""
    return _ZOO[name][1]
