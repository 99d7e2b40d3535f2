"""Shared fixtures and markers.

Layout: one test package per product package (test_loihi_numerics, test_spikformer_neuro,
test_compiler, test_deploy, test_spikeform_cli, test_benchmarks); shared helpers live in
``support`` (paths, hand-built graphs, the registry's consumer list, test-only Lava
replicas). Every test that starts Lava or imports it is marked ``lava`` (all of test_deploy,
plus the Lava cases elsewhere), so ``pytest -m "not lava"`` is the fast loop.

Requirements a machine may lack (support/requirements.py has the rule): a test marked
``needs_fashion_mnist`` skips when Debian's dataset-fashion-mnist is not installed, and the
norse/sinabs interop tests skip when requirements-interop.lock is not installed, each with a
reason naming the install command; ``SPIKEFORM_REQUIRE_TEST_DEPS=1`` (set by .ci/run) turns
those skips into failures.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from support.paths import DIGITS_CKPT
from support.requirements import require_fashion_mnist

_LAVA_DIRS = ("test_deploy",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(part in _LAVA_DIRS for part in Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.lava)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture: skip (or, under SPIKEFORM_REQUIRE_TEST_DEPS=1, fail) a test whose
    requirement is missing."""
    if item.get_closest_marker("needs_fashion_mnist"):
        require_fashion_mnist()


@pytest.fixture(scope="session")
def digits_ckpt() -> Path:
    """The shipped digits checkpoint (QAT, 8x8 digits)."""
    return DIGITS_CKPT


@pytest.fixture(scope="session")
def micro_quantized():
    """test-micro (8x8 input, D = 16, 2 heads, 4x4 tokens, T = 2) with firing weights, after the
    float passes and quantization, and a batch of 6 images: (quantized graph, images)."""
    import torch

    from compiler.frontend import model_to_ir
    from compiler.passes import float_passes
    from compiler.passes.quantize import quantize
    from spikformer_neuro.testing import firing_model

    graph = quantize(float_passes(model_to_ir(firing_model("test-micro"))))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return graph, x
