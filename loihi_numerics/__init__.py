"""Loihi 2 number semantics, the bottom layer every other package imports from.

- ``constants``: Loihi / Lava 0.10 bit widths and limits (one home for every package).
- ``fixed_point``: bit-exact numpy replicas of Lava 0.10's fixed-point LIF and Conv steps.
- ``grid``: the integer grid of one LIF layer (scale, threshold, weight and bias steps),
  shared by quantization-aware training and the compiler's quantize pass.
- ``exact_matmul``: integer matrix products through float BLAS where a bound proves them exact.

Imports numpy only (never torch, Lava, the model, the compiler or deploy).
"""
