"""Exit codes and one-paragraph error messages shared by the command-line tools
(spikeform-compile, spikeform-report, spikeform-run, spikeform-train).

Signals: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, Slurm, Kubernetes, Docker) and SIGHUP
(a closed terminal) all stop a command the same way: an interrupt is raised in the main thread,
every ``finally`` runs (the Lava runtime and its workers are stopped, its shared memory
released, half-built outputs removed: outputs are built aside and swapped in atomically), one
line names the signal, and the exit code is 128 + the signal's number (130, 143, 129).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Optional, Sequence, Tuple, Type

from spikeform_cli.common import render_error

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_WORKER_FAILED = 1         # spikeform-run --workers/--cluster: a worker raised or died
EXIT_VERIFICATION_FAILED = 3   # spikeform-compile: Lava differs from its ground truth
EXIT_INTERRUPTED = 130         # 128 + SIGINT; SIGTERM gives 143, SIGHUP 129

#: signals handled like Ctrl-C (SIGINT keeps Python's own handler: KeyboardInterrupt)
TERMINATING_SIGNALS: Tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread where Ctrl-C raises KeyboardInterrupt
    (code that cleans up after an interrupt does so for these too)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_for(exc: KeyboardInterrupt) -> int:
    """128 + the number of the signal behind ``exc`` (a plain KeyboardInterrupt: SIGINT)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


@contextmanager
def terminating_signals_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise
    :class:`Terminated`. Only the first one raises: later ones, while the cleanup runs, are
    ignored, so that the cleanup completes (it is bounded; SIGKILL still ends everything, and
    Lava's workers die with this process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []

    def handler(signum, frame):
        if raised:
            return
        raised.append(signum)
        raise Terminated(signum)

    old = {}
    for signum in TERMINATING_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue  # ignored by whoever started us (nohup: SIGHUP): keep ignoring it
        previous = signal.signal(signum, handler)
        old[signum] = signal.SIG_DFL if previous is None else previous
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


def run_with_exit_codes(prog: str, action: Callable[[], int],
                        bad_input: Tuple[Type[BaseException], ...], *,
                        failures: Sequence[Tuple[Type[BaseException], str, int]] = (),
                        interrupted: str = "nothing was written",
                        flags: Optional[Mapping[str, str]] = None) -> int:
    """``action()``'s exit code; ``bad_input`` errors exit 2 with ``prog: error: <message>``,
    each ``(exception, label, code)`` of ``failures`` exits ``code`` with
    ``prog: <label>: <message>``; Ctrl-C, SIGTERM and SIGHUP exit 128 + the signal's number
    with ``prog: interrupted by <SIGNAL>; <interrupted>``. Messages name the command-line
    flag of a library error's ``option`` (``common.render_error``; ``flags``: parameter ->
    flag where the command names it otherwise than ``--`` + the parameter). Anything else is
    a bug: it propagates with its traceback."""
    try:
        with terminating_signals_interrupt():
            return action()
    except KeyboardInterrupt as e:
        code = exit_code_for(e)
        print(f"{prog}: interrupted by {signal_name(code - 128)}; {interrupted}",
              file=sys.stderr)
        return code
    except BaseException as e:
        for kind, label, code in failures:
            if isinstance(e, kind):
                print(f"{prog}: {label}: {render_error(e, flags)}", file=sys.stderr)
                return code
        if isinstance(e, bad_input):
            print(f"{prog}: error: {render_error(e, flags)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
