"""The converted network computes exactly what the official forward computes, run by the real
spikingjelly 0.0.0.0.12 (requirements-interop.lock; skipped where it is not installed, failed
instead under SPIKEFORM_REQUIRE_TEST_DEPS=1).

For each layout, container kind and DDP prefix: an official-layout network with
spikingjelly's own MultiStepLIFNode neurons (tests/support/official_models.py) is saved as
the official code saves it, converted by spikformer_neuro.official, and both run on the
same inputs. Every LIF population's spikes and the logits are compared with
``torch.equal``. The random weights lie on a dyadic grid (see the support module), so the
different kernels (nn.Linear vs Conv1d vs Conv2d 1x1, BatchNorm on a transposed tensor)
produce bit-identical values; token counts (4 or 16) and T (4 or 8) are powers of two, so the
official head's mean over tokens then time equals ours over both at once. Every layer is
checked to fire (sometimes, not always): a silent network would compare nothing.
"""
from __future__ import annotations

import pytest
import torch

from support import official_models as om

om.spikingjelly()   # skips (or fails under SPIKEFORM_REQUIRE_TEST_DEPS=1) without it

from spikformer_neuro.checkpoint import load_checkpoint  # noqa: E402
from spikformer_neuro.official import (ConversionOptions, convert_file,  # noqa: E402
                                       save_conversion)

SPECS = {
    om.CIFAR10: om.Spec(om.CIFAR10, embed_dim=32, depth=2, num_heads=4, img_size=16),
    om.IMAGENET: om.Spec(om.IMAGENET, embed_dim=32, depth=2, num_heads=2, img_size=64),
    om.CIFAR10DVS: om.Spec(om.CIFAR10DVS, embed_dim=32, depth=2, num_heads=8, img_size=32,
                           in_channels=2, time_steps=8),
}
# what each file lacks that the test passes as flags (as a user would)
FLAGS = {om.CIFAR10: {}, om.IMAGENET: {"num_heads": 2},
         om.CIFAR10DVS: {"num_heads": 8, "img_size": 32}}
BARE_FLAGS = {om.CIFAR10: {"num_heads": 4, "time_steps": 4, "img_size": 16},
              om.IMAGENET: {"num_heads": 2, "img_size": 64},
              om.CIFAR10DVS: {"num_heads": 8, "img_size": 32, "time_steps": 8}}
MAX_COUNT = 7


def inputs(spec, converted_cfg, batch=3):
    """(what the official model takes, what ours takes): normalised images vs [0, 1] images
    (ours normalises inside), or the same event-count frames."""
    if spec.layout == om.CIFAR10DVS:
        x = om.event_counts(spec, batch, MAX_COUNT)
        return x, x
    x = torch.rand(batch, spec.in_channels, spec.img_size, spec.img_size,
                   generator=torch.Generator().manual_seed(7))
    return om.normalise(x, converted_cfg.input_mean, converted_cfg.input_std), x


def assert_same_network(official, converted, spec):
    """Every LIF's spikes and the logits equal, every layer firing."""
    x_official, x_ours = inputs(spec, converted.config)
    ours = converted.build_model()
    theirs, mine = om.official_spikes(official, x_official), om.our_spikes(ours, x_ours)
    assert sorted(theirs) == sorted(mine) and len(mine) == 5 + 7 * spec.depth
    for name, spikes in theirs.items():
        assert 0 < float(spikes.mean()) < 1, f"{name} never or always fires: a weak test"
        assert torch.equal(spikes, mine[name]), (
            f"{name}: {int((spikes != mine[name]).sum())} of {spikes.numel()} spikes differ")
    with torch.no_grad():
        logits = ours(x_ours)
    assert torch.equal(om.official_logits(official, x_official), logits)


