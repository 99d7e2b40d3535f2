"""spikeform-run --workers N / --cluster ray: the samples spread over worker processes (or Ray
tasks) give exactly one process's results, in order, and every way of stopping leaves no
process and no shared-memory segment behind (tests/support/processes.py watches the tree)."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeform_cli.compile import main as compile_main
from spikeform_cli.run import main as run_main
from support.cli import call, refused
from support.paths import DIGITS_CKPT
from support.processes import Command, subreaper
from support.requirements import require_ray

BIN = Path(sys.executable).parent
PROBE = "blocks.0.attn.q.lif"
SAMPLES = 24
LAVA_STARTED = 40    # two workers' Lava processes (about 34 each) are up


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "digits.compiled"
    assert compile_main([str(DIGITS_CKPT), "--target", "reference", "--no-verify", "-o",
                         str(out), "-q"]) == 0
    return out


def _run(artifact, tmp_path, name, *extra):
    """(results JSON, probe arrays) of one spikeform-run with --probe."""
    out, probes = tmp_path / f"{name}.json", tmp_path / f"{name}.npz"
    assert run_main([str(artifact), "--probe", PROBE, "--probe-out", str(probes),
                     "--out", str(out), "-q", *map(str, extra)]) == 0
    with np.load(probes) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(out.read_text()), arrays


@pytest.fixture(scope="module")
def one_process(artifact, tmp_path_factory):
    return _run(artifact, tmp_path_factory.mktemp("one"), "one", "--samples", SAMPLES)


@pytest.mark.lava
@pytest.mark.parametrize("workers, chunk", [(2, 64), (3, 5)])
def test_workers_give_one_process_results_in_order(artifact, one_process, tmp_path,
                                                   workers, chunk):
    base, base_probes = one_process
    result, probes = _run(artifact, tmp_path, "w", "--samples", SAMPLES, "--workers", workers,
                          "--chunk", chunk)
    assert result["predictions"] == base["predictions"]
    assert result["accuracy"] == base["accuracy"]
    assert probes.keys() == base_probes.keys()
    for name in probes:
        assert probes[name].dtype == base_probes[name].dtype
        assert np.array_equal(probes[name], base_probes[name]), name
    # the same schema; the worker count added, per-worker timing only with several
    assert base["workers"] == 1 and "per_worker" not in base["throughput"]
    assert result["workers"] == workers
    assert list(result) == list(base)
    per_worker = result["throughput"].pop("per_worker")
    assert list(result["throughput"]) == list(base["throughput"])
    bounds = [w["sample_indices"] for w in per_worker]
    assert bounds == [[SAMPLES * i // workers, SAMPLES * (i + 1) // workers]
                      for i in range(workers)]
    assert sum(w["lava_steps"] for w in per_worker) == result["throughput"]["lava_steps"]
    slowest = max(w["lava_run_s"] for w in per_worker)
    assert result["throughput"]["samples_per_s"] == pytest.approx(SAMPLES / slowest)


@pytest.mark.lava
def test_workers_split_this_shard_in_chunks(artifact, one_process, tmp_path):
    """--shard 1/2 of 20 samples is samples 10..19; three workers split those, two at a time."""
    base, base_probes = one_process
    result, probes = _run(artifact, tmp_path, "s", "--samples", 20, "--shard", "1/2",
                          "--workers", 3, "--chunk", 2)
    assert result["sample_indices"] == [10, 20] and result["shard"] == "1/2"
    assert result["predictions"] == base["predictions"][10:20]
    assert [w["sample_indices"] for w in result["throughput"]["per_worker"]] == \
        [[10, 13], [13, 16], [16, 20]]
    assert np.array_equal(probes[PROBE], base_probes[PROBE][:, 10:20])
    assert probes["sample_indices"].tolist() == list(range(10, 20))


@pytest.mark.parametrize("value", ["0", "-2"])
def test_workers_below_one_are_refused(artifact, capsys, value):
    refused(call(capsys, run_main, artifact, "--workers", value), "spikeform-run",
            f"--workers must be >= 1, got {value}")


@pytest.mark.lava
def test_more_workers_than_samples_use_one_per_sample(artifact, capsys):
    proc = call(capsys, run_main, artifact, "--samples", 2, "--workers", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "--workers 5 is more than the 2 samples to run: using 2 worker processes" \
        in proc.stderr
    result = json.loads(proc.stdout)
    assert result["workers"] == 2 and len(result["throughput"]["per_worker"]) == 2


# -- stopping: signals to the command, a worker killed ------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _adopt_orphans():
    with subreaper():
        yield


@pytest.fixture
def command(tmp_path):
    started = []

    def start(*args, **kwargs) -> Command:
        cmd = Command([str(a) for a in args], tmp_path, **kwargs)
        started.append(cmd)
        return cmd

    yield start
    for cmd in started:
        cmd.cleanup()


def _assert_nothing_left(cmd: Command, grace_s: float = 10.0) -> None:
    assert cmd.segments, "no shared-memory segment seen: Lava did not run"
    procs, segments = cmd.leftovers(grace_s=grace_s)
    assert not procs, procs
    assert not segments, f"{len(segments)} of {len(cmd.segments)} segments left"


@pytest.mark.lava
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_stops_every_worker(artifact, command, tmp_path, name):
    signum = getattr(signal, name)
    out = tmp_path / "r.json"
    cmd = command(BIN / "spikeform-run", artifact, "--samples", 360, "--workers", 2,
                  "--out", out, "-q")
    cmd.wait_for(LAVA_STARTED)
    assert len(cmd.children_running("deploy.parallel.worker")) == 2
    os.killpg(cmd.proc.pid, signum)
    code = cmd.wait()
    err = cmd.err()
    assert code == 128 + signum, err[-3000:]
    assert err.strip().splitlines() == [
        f"spikeform-run: interrupted by {name}; the workers and their Lava runtimes were "
        "stopped"], err[-3000:]
    assert not out.exists()
    _assert_nothing_left(cmd, grace_s=5.0)


@pytest.mark.lava
def test_a_killed_worker_is_named_and_the_others_stopped(artifact, command, tmp_path):
    out = tmp_path / "r.json"
    cmd = command(BIN / "spikeform-run", artifact, "--samples", 360, "--workers", 2,
                  "--out", out, "-q")
    cmd.wait_for(LAVA_STARTED)
    worker = [p for p in cmd.children_running("deploy.parallel.worker")
              if "worker-1-(samples-180..359)" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(worker) == 1
    os.kill(worker[0], signal.SIGKILL)
    code = cmd.wait()
    err = cmd.err().strip()
    assert code == 1, err[-3000:]
    assert err.splitlines()[-1] == ("spikeform-run: error: worker 1 (samples 180..359) was "
                                    "killed by SIGKILL; the other workers were stopped")
    assert "Traceback" not in err
    assert not out.exists()
    _assert_nothing_left(cmd)


@pytest.mark.lava
def test_sigkill_of_the_command_takes_its_workers_with_it(artifact, command):
    """Nothing runs in the command: the workers die with it (PR_SET_PDEATHSIG), their Lava
    workers with them, and the workers' resource trackers unlink the segments."""
    cmd = command(BIN / "spikeform-run", artifact, "--samples", 360, "--workers", 2, "-q")
    cmd.wait_for(LAVA_STARTED)
    cmd.proc.send_signal(signal.SIGKILL)
    assert cmd.wait() == -signal.SIGKILL
    _assert_nothing_left(cmd)


