"""The LIF neuron against hand-computed sequences (values are exact binary fractions)."""
import pytest
import torch

from spikformer_neuro.neuron import MultiStepLIF, SigmoidSurrogateSpike, lif_multistep


def test_hand_computed_sequence_tau2():
    # H[t] = V[t-1] + (X[t] - V[t-1]) / 2; spike iff H >= 1; hard reset to 0.
    x = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, -1.0, 0.0, 3.0])
    # H:             0.5  0.75 0.875 1.4375 1.0  -0.5  -0.25 1.375
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    assert torch.equal(lif_multistep(x), expected)


def test_threshold_is_greater_or_equal():
    # From rest, X = 2 gives H = 1.0 exactly: the paper's neuron fires at equality.
    assert lif_multistep(torch.tensor([2.0])).item() == 1.0
    assert lif_multistep(torch.tensor([1.9999999])).item() == 0.0


def test_hard_reset_to_zero_not_subtract():
    # H = 3.5 >> V_th: after the spike V is 0 (subtract-reset would leave 2.5 and fire again).
    x = torch.tensor([7.0, 0.0, 0.0])
    assert torch.equal(lif_multistep(x), torch.tensor([1.0, 0.0, 0.0]))


def test_attention_threshold_half():
    # V_th = 0.5: X = 1 gives H = 0.5, which fires.
    assert torch.equal(lif_multistep(torch.tensor([1.0, 0.5]), v_threshold=0.5),
                       torch.tensor([1.0, 0.0]))


def test_leak_toward_zero_and_negative_membrane():
    # V decays by half each step with no input: 0.75 -> 0.375 -> 0.1875 (no spikes).
    x = torch.tensor([1.5, 0.0, 0.0, 1.8125])
    # H: 0.75, 0.375, 0.1875, 0.1875 + (1.8125-0.1875)/2 = 1.0 -> fires at equality
    assert torch.equal(lif_multistep(x), torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_multistep_shape_and_independence_of_neurons():
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # [T=2, neurons=2]
    assert torch.equal(lif_multistep(x), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_surrogate_gradient_sigmoid_alpha4():
    x = torch.tensor([0.0, 0.5, -1.0], requires_grad=True)
    SigmoidSurrogateSpike.apply(x, 4.0).sum().backward()
    sg = torch.sigmoid(4.0 * x.detach())
    assert torch.allclose(x.grad, 4.0 * sg * (1 - sg))
    assert x.grad[0].item() == pytest.approx(1.0)  # alpha/4 at the threshold


def test_reset_is_detached():
    # Gradient of the second step's spike w.r.t. the first input flows only through the
    # charge path H1 = V0 + (X1 - V0)/2 with V0 = H0 * (1 - S0), S0 treated as a constant.
    x = torch.tensor([0.5, 1.5], requires_grad=True)
    s = lif_multistep(x)
    s[1].backward()
    h0 = 0.25
    h1 = h0 + (1.5 - h0) / 2
    sg = torch.sigmoid(torch.tensor(4.0 * (h1 - 1.0)))
    d_s1_d_h1 = 4.0 * sg * (1 - sg)
    # dH1/dX0 = dV0/dX0 * (1 - 1/2) = (1/2 * (1 - S0)) * 1/2 with S0 = 0
    assert x.grad[0].item() == pytest.approx((d_s1_d_h1 * 0.25).item())
    assert x.grad[1].item() == pytest.approx((d_s1_d_h1 * 0.5).item())


def test_module_rejects_tau_le_1():
    with pytest.raises(ValueError, match="tau"):
        MultiStepLIF(tau=1.0)
