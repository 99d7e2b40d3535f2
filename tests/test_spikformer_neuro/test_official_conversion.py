"""Converting official Spikformer checkpoints (spikformer_neuro.official): layouts detected
from the keys, what each value is read from (weights, stored args, flags, the official code),
and an error naming the key, the shapes or the flag for everything that does not fit.

Weights only (support/official_models.py with stand-in neurons): no spikingjelly needed. That
the converted network computes what the official forward computes is
test_official_vs_spikingjelly.py.
"""
from __future__ import annotations

import pytest
import torch

from spikformer_neuro.checkpoint import load_checkpoint
from spikformer_neuro.official import (ConversionOptions, OfficialCheckpointError,
                                       SpikingJelly2Error, convert_file, save_conversion)
from support import official_models as om

CIFAR = om.Spec(om.CIFAR10, embed_dim=32, depth=2, num_heads=4, img_size=16)
IMAGENET = om.Spec(om.IMAGENET, embed_dim=32, depth=1, num_heads=2, img_size=32)
DVS = om.Spec(om.CIFAR10DVS, embed_dim=32, depth=1, num_heads=8, img_size=32, in_channels=2,
              time_steps=8)


def weights(spec, seed=0):
    return om.build_official(spec, seed, neuron=om.no_neuron)


@pytest.fixture
def files(tmp_path):
    """One file per layout and container kind (timm / dvs with stored args, bare without)."""
    return {
        "cifar-timm": om.save_timm(weights(CIFAR), tmp_path / "cifar.pth.tar"),
        "cifar-bare": om.save_bare(weights(CIFAR), tmp_path / "cifar-bare.pth", ddp=True),
        "imagenet-timm": om.save_timm(weights(IMAGENET), tmp_path / "imagenet.pth.tar"),
        "dvs": om.save_dvs(weights(DVS), tmp_path / "dvs.pth"),
        "dvs-bare": om.save_bare(weights(DVS), tmp_path / "dvs-bare.pth"),
    }


def convert(path, **options):
    return convert_file(path, ConversionOptions(**options))


# -- layouts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, layout, pools, scale", [
    ("cifar-timm", {}, om.CIFAR10, (2, 3), 0.125),
    ("imagenet-timm", {"num_heads": 2}, om.IMAGENET, (0, 1, 2, 3), 0.125),
    ("dvs", {"num_heads": 8, "img_size": 32}, om.CIFAR10DVS, (0, 1, 2, 3), 0.25),
])
def test_each_layout_is_detected_and_its_geometry_taken(files, name, options, layout, pools,
                                                        scale):
    conv = convert(files[name], **options)
    cfg = conv.checkpoint.config
    assert conv.summary.layout == layout and conv.summary.layout_detected
    assert (cfg.pool_stages, cfg.attn_scale, cfg.embed_dim, cfg.mlp_ratio) == \
        (pools, scale, 32, 4)
    assert cfg.event_input == (layout == om.CIFAR10DVS)
    conv.checkpoint.build_model()   # strict load: every tensor has its place and shape


def test_conv_weights_are_reshaped_and_missing_qkv_biases_are_zero(files):
    official = torch.load(files["imagenet-timm"], weights_only=False)["state_dict"]
    ours = convert(files["imagenet-timm"], num_heads=2).checkpoint.state_dict
    assert torch.equal(ours["blocks.0.mlp.fc1.linear.weight"],
                       official["block.0.mlp.fc1_conv.weight"][:, :, 0, 0])
    assert torch.equal(ours["blocks.0.attn.proj.linear.weight"],
                       official["block.0.attn.proj_conv.weight"][:, :, 0])
    assert torch.equal(ours["blocks.0.attn.proj.linear.bias"],
                       official["block.0.attn.proj_conv.bias"])
    for x in "qkv":
        assert f"block.0.attn.{x}_conv.bias" not in official
        assert torch.equal(ours[f"blocks.0.attn.{x}.linear.bias"], torch.zeros(32))


