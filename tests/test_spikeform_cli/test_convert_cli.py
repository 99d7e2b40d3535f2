"""`spikeform-convert` and `spikeform-compile` on checkpoints of the official Spikformer code:
the conversion summary, refusals with one line and exit 2 (code in the file, spikingjelly
2.x, a missing value, flags for a source that does not take them, an output that is not ours
to overwrite), and compiling an official file directly equals compiling its conversion.

Weights only (support/official_models.py with stand-in neurons): no spikingjelly needed."""
from __future__ import annotations

import argparse
import json
import os
import shlex

import numpy as np
import pytest
import torch

from spikformer_neuro.checkpoint import load_checkpoint
from spikeform_cli.compile import main as compile_main
from spikeform_cli.convert import main as convert_main
from support import official_models as om
from support.cli import call, refused
from support.paths import DIGITS_CKPT

SPEC = om.Spec(om.CIFAR10, embed_dim=32, depth=1, num_heads=4, img_size=16)


class RunsShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture
def official(tmp_path):
    """An official-cifar10 timm checkpoint (random weights)."""
    return om.save_timm(om.build_official(SPEC, 0, neuron=om.no_neuron),
                        tmp_path / "model_best.pth.tar")


def convert(capsys, *argv):
    return call(capsys, convert_main, *argv)


def compile_(capsys, *argv):
    return call(capsys, compile_main, *argv, "-q")


# -- spikeform-convert ------------------------------------------------------------------------

def test_convert_writes_our_checkpoint_and_says_where_each_value_came_from(official, tmp_path,
                                                                          capsys):
    out = tmp_path / "model.pth"
    proc = convert(capsys, official, "-o", out)
    assert proc.returncode == 0, proc.stderr
    for needle in ("layout            official-cifar10 (detected from its keys)",
                   "heads             4 (from args.num_heads)",
                   "time steps        4 (from args.time_step)",
                   "image size        16 (from args.img_size)",
                   "normalisation     mean [0.4914, 0.4822, 0.4465] (from args.mean)",
                   "dropped keys      4, unused by the forward pass: block.0.norm1.weight",
                   f"wrote             {out}"):
        assert needle in proc.stdout, needle
    ckpt = load_checkpoint(out)
    assert ckpt.config.name == "official-cifar10-1-32" and ckpt.dataset == "cifar10"
    # an earlier conversion is ours to replace; -q prints only the path
    again = convert(capsys, official, "-o", out, "--time-steps", "2", "-q")
    assert again.returncode == 0 and again.stdout.strip() == str(out)
    assert load_checkpoint(out).config.time_steps == 2


def test_a_missing_value_names_its_flag(tmp_path, capsys):
    bare = om.save_bare(om.build_official(SPEC, 0, neuron=om.no_neuron), tmp_path / "w.pth")
    out = tmp_path / "model.pth"
    refused(convert(capsys, bare, "-o", out, "--time-steps", "4", "--img-size", "16"),
            "spikeform-convert", "pass --num-heads", str(bare))
    assert not out.exists()
    proc = convert(capsys, bare, "-o", out, "--num-heads", "4", "--time-steps", "4",
                   "--img-size", "16")
    assert proc.returncode == 0 and "heads             4 (from --num-heads)" in proc.stdout


def test_code_in_the_file_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = om.save_timm(om.build_official(SPEC, 0, neuron=om.no_neuron),
                        tmp_path / "evil.pth.tar",
                        args=argparse.Namespace(num_heads=4, hook=RunsShellCommand(marker)))
    refused(convert(capsys, path, "-o", tmp_path / "m.pth"), "spikeform-convert",
            "refused", "'posix.system'", "Nothing of it was run")
    refused(compile_(capsys, path, "--target", "reference", "--no-verify",
                     "--calibration-samples", "0", "-o", tmp_path / "art"),
            "spikeform-compile", "'posix.system'")
    assert not marker.exists() and not (tmp_path / "m.pth").exists()


def test_spikingjelly2_and_foreign_files_are_refused(tmp_path, capsys):
    torch.save({"patch_embed.stages.0.conv_bn.block.0.weight": torch.zeros(4, 3, 3, 3)},
               tmp_path / "sj2.pth")
    refused(convert(capsys, tmp_path / "sj2.pth", "-o", tmp_path / "m.pth"),
            "spikeform-convert", "spikingjelly 2", "MaxPool -> LIF", "approximately")
    refused(compile_(capsys, tmp_path / "sj2.pth", "--target", "reference", "--no-verify",
                     "-o", tmp_path / "art"), "spikeform-compile", "spikingjelly 2")
    refused(convert(capsys, DIGITS_CKPT, "-o", tmp_path / "m.pth"), "spikeform-convert",
            "already a spikformer-neuro checkpoint")


