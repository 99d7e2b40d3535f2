"""spikeform-report --device: where the reference executor and the float model run."""
import json

import pytest
import torch

from spikeform_cli.report import main
from support.cli import call, refused


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_any_work(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "rep"
    proc = call(capsys, main, digits_ckpt, "--device", "cuda", "-o", out, "-q")
    refused(proc, "spikeform-report", "--device 'cuda' was asked for",
            "torch.cuda.is_available() is False", "use --device 'cpu'")
    assert not out.exists()


def test_unknown_device_is_refused(digits_ckpt, tmp_path, capsys):
    proc = call(capsys, main, digits_ckpt, "--device", "tpu", "-o", tmp_path / "rep", "-q")
    refused(proc, "spikeform-report", "--device 'tpu' is not 'cpu', 'cuda' or 'cuda:N'")


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_the_report_is_the_same_on_every_device(digits_ckpt, tmp_path, capsys, device):
    """The reference's integers do not depend on the device: nor do its accuracy, rates and
    energy (compared with the CPU run; on a machine without CUDA the CPU run is checked
    against itself through --device cpu, the default made explicit)."""
    reports = {}
    for dev in ("cpu", device):
        out = tmp_path / f"rep-{dev}"
        proc = call(capsys, main, digits_ckpt, "--device", dev, "--samples", "8",
                    "--calibration-samples", "32", "-o", out, "-q")
        assert proc.returncode == 0, proc.stderr
        reports[dev] = json.loads((out / "report.json").read_text())
    cpu, other = reports["cpu"], reports[device]
    assert cpu["accuracy"]["reference"] == other["accuracy"]["reference"]
    assert cpu["energy"]["reference"] == other["energy"]["reference"]
    def reference_side(report):   # what the reference executor alone decides, per layer
        return {name: (layer["rate_reference"], layer.get("membrane"))
                for name, layer in report["activity"]["layers"].items()}

    assert reference_side(cpu) == reference_side(other)
    assert sum(rate > 0 for rate, _ in reference_side(cpu).values()) > 10


def test_compile_device_is_checked_before_any_work(tmp_path, capsys):
    """spikeform-compile --device: refused before anything is written when there is no such
    device, and when nothing would run on it."""
    import torch

    from spikeform_cli.compile import main as compile_main
    from support.cli import call, refused
    from support.paths import DIGITS_CKPT

    if not torch.cuda.is_available():
        refused(call(capsys, compile_main, DIGITS_CKPT, "--target", "reference", "--device",
                     "cuda", "-o", tmp_path / "a"), "spikeform-compile", "--device 'cuda'",
                "no usable CUDA GPU")
        assert not (tmp_path / "a").exists()
    refused(call(capsys, compile_main, DIGITS_CKPT, "--no-verify", "--device", "cuda", "-o",
                 tmp_path / "b"), "spikeform-compile", "--no-verify runs none: drop --device")
