"""Watching a real command and everything it starts: its process tree (orphans included) and
the Lava shared-memory segments (``/dev/shm/psm_*``) they map, for tests that stop commands
with signals or kill their workers.

The command runs in a session of its own (a signal "to the group" reaches it as from a
terminal or ``timeout``, never the test). The test process is made a child subreaper
(:func:`subreaper`), so that whatever the command leaves behind is reparented to it, where
:meth:`Command.processes` sees it and :meth:`Command.cleanup` kills and reaps it. (One
helper serves tests/test_spikeform_cli/test_signals.py and test_run_workers.py.)
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from support.paths import ROOT
from support.signals import default_stop_signals

PR_SET_CHILD_SUBREAPER = 36
SEGMENT = re.compile(r"/dev/shm/(psm_\w+)")
START_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 120.0


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def process_table() -> Dict[int, Tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int, table: Optional[Dict[int, Tuple[int, str]]] = None) -> Set[int]:
    table = process_table() if table is None else table
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()[:160]
    except OSError:
        return "?"


def alive(pids) -> List[int]:
    """Those of ``pids`` still running (not zombies)."""
    table = process_table()
    return sorted(p for p in pids if p in table and table[p][1] != "Z")


def segments_of(pids) -> Set[str]:
    found = set()
    for pid in pids:
        try:
            found.update(SEGMENT.findall(Path(f"/proc/{pid}/maps").read_text()))
        except OSError:
            pass
    return found


@contextmanager
def subreaper() -> Iterator[None]:
    """This process adopts the orphans of what it starts; afterwards it reaps the zombies
    adopted meanwhile (only those: earlier children are someone else's to wait for)."""
    me = os.getpid()
    had = {pid for pid, (ppid, _) in process_table().items() if ppid == me}
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        _prctl(PR_SET_CHILD_SUBREAPER, 0)
        for pid, (ppid, state) in process_table().items():
            if ppid == me and pid not in had and state == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


class Command:
    """A command in its own session, watched until it and everything it started are gone."""

    def __init__(self, args: List[str], tmp: Path, env: Optional[Dict[str, str]] = None):
        self.me = os.getpid()
        self.before = self._my_children()
        self.stdout, self.stderr = tmp / "cmd.stdout", tmp / "cmd.stderr"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, env=env,
                                         start_new_session=True,
                                         preexec_fn=default_stop_signals)
        self.segments: Set[str] = set()
        self.seen: Set[int] = set()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _my_children(self, table=None) -> Set[int]:
        table = process_table() if table is None else table
        return {pid for pid, (ppid, _) in table.items() if ppid == self.me}

    def processes(self, *, live_only: bool = True) -> Set[int]:
        """Its descendants, and after its exit its orphans (reparented to this subreaper)."""
        table = process_table()
        orphans = self._my_children(table) - self.before - {self.proc.pid}
        pids = descendants(self.proc.pid, table) | orphans
        for orphan in orphans:
            pids |= descendants(orphan, table)
        if live_only:
            pids = {p for p in pids if p in table and table[p][1] != "Z"}
        return pids

    def _watch(self) -> None:
        while not self._stop.is_set():
            pids = self.processes() | {self.proc.pid}
            self.seen |= pids
            self.segments |= segments_of(pids)
            time.sleep(0.05)

    def wait_for(self, processes: int, settle_s: float = 0.5) -> None:
        """Until at least ``processes`` descendants run (then ``settle_s`` more)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self.processes()) < processes:
            assert self.proc.poll() is None, f"exited early:\n{self.err()[-3000:]}"
            assert time.monotonic() < deadline, f"fewer than {processes} processes started"
            time.sleep(0.1)
        time.sleep(settle_s)
        assert self.proc.poll() is None, "finished before the signal: give it more work"

    def children_running(self, marker: str) -> List[int]:
        """Its own children (not theirs: Lava's forks share their parent's command line)
        whose command line holds ``marker``."""
        table = process_table()
        return sorted(p for p, (ppid, state) in table.items()
                      if ppid == self.proc.pid and state != "Z" and marker in cmdline(p))

    def signal(self, signum: int, *, group: bool = False) -> None:
        """``signum`` to the command, or (``group``) to its whole session's process group,
        as a terminal, ``timeout`` or Slurm would send it."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait(self) -> int:
        try:
            return self.proc.wait(EXIT_TIMEOUT_S)
        finally:
            time.sleep(0.1)   # the watcher's last look
            self._stop.set()
            self._watcher.join()

    def leftovers(self, grace_s: float = 0.0) -> Tuple[List[str], List[str]]:
        """(processes still alive, segments still in /dev/shm), after up to ``grace_s``."""
        deadline = time.monotonic() + grace_s
        while True:
            pids = self.processes()
            segments = sorted(s for s in self.segments if os.path.exists(f"/dev/shm/{s}"))
            if (not pids and not segments) or time.monotonic() >= deadline:
                return [f"{p}: {cmdline(p)}" for p in sorted(pids)], segments
            time.sleep(0.1)

    def cleanup(self) -> None:
        """Kill and reap whatever is left (only this command's processes and segments)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._stop.set()
        for _ in range(3):
            left = self.processes(live_only=False)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in left:
                try:
                    os.waitpid(pid, 0)   # our orphans only; others' children are not ours
                except ChildProcessError:
                    pass
        for segment in self.segments:
            try:
                os.unlink(f"/dev/shm/{segment}")
            except FileNotFoundError:
                pass

    def err(self) -> str:
        return self.stderr.read_text()

    def out(self) -> str:
        return self.stdout.read_text()
