"""`spikeform-compile` on the shipped spike-driven digits checkpoint: Lava equals the reference
on every spike and logit, and report.json's ``loihi`` says that nothing but the input
injection and the output reading would leave the neuro-cores (a Spikformer's attention and
residual joins would)."""
import json

import pytest

from spikeform_cli.compile import main

from support.cli import call
from support.paths import DIGITS_CKPT, SDT_DIGITS_CKPT


def compile_main(tmp, capsys, *args, model):
    return call(capsys, main, model, *args, "-q", "-o", tmp / "art")


@pytest.mark.lava
def test_the_spike_driven_network_runs_on_stock_processes_equal_to_the_reference(tmp_path,
                                                                                 capsys):
    proc = compile_main(tmp_path, capsys, "--target", "lava-sim", "--samples", "6",
                        model=SDT_DIGITS_CKPT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert report["lava"]["spikes_compared"] > 0
    loihi = report["loihi"]
    assert loihi["inside_network"] == {}
    assert loihi["host_processes"] == {"source": 1, "readout": 1}
    assert set(loihi["edges"]) == {"source", "readout"}
    assert set(loihi["neuro_core_processes"]) == {"conv", "lif", "lif_reset"}
    assert loihi["relay_neurons"] > 0            # stock relays instead of DelayedSum lines


def test_a_spikformer_report_names_its_host_processes(tmp_path, capsys):
    proc = compile_main(tmp_path, capsys, "--target", "reference", "--samples", "4",
                        model=DIGITS_CKPT)
    assert proc.returncode == 0, proc.stderr
    loihi = json.loads((tmp_path / "art" / "report.json").read_text())["loihi"]
    assert loihi["inside_network"]["spiking_attention"] == 1
    assert loihi["inside_network"]["delayed_sum"] >= 1 and loihi["relay_neurons"] == 0
    assert "host CPU inside the network: 3 delayed_sum, 1 spiking_attention" in proc.stdout
