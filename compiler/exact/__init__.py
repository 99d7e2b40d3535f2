"""Exact integer kernels in torch: the arithmetic of the reference executor (compiler/reference.py).

Every value is an integer tensor with a proven bound on its magnitude (:class:`IntSeq`); each
op derives its output's bound from its inputs' bounds and the layer's parameters, and picks
the cheapest arithmetic that the bound proves exact (``loihi_numerics.exact_matmul``: float32
below 2**24, float64 below 2**53, else int64). Products are GEMMs only (MKL / cuBLAS, never a
cuDNN or oneDNN convolution: FFT and Winograd convolutions are not sums of the products, so the
bound would prove nothing). The same integers come out on the CPU and on CUDA.

  values.py      IntSeq, the dtype a bound allows, exact sums (Lava's int32 fan-in), layouts
  device.py      the device argument, and float settings that keep GEMMs exact (no TF32)
  conv.py        conv2d and sumpool2d as tap-wise GEMMs, then Lava's int32 / 24-bit finish
  lif.py         the Loihi LIF over time: float state where a bound rules out every wrap,
                 else ``loihi_numerics.fixed_point.lif_step`` itself
  attention.py   per-head Q.(K^T.V) counts as batched GEMMs
"""