# -- Ray ----------------------------------------------------------------------------------------
def test_cluster_without_ray_exits_2_with_the_install_command(artifact, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)    # `import ray` raises ImportError
    err = refused(call(capsys, run_main, artifact, "--cluster", "ray"), "spikeform-run",
                  "--cluster ray: Ray is not installed",
                  "pip install -c requirements.lock -r requirements-cluster.lock")
    assert "[cluster]" in err


@pytest.mark.parametrize("value", ["spark", "ray:", "ray://"])
def test_an_unknown_cluster_is_refused(artifact, capsys, value):
    refused(call(capsys, run_main, artifact, "--cluster", value), "spikeform-run",
            f"--cluster '{value}' is not a cluster", "ray://HOST:PORT")


@pytest.mark.lava
def test_ray_tasks_give_one_process_results(artifact, one_process, tmp_path):
    require_ray()
    base, base_probes = one_process
    result, probes = _run(artifact, tmp_path, "ray", "--samples", SAMPLES, "--cluster", "ray",
                          "--workers", 2, "--chunk", 5)
    assert result["predictions"] == base["predictions"]
    assert result["cluster"] == "ray" and result["workers"] == 2
    assert np.array_equal(probes[PROBE], base_probes[PROBE])
    assert [w["sample_indices"] for w in result["throughput"]["per_worker"]] == [[0, 12],
                                                                                 [12, 24]]


@pytest.mark.lava
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_cancels_the_ray_tasks_and_shuts_ray_down(artifact, command, name):
    """Ctrl-C reaches only the driver (Ray blocks SIGINT in its processes); a SIGTERM to the
    group must not take the raylet down under the running tasks either (SIGHUP: the same)."""
    require_ray()
    signum = getattr(signal, name)
    cmd = command(BIN / "spikeform-run", artifact, "--samples", 360, "--cluster", "ray",
                  "--workers", 2, "-q")
    cmd.wait_for(LAVA_STARTED, settle_s=1.0)
    os.killpg(cmd.proc.pid, signum)
    code = cmd.wait()
    err = cmd.err()
    assert code == 128 + signum, err[-3000:]
    assert err.strip().splitlines() == [
        f"spikeform-run: interrupted by {name}; the Ray tasks were cancelled and the local "
        "Ray instance shut down"], err[-3000:]
    _assert_nothing_left(cmd)


# -- spikeform-compile --workers: the Lava verification over local processes ---------------------

@pytest.mark.lava
def test_compile_verification_on_workers_equals_one_process(tmp_path, capsys):
    """The same report: every spike and logit compared with the reference (0 mismatches), the
    same Lava predictions, whether one process or two verified them."""
    reports = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        proc = call(capsys, compile_main, DIGITS_CKPT, "--samples", 12, "--workers", workers,
                    "-o", out, "-q")
        assert proc.returncode == 0, proc.stderr
        reports[workers] = json.loads((out / "report.json").read_text())
    one, two = reports[1], reports[2]
    assert two["mismatches"] == one["mismatches"] == {"spikes": 0, "predictions": 0, "logits": 0}
    assert two["lava"]["spikes_compared"] == one["lava"]["spikes_compared"] > 0
    assert two["accuracy"] == one["accuracy"] and two["samples"] == 12
    for name in ("graph.json", "tensors.bin"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


@pytest.mark.parametrize("argv, needle", [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--workers", "2", "--target", "reference"], "--target reference runs none"),
    (["--workers", "2", "--no-verify"], "--no-verify runs none"),
])
def test_compile_workers_refusals(tmp_path, capsys, argv, needle):
    refused(call(capsys, compile_main, DIGITS_CKPT, "-o", tmp_path / "x", *argv),
            "spikeform-compile", needle)
