"""The Spike-driven Transformer family (spikformer_neuro/spike_driven.py): the paper's
parameter counts, SDSA as the paper writes it, the kv_lif = threshold(count >= 1) identity the
compiler relies on, checkpoints, and the configuration's checks."""
import pytest
import torch

from spikformer_neuro.checkpoint import load_checkpoint, save_checkpoint
from spikformer_neuro.config import ConfigError, SpikformerConfig
from spikformer_neuro.model import build_model, count_parameters
from spikformer_neuro.neuron import lif_multistep
from spikformer_neuro.spike_driven import SDSA, SpikeDrivenTransformer
from spikformer_neuro.testing import randomize_batchnorm
from spikformer_neuro.zoo import config_names, get_config, paper_parameter_count

SDT_CONFIGS = [n for n in config_names() if get_config(n).family == "spike-driven"]


@pytest.mark.parametrize("name", [n for n in SDT_CONFIGS if paper_parameter_count(n)])
def test_parameter_counts_match_the_paper_within_one_percent(name):
    params = count_parameters(build_model(get_config(name))) / 1e6
    assert params == pytest.approx(paper_parameter_count(name), rel=0.01)


def test_the_family_builds_its_own_model_and_old_configs_stay_spikformer():
    assert isinstance(build_model(get_config("sdt-digits-tiny")), SpikeDrivenTransformer)
    spikformer = get_config("digits-tiny")
    assert spikformer.family == "spikformer" and "family" not in spikformer.to_dict()
    sdt = get_config("sdt-digits-tiny")
    assert SpikformerConfig.from_dict(sdt.to_dict()) == sdt


def test_bad_family_and_the_unbuilt_inner_residual_are_refused():
    base = get_config("test-micro-sdt")
    with pytest.raises(ConfigError, match="family"):
        base.replace(family="sew")
    with pytest.raises(ConfigError, match="mlp_ratio 1"):
        base.replace(mlp_ratio=1)


def test_sdsa_is_q_masked_by_the_spiking_column_sum_of_k_and_v():
    """SDSA-V1 of the paper, per head as the official code splits it: Q ⊙ SN(SUM_c(K ⊙ V))."""
    cfg = get_config("sdt-digits-tiny")
    attn = SDSA(cfg)
    gen = torch.Generator().manual_seed(0)
    t, b, d, h, w = 4, 3, cfg.embed_dim, 4, 4
    q, k, v = ((torch.rand(t, b, d, h, w, generator=gen) < p).float() for p in (0.3, 0.2, 0.25))
    heads = cfg.num_heads

    def split(x):  # [T, B, D, H, W] -> [T, B, heads, N, D/heads]
        return x.flatten(3).transpose(2, 3).reshape(t, b, h * w, heads, d // heads).transpose(2, 3)

    kv = (split(k) * split(v)).sum(dim=-2, keepdim=True)            # [T, B, heads, 1, d]
    kv = lif_multistep(kv, 2.0, 0.5)
    want = (split(q) * kv).transpose(2, 3).reshape(t, b, h * w, d).transpose(2, 3)
    assert torch.equal(attn.mask(q, k, v), want.reshape(t, b, d, h, w))
    assert 0 < float(want.mean()) < 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kv_lif_on_integer_counts_fires_exactly_when_the_count_is_positive(dtype):
    """The frontend's rewrite: tau 2, V_th 0.5 on integer counts c is threshold(c >= 1)
    whatever the state (every run of silent steps included), also in floating point."""
    gen = torch.Generator().manual_seed(1)
    t = 12
    counts = torch.randint(0, 4, (t, 20000), generator=gen).to(dtype)
    counts[:, :4000] = (counts[:, :4000] > 2).to(dtype)             # long silent runs
    spikes = lif_multistep(counts, 2.0, 0.5)
    assert torch.equal(spikes, (counts >= 1).to(dtype))


def test_a_spike_driven_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(get_config("test-micro-sdt")), 1).eval()
    path = save_checkpoint(tmp_path / "sdt.pth", model=model, dataset="digits",
                           class_names=["a", "b", "c", "d"])
    ckpt = load_checkpoint(path)
    assert ckpt.config.family == "spike-driven"
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(ckpt.build_model()(x), model(x))


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_model(get_config("test-micro-sdt")).train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