def test_the_summary_lists_dropped_and_filled_keys(files):
    dvs = convert(files["dvs"], num_heads=8, img_size=32).summary
    assert dvs.dropped == ["pos_embed", "block.0.norm1.weight", "block.0.norm1.bias",
                           "block.0.norm2.weight", "block.0.norm2.bias", "norm.weight",
                           "norm.bias"]
    assert dvs.filled == [f"block.0.attn.{x}_conv.bias" for x in "qkv"]
    text = "\n".join(dvs.lines())
    assert "dropped keys      7, unused by the forward pass: pos_embed, block.0.norm1" in text
    assert "filled keys       3" in text
    cifar = convert(files["cifar-timm"]).summary
    assert len(cifar.dropped) == 8 and cifar.filled == []
    assert f"parameters        {cifar.parameters:,} (official-cifar10-2-32)" in \
        "\n".join(cifar.lines())


def test_spikingjelly2_spikformer_is_refused_with_the_reason(tmp_path):
    """Keys of spikingjelly 2.x's activation_based/model/spikformer.py."""
    state = {"patch_embed.stages.0.conv_bn.block.0.weight": torch.zeros(4, 3, 3, 3),
             "patch_embed.stages.0.conv_bn.block.1.weight": torch.zeros(4),
             "blocks.0.attn.qkv_conv_bn.0.weight": torch.zeros(96, 32, 1),
             "head.weight": torch.zeros(10, 32)}
    torch.save(state, tmp_path / "sj2.pth")
    for layout in ("auto", om.CIFAR10):   # choosing a layout does not get around it
        with pytest.raises(SpikingJelly2Error) as err:
            convert(tmp_path / "sj2.pth", layout=layout)
        message = str(err.value)
        for needle in ("spikingjelly 2", "Conv -> BN -> MaxPool -> LIF", "before the neuron",
                       "max-pool binary spikes", "approximately is not done"):
            assert needle in message, needle


def test_an_unknown_state_dict_is_named(tmp_path):
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)},
               tmp_path / "resnet.pth")
    with pytest.raises(OfficialCheckpointError, match="not a Spikformer of the official code") \
            as err:
        convert(tmp_path / "resnet.pth")
    assert "'conv1.weight'" in str(err.value) and "q_linear" in str(err.value)


# -- keys that do not fit ----------------------------------------------------------------------

def _edit(path, edit):
    content = torch.load(path, weights_only=False)
    edit(content["state_dict"] if "state_dict" in content else content)
    torch.save(content, path)
    return path


def test_a_missing_key_is_named_with_its_shape(files):
    path = _edit(files["cifar-timm"], lambda s: s.pop("block.1.mlp.fc2_bn.running_var"))
    with pytest.raises(OfficialCheckpointError) as err:
        convert(path)
    assert "1 missing keys: block.1.mlp.fc2_bn.running_var (expected [32])" in str(err.value)


def test_a_key_of_another_shape_is_named_with_both_shapes(files):
    def wrong(state):
        state["block.0.attn.k_linear.weight"] = torch.zeros(32, 16)
    with pytest.raises(OfficialCheckpointError) as err:
        convert(_edit(files["cifar-timm"], wrong))
    assert "block.0.attn.k_linear.weight (expected [32, 32], found [32, 16])" in str(err.value)


def test_a_forced_layout_that_does_not_fit_names_the_shapes(files):
    """imagenet's MLP is a Conv2d 1x1, cifar10dvs's a Conv1d: forcing one onto the other."""
    with pytest.raises(OfficialCheckpointError) as err:
        convert(files["dvs"], layout=om.IMAGENET, num_heads=8, img_size=32)
    assert "block.0.mlp.fc1_conv.weight has shape [128, 32, 1], where imagenet/model.py has " \
           "[4D, D, 1, 1]" in str(err.value)
    # the MLP's second layer is met when the first fits: both shapes, in numbers
    conv = convert(files["imagenet-timm"], num_heads=2)   # works as what it is
    content = torch.load(files["imagenet-timm"], weights_only=False)
    content["state_dict"]["block.0.mlp.fc2_conv.weight"] = torch.zeros(32, 128, 1)
    torch.save(content, files["imagenet-timm"])
    with pytest.raises(OfficialCheckpointError) as err:
        convert(files["imagenet-timm"], num_heads=2)
    assert "block.0.mlp.fc2_conv.weight (expected [32, 128, 1, 1], found [32, 128, 1])" in \
        str(err.value)
    assert conv.summary.layout == om.IMAGENET


