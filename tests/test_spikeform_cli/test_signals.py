"""Signals against the real commands: SIGTERM, SIGHUP and SIGINT stop a command like Ctrl-C
(exit 128 + signum, one line naming the signal, no output written, no process and no
``/dev/shm/psm_*`` segment left), and SIGKILL of the command leaves nothing behind either
(Lava's workers die with it; multiprocessing's resource tracker unlinks the segments).

Each command runs in a subprocess of its own session (a signal "to the group" reaches it and
all its workers, as from a terminal, ``timeout`` or Slurm, and never this test). This process
is made a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) for the module: whatever the
command leaves behind is reparented here, where the test sees it -- and kills and reaps it,
so that the test itself never leaves a process behind. The command's segments are the
``/dev/shm/psm_*`` files mapped by it or its descendants, read from ``/proc/<pid>/maps``
while it runs (other programs on the machine may create segments of their own meanwhile).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Set

import pytest

from support.paths import DIGITS_CKPT, ROOT
from support.processes import START_TIMEOUT_S, Command, subreaper

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="prctl, /proc and /dev/shm are Linux's")

BIN = Path(sys.executable).parent
LAVA_STARTED = 20       # digits-tiny runs 32 Lava processes + services + shared-memory manager
GRACE_S = 10.0          # for the resource tracker to notice and clean up after SIGKILL


@pytest.fixture(scope="module", autouse=True)
def _adopt_orphans():
    """The module's tests see (and reap) whatever their commands leave behind
    (support.processes.subreaper)."""
    with subreaper():
        yield


@pytest.fixture
def command(tmp_path):
    started: List[Command] = []

    def start(*args: str) -> Command:
        cmd = Command([str(a) for a in args], tmp_path)
        started.append(cmd)
        return cmd

    yield start
    for cmd in started:
        cmd.cleanup()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("signals") / "digits.compiled"
    proc = subprocess.run([str(BIN / "spikeform-compile"), str(DIGITS_CKPT), "--target",
                           "reference", "--no-verify", "-o", str(out), "-q"],
                          cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    return out


def _files(directory: Path) -> Set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def _assert_clean_exit(cmd: Command, signum: int, message: str) -> None:
    code = cmd.wait()
    err = cmd.err()
    assert code == 128 + signum, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1] == message, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert cmd.segments, "no shared-memory segment seen: Lava did not run"
    # the workers are gone when the command exits; the resource tracker follows at once
    procs, segments = cmd.leftovers(grace_s=5.0)
    assert not procs, procs
    assert not segments, f"{len(segments)} of {len(cmd.segments)} segments left"


# -- SIGTERM, SIGHUP, SIGINT: stopped like Ctrl-C ----------------------------------------------
@pytest.mark.lava
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_run_stops_cleanly_on_a_signal_to_its_process_group(artifact, command, tmp_path, name):
    """The signal reaches the command and every Lava worker (a terminal, ``timeout``,
    Slurm): only the command acts on it, and stops its workers."""
    signum = getattr(signal, name)
    out = tmp_path / "results" / "r.json"
    before = _files(tmp_path)
    cmd = command(BIN / "spikeform-run", artifact, "--samples", "200", "--out", out, "-q")
    cmd.wait_for(LAVA_STARTED)
    cmd.signal(signum, group=True)
    _assert_clean_exit(cmd, signum,
                       f"spikeform-run: interrupted by {name}; the Lava runtime was stopped")
    assert _files(tmp_path) - before == {"cmd.stdout", "cmd.stderr"}


@pytest.mark.lava
def test_compile_stops_cleanly_on_sigterm_and_writes_nothing(command, tmp_path):
    """The case of the issue: ``kill -TERM`` (to the command alone) while the Lava
    verification runs."""
    before = _files(tmp_path)
    cmd = command(BIN / "spikeform-compile", DIGITS_CKPT, "--target", "lava-sim", "--samples",
                  "128", "-o", tmp_path / "out.compiled", "--report", tmp_path / "r.json", "-q")
    cmd.wait_for(LAVA_STARTED)
    cmd.signal(signal.SIGTERM)
    _assert_clean_exit(cmd, signal.SIGTERM,
                       "spikeform-compile: interrupted by SIGTERM; nothing was written")
    # no artifact, no report, no half-built directory beside them
    assert _files(tmp_path) - before == {"cmd.stdout", "cmd.stderr"}


# -- SIGKILL: nothing can run in the command; its workers die with it ---------------------------
@pytest.mark.lava
def test_sigkill_of_the_command_leaves_no_worker_and_no_segment(artifact, command):
    cmd = command(BIN / "spikeform-run", artifact, "--samples", "200", "-q")
    cmd.wait_for(LAVA_STARTED)
    workers = len(cmd.processes())
    cmd.signal(signal.SIGKILL)
    assert cmd.wait() == -signal.SIGKILL
    procs, segments = cmd.leftovers(grace_s=GRACE_S)
    assert not procs, f"{len(procs)} of {workers} processes survived: {procs}"
    assert cmd.segments and not segments, f"{len(segments)} of {len(cmd.segments)} segments left"


# -- spikeform-train: the same exit path -------------------------------------------------------
def test_train_stops_on_sigterm_with_its_last_epoch_intact(command, tmp_path):
    out = tmp_path / "m.pth"
    last = tmp_path / "m.last.pth"
    cmd = command(BIN / "spikeform-train", "--config", "digits-tiny", "--dataset", "digits",
                  "--epochs", "200", "--train-subset", "32", "--test-subset", "16",
                  "--batch-size", "16",
                  "--val-fraction", "0", "--threads", "1", "--out", out, "-q")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not last.exists():
        assert cmd.proc.poll() is None, cmd.err()[-3000:]
        assert time.monotonic() < deadline, "no epoch completed"
        time.sleep(0.1)
    cmd.signal(signal.SIGTERM)
    code = cmd.wait()
    assert code == 143, cmd.err()[-3000:]
    assert cmd.err().strip().splitlines()[-1] == (
        f"spikeform-train: interrupted by SIGTERM; the last completed epoch is in {last}")
    from spikformer_neuro.checkpoint import load_checkpoint

    assert load_checkpoint(last).training_state is not None   # complete, loadable
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    procs, _ = cmd.leftovers(grace_s=5.0)
    assert not procs, procs


class _IgnoredSignals:
    """A one-sample data set: the signals its loader worker ignores (SigIgn)."""

    def __len__(self):
        return 1

    def __getitem__(self, i):
        status = Path("/proc/self/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("SigIgn:")), 16)
        return [signum for signum in range(1, 64) if mask >> (signum - 1) & 1]


def test_loader_workers_ignore_stop_signals():
    """DataLoader workers given ``loader_worker_ignores_stop_signals`` leave a group's
    SIGINT/SIGTERM/SIGHUP to the main process (torch's own handler lets a worker die of a
    SIGTERM, which the main process reports with a traceback while it stops)."""
    from torch.utils.data import DataLoader

    from spikformer_neuro.training.distributed import loader_worker_ignores_stop_signals

    loader = DataLoader(_IgnoredSignals(), batch_size=None, num_workers=1,
                        worker_init_fn=loader_worker_ignores_stop_signals)
    (ignored,) = list(loader)
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= set(ignored)
