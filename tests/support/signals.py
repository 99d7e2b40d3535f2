"""Signal helpers for tests that stop real commands."""
import signal

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


def default_stop_signals() -> None:
    """``preexec_fn`` for a command under test: SIGINT, SIGTERM and SIGHUP at their default
    disposition, whatever this test process inherited (a background job -- as CI may run the
    suite -- ignores SIGINT, and a child would inherit that and never see Ctrl-C)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
