"""Calling the command-line tools in-process and checking their refusals."""
import subprocess


def call(capsys, main, *argv) -> subprocess.CompletedProcess:
    """``main(argv)`` with its exit code and captured output, like a finished subprocess."""
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, rc, out.out, out.err)


def refused(proc, prog, *needles) -> str:
    """Exit 2 with one line ``prog: error: ...`` holding every needle (no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith(f"{prog}: error: ") and "Traceback" not in err, err
    assert "\n" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err