@pytest.mark.parametrize("layout", sorted(SPECS))
@pytest.mark.parametrize("ddp", [False, True], ids=["plain", "module-prefix"])
def test_training_container_converts_to_the_official_network(tmp_path, layout, ddp):
    spec = SPECS[layout]
    official = om.build_official(spec, seed=3)
    save = om.save_dvs if layout == om.CIFAR10DVS else om.save_timm
    path = save(official, tmp_path / "checkpoint.pth.tar", ddp=ddp)
    conv = convert_file(path, ConversionOptions(
        **FLAGS[layout], max_count=MAX_COUNT if layout == om.CIFAR10DVS else None))
    assert conv.summary.stripped_prefix == ddp
    assert_same_network(official, conv.checkpoint, spec)


@pytest.mark.parametrize("layout", sorted(SPECS))
def test_bare_state_dict_with_flags_converts_to_the_official_network(tmp_path, layout):
    spec = SPECS[layout]
    official = om.build_official(spec, seed=4)
    path = om.save_bare(official, tmp_path / "weights.pth")
    max_count = MAX_COUNT if layout == om.CIFAR10DVS else None
    conv = convert_file(path, ConversionOptions(**BARE_FLAGS[layout], max_count=max_count))
    assert_same_network(official, conv.checkpoint, spec)


def test_ema_weights_are_the_ones_converted(tmp_path):
    spec = SPECS[om.CIFAR10]
    trained, ema = om.build_official(spec, seed=5), om.build_official(spec, seed=6)
    path = om.save_timm(trained, tmp_path / "model_best.pth.tar", ema=ema)
    converted = convert_file(path, ConversionOptions(ema=True)).checkpoint
    assert_same_network(ema, converted, spec)
    x_official, x_ours = inputs(spec, converted.config)
    with torch.no_grad():   # the trained weights are another network
        assert not torch.equal(om.official_logits(trained, x_official),
                               converted.build_model()(x_ours))


def test_event_counts_above_one_reach_the_network_as_counts(tmp_path):
    """cifar10dvs frames hold event counts; counts > 1 must matter, and do the same in both."""
    spec = SPECS[om.CIFAR10DVS]
    official = om.build_official(spec, seed=3)
    conv = convert_file(om.save_dvs(official, tmp_path / "dvs.pth"),
                        ConversionOptions(num_heads=8, img_size=32, max_count=MAX_COUNT))
    x, _ = inputs(spec, conv.checkpoint.config)
    assert x.max() == MAX_COUNT and float((x > 1).float().mean()) > 0.05
    ours = conv.checkpoint.build_model()
    first = om.our_spikes(ours, x)["sps.stages.0.lif"]
    assert torch.equal(om.official_spikes(official, x)["sps.stages.0.lif"], first)
    assert not torch.equal(om.our_spikes(ours, x.clamp(max=1))["sps.stages.0.lif"], first)


def test_the_comparison_sees_a_wrong_attention_scale(tmp_path):
    """Control: the same conversion with cifar10's scale 0.125 instead of cifar10dvs's 0.25
    (the one number that tells the two attentions apart) no longer equals the official run."""
    spec = SPECS[om.CIFAR10DVS]
    official = om.build_official(spec, seed=3)
    conv = convert_file(om.save_dvs(official, tmp_path / "dvs.pth"),
                        ConversionOptions(num_heads=8, img_size=32, max_count=MAX_COUNT))
    wrong = conv.checkpoint
    wrong.config = wrong.config.replace(attn_scale=0.125)
    with pytest.raises(AssertionError, match="attn_lif: .* spikes differ"):
        assert_same_network(official, wrong, spec)


def test_the_written_checkpoint_is_the_same_network(tmp_path):
    spec = SPECS[om.IMAGENET]
    official = om.build_official(spec, seed=8)
    conv = convert_file(om.save_timm(official, tmp_path / "in.pth.tar"),
                        ConversionOptions(num_heads=2))
    ckpt = load_checkpoint(save_conversion(conv, tmp_path / "in.pth"))
    assert_same_network(official, ckpt, spec)
