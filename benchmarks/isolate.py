"""Run one measurement in its own subprocess and read that subprocess's peak memory.

    run_isolated("benchmarks.compile_time:measure", {"config": "digits-tiny"}, timeout_s=600)

The child (``python -m benchmarks.isolate TARGET PARAMS_JSON RESULT_PATH``) imports
``module:function``, calls it with the parameters and writes the returned dict as JSON, with
its peak resident set: the larger of its own ``VmHWM`` and its reaped children's
``ru_maxrss`` (Lava's worker processes), i.e. the largest single process of this
measurement. The parent's ``os.wait4`` ``ru_maxrss`` cannot be used: Linux carries a
process's maximum RSS across ``execve``, so a child forked from a large parent (a pytest
process with torch and Lava imported) would report the parent's size. The child runs in its
own session so that a timeout kills its Lava workers too; its stdout goes to the parent's
stderr so that the parent's table stays clean.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class MeasurementError(RuntimeError):
    """A measurement's subprocess failed, timed out or returned no result."""


def run_isolated(target: str, params: Mapping[str, object], timeout_s: float,
                 env: Mapping[str, str] | None = None) -> dict[str, object]:
    """-> the measurement's dict plus ``peak_rss_mb`` and ``process_wall_s`` (start-up and
    imports included)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.isolate", target, json.dumps(dict(params)),
               str(result_path)]
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), child_env.get("PYTHONPATH")) if p)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdin=subprocess.DEVNULL,
                                stdout=2, start_new_session=True)
        try:
            status = _reap(proc, start + timeout_s)
        except BaseException:  # timeout or Ctrl-C: take the whole measurement down
            _kill_group(proc.pid)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            _kill_group(proc.pid)  # Lava workers a crashed child left behind
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise MeasurementError(f"{target}({_short(params)}) failed with exit status "
                                   f"{proc.returncode} (its error is printed above)")
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError) as exc:
            raise MeasurementError(f"{target}({_short(params)}) wrote no readable result: "
                                   f"{exc}") from None
    result["peak_rss_mb"] = result.pop(_PEAK_KEY) / 1024   # KiB
    result["process_wall_s"] = wall
    return result


def _reap(proc: subprocess.Popen, deadline: float):
    while True:
        pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status
        if time.perf_counter() > deadline:
            raise MeasurementError(f"measurement pid {proc.pid} ran past its time limit and "
                                   "was killed; raise --timeout if the machine is slow")
        time.sleep(0.05)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _short(params: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


_PEAK_KEY = "_peak_rss_kib"


def _own_peak_rss_kib() -> int:
    """This process's high-water RSS since its execve (VmHWM), and its reaped children's."""
    import resource

    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _child(argv) -> int:
    target, params_json, result_path = argv
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    result = fn(**json.loads(params_json))
    result[_PEAK_KEY] = _own_peak_rss_kib()
    Path(result_path).write_text(json.dumps(result, default=_plain))
    return 0


def _plain(value):
    """numpy scalars and arrays -> JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
