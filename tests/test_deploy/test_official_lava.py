"""A checkpoint of the official Spikformer code, at the paper's CIFAR-10 size, compiled
directly (`spikeform-compile model_best.pth.tar --target lava-sim`) and run in Lava: every
spike of every LIF population and every logit equal to the integer reference executor.

The network: official-cifar10 layout (cifar10/model.py names and shapes), D = 384, depth 4,
12 heads, 32x32 images (8x8 = 64 tokens), T = 4 -- cifar10 4-384 -- with random weights and
BatchNorm statistics (tests/support/official_models.py), saved as timm's CheckpointSaver
writes it, with the training arguments that give heads, T and image size. Three images on the
8-bit grid, streamed through one Lava run (about 20 s on 2 cores); every layer is checked to
fire, or the comparison would prove nothing.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from spikeform_cli.compile import main as compile_main
from support import official_models as om
from support.cli import call

pytestmark = pytest.mark.slow

SPEC = om.Spec(om.CIFAR10, embed_dim=384, depth=4, num_heads=12, img_size=32, time_steps=4)


def test_official_cifar10_4_384_runs_in_lava_equal_to_the_reference(tmp_path, capsys):
    path = om.save_timm(om.build_official(SPEC, seed=0, neuron=om.no_neuron),
                        tmp_path / "model_best.pth.tar")
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32)).astype(np.float32) / 255
    np.save(tmp_path / "x.npy", images)
    proc = call(capsys, compile_main, path, "--target", "lava-sim", "--data", tmp_path / "x.npy",
                "--samples", "3", "-o", tmp_path / "art", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["source"]["kind"] == "official"
    assert report["model"] == "official-cifar10-4-384" and report["samples"] == 3
    settings = report["source"]["conversion"]["settings"]
    assert [settings[k]["value"] for k in ("num_heads", "time_steps", "img_size")] == [12, 4, 32]
    # 5 stem LIFs, 7 per block: every one fires, none saturates
    layers = report["layers"]
    assert len(layers) == 5 + 7 * SPEC.depth
    silent = {n: i["rate_reference"] for n, i in layers.items()
              if not 0 < i["rate_reference"] < 1}
    assert silent == {}
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["compared_with"] == "reference" and report["lava"]["samples"] == 3
    assert report["lava"]["spikes_compared"] > 10_000_000   # every LIF, every step, 3 samples
