"""What some tests need that a machine may lack, and the one rule for when it is missing.

- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package (the IDX files in
  ``spikformer_neuro.data.mnist.FASHION_MNIST_DIR``). Tests that read it carry
  ``@pytest.mark.needs_fashion_mnist`` (tests/conftest.py checks the marker).
- The real norse, sinabs and spikingjelly (``requirements-interop.lock``), installed by
  scripts/setup-venv.sh into ``.venv/interop``, a folder of their own outside the main
  environment (sinabs' declared pins clash with ours); :func:`import_interop` puts it on
  ``sys.path`` for the tests that compare against them.
- Ray (``requirements-cluster.lock``, the optional ``[cluster]`` extra) for the tests of
  ``spikeform-run --cluster ray``: :func:`require_ray`.

The rule (:func:`missing`): ``make test`` on a machine without one of them skips the tests
that need it, with a reason that says how to install it; with ``SPIKEFORM_REQUIRE_TEST_DEPS=1``
in the environment (``.ci/run`` sets it) the same tests fail instead, so CI never skips them
silently.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Dict, NoReturn, Optional

import pytest

from support.paths import ROOT

REQUIRE_ENV = "SPIKEFORM_REQUIRE_TEST_DEPS"
INTEROP_ENV = "SPIKEFORM_INTEROP_DIR"        # overrides <venv>/interop
INTEROP_LOCK = ROOT / "requirements-interop.lock"
INSTALL_INTEROP = ("run `make venv` (scripts/setup-venv.sh installs requirements-interop.lock "
                   "into .venv/interop), or `.venv/bin/python -m pip install --no-deps "
                   "--target .venv/interop -r requirements-interop.lock`")
INSTALL_FASHION = "apt-get install dataset-fashion-mnist"
CLUSTER_LOCK = ROOT / "requirements-cluster.lock"
INSTALL_CLUSTER = ("install the [cluster] extra: `.venv/bin/python -m pip install "
                   "-c requirements.lock -r requirements-cluster.lock`")


def required() -> bool:
    """Whether missing test requirements fail (CI) rather than skip (``make test``)."""
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0")


def missing(reason: str, module_level: bool = False) -> NoReturn:
    """Skip the test (or, with ``module_level``, the whole module) for ``reason``; under
    ``SPIKEFORM_REQUIRE_TEST_DEPS=1`` fail it instead."""
    if required():
        pytest.fail(f"{reason} [{REQUIRE_ENV}=1: required here, so this fails instead of "
                    "skipping]", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


# -- Fashion-MNIST ---------------------------------------------------------------------------

def fashion_mnist_problem() -> Optional[str]:
    """Why the Fashion-MNIST files cannot be read, or None when all four are there."""
    from spikformer_neuro.data import mnist

    folder = Path(mnist.FASHION_MNIST_DIR)   # read at call time: tests may point it elsewhere
    names = [name for pair in mnist.FILES.values() for name in pair]
    absent = [name for name in names
              if not any((folder / f).is_file() for f in (name, f"{name}.gz"))]
    if not absent:
        return None
    return (f"needs Fashion-MNIST, which is not installed ({', '.join(absent)}[.gz] not in "
            f"{folder}): install it with `{INSTALL_FASHION}`")


def require_fashion_mnist() -> None:
    problem = fashion_mnist_problem()
    if problem:
        missing(problem)


# -- the real interop libraries --------------------------------------------------------------

def lock_pins(lock: Path) -> Dict[str, str]:
    """``{distribution: version}`` from a lock file (extras such as ``ray[client]`` dropped)."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[name.split("[", 1)[0].lower()] = version
    return pins


def interop_pins() -> Dict[str, str]:
    """``{distribution: version}`` from requirements-interop.lock."""
    return lock_pins(INTEROP_LOCK)


def interop_dir() -> Path:
    return Path(os.environ.get(INTEROP_ENV) or Path(sys.prefix) / "interop")


def import_interop(module: str, distribution: Optional[str] = None):
    """Import the real library ``module`` at the version requirements-interop.lock pins,
    from the interop folder (appended to ``sys.path``, so the main environment's packages
    -- nir, nirtorch, torch -- are the ones it runs on). Skips the calling test module with
    the install command when it is not installed (fails under SPIKEFORM_REQUIRE_TEST_DEPS=1)."""
    from importlib import metadata

    dist = (distribution or module).lower()
    pin = interop_pins()[dist]
    folder = interop_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
        importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module)
        version = metadata.version(dist)
    except ImportError as e:       # includes PackageNotFoundError
        missing(f"needs {dist}=={pin}, which is not installed ({type(e).__name__}: {e}; "
                f"looked in {folder} and the environment): {INSTALL_INTEROP}",
                module_level=True)
    if version != pin:
        missing(f"needs {dist}=={pin}, found {dist} {version} at {mod.__file__}: "
                f"{INSTALL_INTEROP}", module_level=True)
    return mod


# -- Ray (the [cluster] extra) ---------------------------------------------------------------

def require_ray():
    """The ``ray`` module at the version requirements-cluster.lock pins; skips the calling
    test (fails under SPIKEFORM_REQUIRE_TEST_DEPS=1) with the install command otherwise."""
    pin = lock_pins(CLUSTER_LOCK)["ray"]
    try:
        import ray
    except ImportError as e:
        missing(f"needs ray=={pin}, which is not installed ({type(e).__name__}: {e}): "
                f"{INSTALL_CLUSTER}")
    if ray.__version__ != pin:
        missing(f"needs ray=={pin}, found ray {ray.__version__} at {ray.__file__}: "
                f"{INSTALL_CLUSTER}")
    return ray
