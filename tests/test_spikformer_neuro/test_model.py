"""Model structure: shapes for every configuration, the paper's parameter counts, semantics."""
import pytest
import torch

from spikformer_neuro.config import ConfigError, SpikformerConfig
from spikformer_neuro.model import build_model, count_parameters
from spikformer_neuro.zoo import config_names, get_config, paper_parameter_count

# the Spikformer paper's (the spike-driven family's: tests/test_spikformer_neuro/test_spike_driven.py)
PAPER = [n for n in config_names() if paper_parameter_count(n) is not None
         and get_config(n).family == "spikformer"]


def test_paper_configurations_are_all_present():
    assert set(PAPER) == {
        "imagenet-8-384", "imagenet-6-512", "imagenet-8-512", "imagenet-10-512",
        "imagenet-8-768", "cifar10-4-256", "cifar10-2-384", "cifar10-4-384",
        "dvs-gesture-2-256", "cifar10dvs-2-256"}


@pytest.mark.parametrize("name", PAPER)
def test_paper_parameter_counts_within_one_percent(name):
    with torch.device("meta"):
        params = count_parameters(build_model(get_config(name)))
    paper = paper_parameter_count(name) * 1e6
    assert abs(params - paper) / paper < 0.01, (name, params, paper)


@pytest.mark.parametrize("name", config_names())
def test_shapes_for_every_configuration(name):
    cfg = get_config(name)
    with torch.device("meta"):  # shape propagation without arithmetic
        model = build_model(cfg)
        x = torch.zeros(3, *cfg.input_shape())
        assert model(x).shape == (3, cfg.num_classes)
        features = model.forward_features(x)
        if cfg.family == "spike-driven":   # the membrane stream, in map layout
            side = cfg.token_grid
            assert features.value.shape == (cfg.time_steps, 3, cfg.embed_dim, side, side)
        else:
            assert features.shape == (cfg.time_steps, 3, cfg.num_tokens, cfg.embed_dim)


@pytest.mark.parametrize("name", ["test-micro", "test-micro-events"])
def test_spikes_are_binary_and_residual_stream_is_integer(name):
    torch.manual_seed(0)
    cfg = get_config(name)
    model = build_model(cfg).eval()
    spikes = {}
    for mod_name, mod in model.named_modules():
        if type(mod).__name__ == "MultiStepLIF":
            mod.register_forward_hook(lambda m, i, o, n=mod_name: spikes.__setitem__(n, o))
    x = torch.rand(4, *cfg.input_shape()) * 3
    with torch.no_grad():
        stream = model.forward_features(x)
    assert spikes, "no LIF populations found"
    for name_, s in spikes.items():
        assert torch.all((s == 0) | (s == 1)), name_
    assert torch.equal(stream, stream.round())
    assert stream.min() >= 0 and stream.max() <= 2 + 2 * cfg.depth


def test_attention_is_q_kt_v_times_scale_per_head_and_reassociates_exactly():
    cfg = get_config("test-micro")
    attn = build_model(cfg).blocks[0].attn
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randint(0, 2, (2, 3, cfg.num_tokens, cfg.embed_dim), generator=g).float()
               for _ in range(3))
    out = attn.attention(q, k, v)
    d = cfg.head_dim
    for h in range(cfg.num_heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[..., sl], k[..., sl], v[..., sl]
        assert torch.equal(out[..., sl], (qh @ kh.transpose(-2, -1)) @ vh * 0.125)
        assert torch.equal(out[..., sl], qh @ (kh.transpose(-2, -1) @ vh) * 0.125)


def test_static_input_is_repeated_over_time():
    cfg = get_config("test-micro")
    model = build_model(cfg)
    x = torch.rand(2, *cfg.input_shape())
    seq = model.to_time_major(x)
    assert seq.shape == (cfg.time_steps, 2) + cfg.input_shape()
    assert all(torch.equal(seq[t], x) for t in range(cfg.time_steps))


def test_event_input_is_time_major_and_shape_checked():
    cfg = get_config("test-micro-events")
    model = build_model(cfg)
    x = torch.rand(2, *cfg.input_shape())
    assert torch.equal(model.to_time_major(x), x.transpose(0, 1))
    with pytest.raises(ValueError, match="expected event input"):
        model(torch.rand(2, cfg.time_steps + 1, 2, 8, 8))


def test_input_normalisation_applied_inside_model():
    cfg = get_config("test-micro").replace(input_mean=(0.5,), input_std=(0.25,))
    model = build_model(cfg)
    x = torch.full((1,) + cfg.input_shape(), 0.75)
    assert torch.allclose(model.to_time_major(x), torch.ones(cfg.time_steps, 1, *cfg.input_shape()))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    cfg = get_config("test-micro")
    model = build_model(cfg)
    loss = model(torch.rand(8, *cfg.input_shape()) * 4).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("change, message", [
    (dict(embed_dim=20), "multiple of 8"),
    (dict(num_heads=3), "divisible"),
    (dict(pool_stages=(4,)), "pool_stages"),
    (dict(time_steps=0), "time_steps"),
    (dict(input_mean=(0.1, 0.2)), "input_mean"),
])
def test_invalid_configurations_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        get_config("test-micro").replace(**change)


def test_config_dict_round_trip():
    for name in config_names():
        cfg = get_config(name)
        assert SpikformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        SpikformerConfig.from_dict({**get_config("test-micro").to_dict(), "bogus": 1})
