"""The Spikformer LIF neuron, with the paper's exact semantics.

spikingjelly's ``MultiStepLIFNode(tau=2, decay_input=True, v_reset=0, detach_reset=True)``:

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau      (charge, decay-input form)
    S[t] = Heaviside(H[t] - V_th)                           (fires when H >= V_th)
    V[t] = H[t] * (1 - S[t]) + V_reset * S[t]               (hard reset, S detached)

The backward pass of the Heaviside uses the sigmoid surrogate
``d S / d H = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))`` with alpha = 4.

Inputs are multi-step: the leading dimension is time. The layers feeding a LIF run on all
time steps at once (they are stateless); only this recurrence has to loop over time.
"""
from __future__ import annotations

import torch
from torch import nn

SURROGATE_ALPHA = 4.0


class SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside step (x >= 0 fires) with the sigmoid surrogate gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_out * ctx.alpha * sg * (1.0 - sg), None


class _LIFMultiStep(torch.autograd.Function):
    """The whole LIF recurrence as one autograd node: saves only H, not every temporary.

    Backward, with the reset detached (S[t] is a constant in V[t] = H[t] (1 - S[t])):
        dL/dH[t]   = dL/dS[t] * sg'(H[t] - V_th) + dL/dV[t] * (1 - S[t])
        dL/dV[t-1] = dL/dH[t] * (1 - 1/tau)
        dL/dX[t]   = dL/dH[t] / tau
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float):  # type: ignore[override]
        v = torch.zeros_like(x[0])
        h_all = torch.empty_like(x)
        spikes = torch.empty_like(x)
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / tau  # the paper's exact operation order
            s = (h >= v_threshold).to(x.dtype)
            h_all[t], spikes[t] = h, s
            v = h * (1.0 - s)
        ctx.save_for_backward(h_all, spikes)
        ctx.consts = (tau, v_threshold, alpha)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):  # type: ignore[override]
        h_all, spikes = ctx.saved_tensors
        tau, v_threshold, alpha = ctx.consts
        grad_x = torch.empty_like(h_all)
        grad_v = torch.zeros_like(h_all[0])
        for t in range(h_all.shape[0] - 1, -1, -1):
            sg = torch.sigmoid(alpha * (h_all[t] - v_threshold))
            grad_h = grad_spikes[t] * alpha * sg * (1.0 - sg) + grad_v * (1.0 - spikes[t])
            grad_x[t] = grad_h / tau
            grad_v = grad_h * (1.0 - 1.0 / tau)
        return grad_x, None, None, None


def lif_multistep(
    x: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    alpha: float = SURROGATE_ALPHA,
) -> torch.Tensor:
    """Run the LIF over ``x`` of shape [T, ...] from V = 0; return spikes of the same shape."""
    return _LIFMultiStep.apply(x, float(tau), float(v_threshold), float(alpha))


class MultiStepLIF(nn.Module):
    """Multi-step LIF population; stateless between calls (each call starts from V = 0)."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, alpha: float = SURROGATE_ALPHA):
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"LIF tau must be > 1 (got {tau}); tau = 2 is the paper's value")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x, self.tau, self.v_threshold, self.alpha)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, alpha={self.alpha}"
