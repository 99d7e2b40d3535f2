"""Exit codes and one-paragraph error messages shared by the command-line tools
(spikeform-compile, spikeform-report, spikeform-run, spikeform-train)."""
from __future__ import annotations

import sys
from typing import Callable, Mapping, Optional, Sequence, Tuple, Type

from spikeform_cli.common import render_error

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_VERIFICATION_FAILED = 3   # spikeform-compile: Lava differs from its ground truth
EXIT_INTERRUPTED = 130


def run_with_exit_codes(prog: str, action: Callable[[], int],
                        bad_input: Tuple[Type[BaseException], ...], *,
                        failures: Sequence[Tuple[Type[BaseException], str, int]] = (),
                        interrupted: str = "nothing was written",
                        flags: Optional[Mapping[str, str]] = None) -> int:
    """``action()``'s exit code; ``bad_input`` errors exit 2 with ``prog: error: <message>``,
    each ``(exception, label, code)`` of ``failures`` exits ``code`` with
    ``prog: <label>: <message>``, Ctrl-C exits 130. Messages name the command-line flag of a
    library error's ``option`` (``common.render_error``; ``flags``: parameter -> flag where
    the command names it otherwise than ``--`` + the parameter). Anything else is a bug: it
    propagates with its traceback."""
    try:
        return action()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as e:
        for kind, label, code in failures:
            if isinstance(e, kind):
                print(f"{prog}: {label}: {render_error(e, flags)}", file=sys.stderr)
                return code
        if isinstance(e, bad_input):
            print(f"{prog}: error: {render_error(e, flags)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
