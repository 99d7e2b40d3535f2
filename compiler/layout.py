"""Layout helpers, one home: the map <-> tokens <-> heads reshapes and int-or-pair attributes.

The IR keeps the transformer in map layout ``(D, H, W)``: its ``N = H * W`` cells are the
tokens, row-major. Attention and the readout work on tokens ``[..., N, D]`` and heads
``[..., heads, N, D / heads]`` (consecutive channels per head). Every function here works on
numpy arrays and torch tensors alike (``reshape`` and ``swapaxes`` exist on both). Lava's own
``(W, H, C)`` layout lives with the Lava number semantics
(:func:`loihi_numerics.fixed_point.to_lava_layout`, :func:`~loihi_numerics.fixed_point.lava_shape`).
"""
from __future__ import annotations

from typing import Any, Tuple

from .ir import IRError


def pair(value: Any, where: str = "", key: str = "value") -> Tuple[int, int]:
    """An int-or-pair attribute (kernel, stride, padding) as ``(h, w)``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise IRError(f"{where}: attribute '{key}' must be an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def map_to_tokens(x):
    """``[..., D, H, W]`` -> ``[..., N, D]`` (tokens row-major over H, W)."""
    flat = x.reshape(*x.shape[:-3], x.shape[-3], x.shape[-2] * x.shape[-1])
    return flat.swapaxes(-1, -2)


def tokens_to_map(x, shape: Tuple[int, int, int]):
    """``[..., N, D]`` -> ``[..., D, H, W]`` for a node of map shape ``(D, H, W)``."""
    d, h, w = (int(s) for s in shape)
    return x.swapaxes(-1, -2).reshape(*x.shape[:-2], d, h, w)


def split_heads(tokens, num_heads: int):
    """``[..., N, D]`` -> ``[..., heads, N, D / heads]`` (consecutive channels per head)."""
    n, d = tokens.shape[-2], tokens.shape[-1]
    return tokens.reshape(*tokens.shape[:-2], n, num_heads, d // num_heads).swapaxes(-2, -3)


def merge_heads(heads):
    """``[..., heads, N, D / heads]`` -> ``[..., N, D]`` (inverse of :func:`split_heads`)."""
    h, n, dh = heads.shape[-3], heads.shape[-2], heads.shape[-1]
    return heads.swapaxes(-2, -3).reshape(*heads.shape[:-3], n, h * dh)


__all__ = ["pair", "map_to_tokens", "tokens_to_map", "split_heads", "merge_heads"]