def test_a_key_the_official_model_does_not_have_is_refused(files):
    def extra(state):
        state["block.0.attn.gate.weight"] = torch.zeros(3)
    with pytest.raises(OfficialCheckpointError,
                       match=r"keys the official model does not have: "
                             r"block.0.attn.gate.weight \[3\]"):
        convert(_edit(files["cifar-timm"], extra))


def test_non_finite_weights_are_named(files):
    def poison(state):
        state["block.0.mlp.fc1_linear.weight"][0, :2] = float("nan")
    with pytest.raises(OfficialCheckpointError,
                       match=r"'block.0.mlp.fc1_linear.weight' holds 2 NaN values out of 4096"):
        convert(_edit(files["cifar-timm"], poison))


# -- what the weights do not say ---------------------------------------------------------------

@pytest.mark.parametrize("name, given, flag", [
    ("cifar-bare", {"time_steps": 4, "img_size": 16}, "--num-heads"),
    ("cifar-bare", {"num_heads": 4, "img_size": 16}, "--time-steps"),
    ("cifar-bare", {"num_heads": 4, "time_steps": 4}, "--img-size"),
    ("imagenet-timm", {}, "--num-heads"),
    ("dvs-bare", {"num_heads": 8}, "--time-steps"),
])
def test_what_neither_file_nor_flags_say_is_asked_for_by_flag(files, name, given, flag):
    with pytest.raises(OfficialCheckpointError) as err:
        convert(files[name], **given)
    assert f"pass {flag} with the value the model was trained with" in str(err.value)
    assert err.value.option == flag[2:].replace("-", "_")


def test_values_come_from_flags_then_args_then_the_official_code(files):
    cifar = convert(files["cifar-timm"]).summary.settings
    assert (cifar.num_heads.value, cifar.num_heads.origin) == (4, "args.num_heads")
    assert (cifar.time_steps.value, cifar.time_steps.origin) == (4, "args.time_step")
    assert (cifar.img_size.value, cifar.img_size.origin) == (16, "args.img_size")
    flagged = convert(files["cifar-timm"], num_heads=8, time_steps=2).summary.settings
    assert (flagged.num_heads.value, flagged.num_heads.origin) == \
        (8, "--num-heads; args.num_heads says 4")
    assert flagged.time_steps.value == 2
    imagenet = convert(files["imagenet-timm"], num_heads=2).summary.settings
    assert (imagenet.time_steps.value, imagenet.time_steps.origin) == \
        (4, "imagenet/model.py, which fixes it")
    dvs = convert(files["dvs"], num_heads=8).summary
    assert (dvs.settings.time_steps.value, dvs.settings.time_steps.origin) == (8, "args.T")
    assert (dvs.settings.img_size.value, dvs.settings.img_size.origin) == \
        (128, "cifar10dvs/model.py, which fixes it")
    assert "image size        128 (from cifar10dvs/model.py, which fixes it)" in dvs.lines()


def test_heads_that_do_not_divide_the_embedding_name_the_flag(files):
    with pytest.raises(OfficialCheckpointError, match="5 heads .* do not divide .* 32.*"
                                                      "--num-heads"):
        convert(files["cifar-timm"], num_heads=5)


def test_timm_input_size_gives_the_image_size(tmp_path):
    args = om.train_args(CIFAR, img_size=None, input_size=[3, 16, 16])
    conv = convert(om.save_timm(weights(CIFAR), tmp_path / "x.pth.tar", args=args))
    assert conv.summary.settings.img_size.origin == "args.input_size"
    assert conv.checkpoint.config.img_size == 16


# -- normalisation, data set, event counts -----------------------------------------------------