def test_convert_refuses_to_overwrite_what_is_not_its_output(official, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused(convert(capsys, official, "-o", notes), "spikeform-convert",
            "exists and is not a spikformer-neuro checkpoint")
    assert notes.read_text() == "mine"
    refused(convert(capsys, official, "-o", official), "spikeform-convert", "is the source file")
    refused(convert(capsys, official, "-o", tmp_path), "spikeform-convert", "is a directory")
    refused(convert(capsys, official, "-o", tmp_path / "m.pth", "--mean", "0.5"),
            "spikeform-convert", "--mean and --std go together")


# -- spikeform-compile ------------------------------------------------------------------------

def test_compiling_the_official_file_equals_compiling_its_conversion(official, tmp_path, capsys):
    converted = tmp_path / "model.pth"
    assert convert(capsys, official, "-o", converted, "-q").returncode == 0
    flags = ("--target", "reference", "--no-verify", "--calibration-samples", "0")
    direct = compile_(capsys, official, *flags, "-o", tmp_path / "a", "--report",
                      tmp_path / "a.json")
    assert direct.returncode == 0, direct.stderr
    assert "converted in memory from the official Spikformer code:" in direct.stdout
    assert "heads             4 (from args.num_heads)" in direct.stdout
    assert compile_(capsys, converted, *flags, "-o", tmp_path / "b").returncode == 0
    for name in ("graph.json", "tensors.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["source"]["kind"] == "official" and report["checkpoint"] == str(official)
    assert report["source"]["conversion"]["layout"] == om.CIFAR10
    assert report["model"] == "official-cifar10-1-32"


def test_compile_verifies_an_official_file_on_user_data(official, tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16)).astype(np.float32) / 255
    np.save(tmp_path / "x.npy", x)
    proc = compile_(capsys, official, "--target", "reference", "--data", tmp_path / "x.npy",
                    "--num-heads", "2", "--json", "-o", tmp_path / "art")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["samples"] == 4 and report["float_vs_reference"] is not None
    assert report["source"]["conversion"]["settings"]["num_heads"] == \
        {"value": 2, "from": "--num-heads; args.num_heads says 4"}


@pytest.mark.parametrize("source, argv, needles", [
    ("ours", ["--num-heads", "4"],
     ["--num-heads only apply to checkpoints of the official Spikformer code",
      "is a spikeform-train checkpoint"]),
    ("ours", ["--time-steps", "4", "--ema"],
     ["--time-steps only apply to NIR files and checkpoints of the official Spikformer code",
      "--ema only apply to checkpoints of the official"]),
    ("official", ["--nir-convention", "snntorch"],
     ["--nir-convention only apply to NIR files", "is a checkpoint of the official"]),
    ("nir", ["--img-size", "16"],
     ["--img-size only applies to checkpoints of the official Spikformer code",
      "is a NIR file"]),
])
def test_flags_for_a_source_that_does_not_take_them(official, tmp_path, capsys, source, argv,
                                                    needles):
    path = {"ours": DIGITS_CKPT, "official": official, "nir": tmp_path / "g.nir"}[source]
    if source == "nir":
        proc = compile_(capsys, DIGITS_CKPT, "--target", "nir", "-o", path)
        assert proc.returncode == 0, proc.stderr
    refused(compile_(capsys, path, *argv, "--target", "reference", "--no-verify",
                     "-o", tmp_path / "art"), "spikeform-compile", *needles)
    assert not (tmp_path / "art").exists()


def test_compile_takes_an_official_cifar10dvs_file_with_its_count_bound(tmp_path, capsys):
    """Event-count frames (counts up to --max-count) through conversion, quantization and
    the reference executor."""
    spec = om.Spec(om.CIFAR10DVS, embed_dim=32, depth=1, num_heads=8, img_size=32,
                   in_channels=2, time_steps=4)
    path = om.save_dvs(om.build_official(spec, 0, neuron=om.no_neuron), tmp_path / "dvs.pth")
    np.save(tmp_path / "x.npy", om.event_counts(spec, 3, 7).numpy())
    proc = compile_(capsys, path, "--num-heads", "8", "--img-size", "32", "--max-count", "7",
                    "--target", "reference", "--data", tmp_path / "x.npy", "--json",
                    "-o", tmp_path / "art")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["samples"] == 3
    assert report["source"]["conversion"]["settings"]["max_count"] == \
        {"value": 7, "from": "--max-count"}
    assert report["source"]["conversion"]["settings"]["time_steps"] == \
        {"value": 4, "from": "args.T"}
