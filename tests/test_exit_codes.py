"""The exit-code convention shared by spikeform-compile, -report and -run."""
import pytest

from spikeform_cli.exit_codes import run_with_exit_codes


class Bad(Exception):
    pass


class Mismatch(Exception):
    pass


def _raise(exc):
    def action():
        raise exc
    return action


def test_codes_and_one_line_messages(capsys):
    assert run_with_exit_codes("tool", lambda: 0, (Bad,)) == 0
    assert run_with_exit_codes("tool", _raise(Bad("no such file x.pth")), (Bad, OSError)) == 2
    assert capsys.readouterr().err == "tool: error: no such file x.pth\n"
    assert run_with_exit_codes("tool", _raise(Mismatch("3 spikes differ")), (Bad,),
                               failures=[(Mismatch, "verification failed", 3)]) == 3
    assert capsys.readouterr().err == "tool: verification failed: 3 spikes differ\n"
    assert run_with_exit_codes("tool", _raise(KeyboardInterrupt()), (Bad,),
                               interrupted="the runtime was stopped") == 130
    assert capsys.readouterr().err == "tool: interrupted; the runtime was stopped\n"


def test_unexpected_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_with_exit_codes("tool", lambda: 1 // 0, (Bad,))