def test_normalisation_from_flags_args_timm_default_or_recipe(files, tmp_path):
    def norm(conv):
        s = conv.summary.settings
        return s.mean.value, s.mean.origin, conv.checkpoint.config.input_std

    assert norm(convert(files["cifar-timm"])) == \
        ((0.4914, 0.4822, 0.4465), "args.mean", (0.2470, 0.2435, 0.2616))
    assert norm(convert(files["cifar-timm"], mean=[0.5] * 3, std=[0.25] * 3)) == \
        ((0.5,) * 3, "--mean", (0.25,) * 3)
    bare = convert(files["cifar-bare"], num_heads=4, time_steps=4, img_size=16)
    assert norm(bare) == ((0.4914, 0.4822, 0.4465), "the official recipe of official-cifar10",
                          (0.2470, 0.2435, 0.2616))
    # timm's resolve_data_config falls back to the model's default_cfg (ImageNet's)
    args = om.train_args(CIFAR, mean=None, std=None)
    unset = convert(om.save_timm(weights(CIFAR), tmp_path / "u.pth.tar", args=args))
    assert norm(unset) == ((0.485, 0.456, 0.406), "timm's default: args.mean is None",
                           (0.229, 0.224, 0.225))
    assert unset.checkpoint.normalisation == {"mean": [0.485, 0.456, 0.406],
                                              "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("options, needle", [
    ({"mean": [0.5] * 3}, "--mean and --std go together"),
    ({"mean": [0.5] * 2, "std": [0.2] * 2}, "has 2 values for 3 input channels"),
    ({"mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}, "--std must be positive"),
    ({"max_count": 15}, "drop --max-count"),
    ({"dataset": "mnist"}, "has 10 classes"),
    ({"dataset": "imagenet21k"}, "unknown data set 'imagenet21k'"),
    ({"layout": "official-cifar100"}, "unknown layout"),
])
def test_option_values_that_cannot_apply_are_refused(files, options, needle):
    path = files["cifar-timm"]
    if options.get("dataset") == "mnist":   # 10 classes would fit: make the head 100 wide
        path = om.save_timm(weights(om.Spec(om.CIFAR10, num_classes=100)), path)
        needle = "the data set mnist (from --dataset) has 10 classes and the model's head 100"
    with pytest.raises(OfficialCheckpointError) as err:
        convert(path, **options)
    assert needle in str(err.value)


def test_event_counts_take_no_normalisation_and_a_count_bound(files):
    conv = convert(files["dvs"], num_heads=8, img_size=32)
    cfg = conv.checkpoint.config
    assert cfg.event_input and cfg.event_max_count == 255
    assert cfg.input_mean is None and conv.summary.settings.dataset.value == "cifar10-dvs"
    assert "max event count   255 (from the default)" in "\n".join(conv.summary.lines())
    assert convert(files["dvs"], num_heads=8, max_count=15).checkpoint.config \
        .event_max_count == 15
    with pytest.raises(OfficialCheckpointError, match="--mean/--std do not apply"):
        convert(files["dvs"], num_heads=8, mean=[0.5, 0.5], std=[1.0, 1.0])
    with pytest.raises(OfficialCheckpointError, match="--max-count must be an integer"):
        convert(files["dvs"], num_heads=8, max_count=0)


def test_data_set_and_class_names(files, tmp_path):
    cifar = convert(files["cifar-timm"]).checkpoint
    assert cifar.dataset == "cifar10" and cifar.class_names[:2] == ["airplane", "automobile"]
    hundred = om.Spec(om.CIFAR10, num_classes=100)
    bare = convert(om.save_bare(weights(hundred), tmp_path / "c100.pth"), num_heads=4,
                   time_steps=4, img_size=16).checkpoint
    assert bare.dataset == "cifar100" and bare.class_names[99] == "class_99"
    imagenet = convert(files["imagenet-timm"], num_heads=2).checkpoint
    assert imagenet.dataset == "imagefolder" and imagenet.class_names[0] == "class_0"


# -- the written checkpoint --------------------------------------------------------------------

def test_the_saved_checkpoint_loads_weights_only_and_records_its_origin(files, tmp_path):
    conv = convert(files["dvs"], num_heads=8, img_size=32, max_count=31)
    out = save_conversion(conv, tmp_path / "dvs.pth")
    ckpt = load_checkpoint(out)   # torch.load(weights_only=True) after the zip checks
    assert ckpt.config == conv.checkpoint.config
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in conv.checkpoint.state_dict.items())
    origin = ckpt.train_args["converted_from"]
    assert origin["layout"] == om.CIFAR10DVS and origin["settings"]["max_count"] == \
        {"value": 31, "from": "--max-count"}
    assert ckpt.train_args["official_args"]["T"] == 8
    assert ckpt.train_args["official_info"] == {"epoch": 95, "max_test_acc1": 80.9}


def test_an_official_file_converted_twice_gives_the_same_checkpoint(files, tmp_path):
    a = save_conversion(convert(files["cifar-timm"]), tmp_path / "a.pth")
    b = save_conversion(convert(files["cifar-timm"]), tmp_path / "b.pth")
    sa, sb = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
