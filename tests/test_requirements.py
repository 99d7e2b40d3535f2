"""The rule for tests whose requirements a machine may lack (tests/support/requirements.py):
skipped with the install command under ``make test``, failed under
``SPIKEFORM_REQUIRE_TEST_DEPS=1`` (.ci/run). Checked both ways without uninstalling anything:
the Fashion-MNIST loader is pointed at an empty folder, the interop folder at a missing one.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import support.requirements as req
from support.paths import ROOT


def outcome(fn, *args, **kwargs):
    """("skip" | "fail", message) of a call that must not return."""
    try:
        fn(*args, **kwargs)
    except pytest.skip.Exception as e:
        return "skip", str(e)
    except pytest.fail.Exception as e:
        return "fail", str(e)
    raise AssertionError(f"{fn.__name__} returned")


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    from spikformer_neuro.data import mnist

    monkeypatch.setattr(mnist, "FASHION_MNIST_DIR", tmp_path)
    return tmp_path


def test_missing_fashion_mnist_skips_with_the_install_command(no_fashion, monkeypatch):
    monkeypatch.delenv(req.REQUIRE_ENV, raising=False)
    kind, message = outcome(req.require_fashion_mnist)
    assert kind == "skip"
    assert "apt-get install dataset-fashion-mnist" in message and str(no_fashion) in message
    assert "t10k-images-idx3-ubyte" in message


@pytest.mark.parametrize("value", ["1", "true"])
def test_missing_fashion_mnist_fails_when_required(no_fashion, monkeypatch, value):
    monkeypatch.setenv(req.REQUIRE_ENV, value)
    kind, message = outcome(req.require_fashion_mnist)
    assert kind == "fail"
    assert "apt-get install dataset-fashion-mnist" in message and req.REQUIRE_ENV in message


def test_require_env_zero_or_empty_means_skip(monkeypatch):
    for value in ("0", "", " "):
        monkeypatch.setenv(req.REQUIRE_ENV, value)
        assert not req.required()


@pytest.mark.needs_fashion_mnist
def test_installed_fashion_mnist_is_found():
    assert req.fashion_mnist_problem() is None


def test_missing_interop_library_skips_then_fails_when_required(tmp_path, monkeypatch):
    monkeypatch.setenv(req.INTEROP_ENV, str(tmp_path / "absent"))
    monkeypatch.setattr(req, "interop_pins", lambda: {"no-such-nir-lib": "1.2.3"})
    monkeypatch.delenv(req.REQUIRE_ENV, raising=False)
    kind, message = outcome(req.import_interop, "no_such_nir_lib", "no-such-nir-lib")
    assert kind == "skip"
    assert "no-such-nir-lib==1.2.3" in message and "requirements-interop.lock" in message
    assert "make venv" in message and str(tmp_path / "absent") in message
    monkeypatch.setenv(req.REQUIRE_ENV, "1")
    assert outcome(req.import_interop, "no_such_nir_lib", "no-such-nir-lib")[0] == "fail"


def test_another_version_than_the_pin_is_not_the_library(monkeypatch):
    monkeypatch.setattr(req, "interop_pins", lambda: {"pytest": "0.0.1"})
    monkeypatch.delenv(req.REQUIRE_ENV, raising=False)
    kind, message = outcome(req.import_interop, "pytest")
    assert kind == "skip" and f"found pytest {pytest.__version__}" in message


def test_the_lock_pins_the_interop_libraries_exactly():
    assert req.interop_pins() == {"norse": "1.1.0", "sinabs": "3.1.3", "pbr": "7.1.3",
                                  "spikingjelly": "0.0.0.0.12"}


# -- end to end: a real pytest run, both ways --------------------------------------------------

def run_pytest(tmp_path, args, require: bool, extra_env=None):
    """pytest in a subprocess; ``hide_fashion`` (a -p plugin) points the loader elsewhere."""
    (tmp_path / "hide_fashion.py").write_text(
        "from pathlib import Path\n"
        "import spikformer_neuro.data.mnist as m\n"
        f"m.FASHION_MNIST_DIR = Path({str(tmp_path / 'empty')!r})\n")
    env = {k: v for k, v in os.environ.items() if k != req.REQUIRE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path),
                                                      env.get("PYTHONPATH", "")]))
    env.update(extra_env or {})
    if require:
        env[req.REQUIRE_ENV] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "hide_fashion",
                           "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_fashion_mnist_test_skips_under_make_test_and_fails_in_ci(tmp_path):
    target = "tests/test_spikformer_neuro/test_data.py::test_fashion_mnist_real"
    local = run_pytest(tmp_path, [target], require=False)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout
    assert "apt-get install dataset-fashion-mnist" in local.stdout
    ci = run_pytest(tmp_path, [target], require=True)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "1 error" in ci.stdout and req.REQUIRE_ENV in ci.stdout


@pytest.mark.slow
def test_interop_tests_skip_under_make_test_and_fail_in_ci(tmp_path):
    """With the interop folder missing (and norse not in the main environment) the norse
    module is skipped whole, naming the install; required, it is a collection error."""
    from importlib.machinery import PathFinder

    elsewhere = [p for p in sys.path if p != str(req.interop_dir())]
    if PathFinder.find_spec("norse", elsewhere) is not None:
        pytest.skip("norse is installed in the main environment too, so hiding the interop "
                    "folder does not make it absent")
    target = "tests/test_compiler/nir/test_norse.py"
    hidden = {req.INTEROP_ENV: str(tmp_path / "absent")}
    local = run_pytest(tmp_path, [target], require=False, extra_env=hidden)
    assert local.returncode in (0, 5), local.stdout + local.stderr   # 5: no test ran
    assert "1 skipped" in local.stdout and "norse==1.1.0" in local.stdout
    assert "requirements-interop.lock" in local.stdout
    ci = run_pytest(tmp_path, [target], require=True, extra_env=hidden)
    assert ci.returncode != 0 and "1 error" in ci.stdout, ci.stdout + ci.stderr
