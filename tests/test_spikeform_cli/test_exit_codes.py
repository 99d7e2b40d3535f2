"""The exit-code convention shared by spikeform-compile, -report and -run."""
import os
import signal
import time

import pytest

from spikeform_cli.exit_codes import (EXIT_INTERRUPTED, Terminated, exit_code_for,
                                      run_with_exit_codes)


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
    assert capsys.readouterr().err == "tool: interrupted by SIGINT; the runtime was stopped\n"


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(capsys, name, code):
    """A real signal to this process: the action is interrupted (its cleanup runs, a second
    signal meanwhile is ignored), one line names the signal, exit 128 + signum; the previous
    handler is back afterwards."""
    signum = getattr(signal, name)
    inherited = signal.signal(signum, signal.SIG_DFL)  # whatever the test runner inherited
    before = signal.getsignal(signum)
    steps = []

    def action():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)
            steps.append("not interrupted")
        finally:
            os.kill(os.getpid(), signum)   # during the cleanup: ignored
            time.sleep(0.01)
            steps.append("cleaned up")
        return 0

    assert run_with_exit_codes("tool", action, (Bad,), interrupted="nothing was written") == code
    assert steps == ["cleaned up"]
    assert capsys.readouterr().err == f"tool: interrupted by {name}; nothing was written\n"
    assert signal.getsignal(signum) is before
    assert run_with_exit_codes("tool", _raise(Terminated(signum)), (Bad,)) == code
    signal.signal(signum, inherited)


def test_a_signal_ignored_by_whoever_started_us_stays_ignored(capsys):
    """``nohup`` starts a command with SIGHUP ignored: it must keep ignoring it."""
    inherited = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        def action():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            return 0

        assert run_with_exit_codes("tool", action, (Bad,)) == 0
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, inherited)


def test_terminated_is_an_interrupt():
    """Code that cleans up after Ctrl-C (``except KeyboardInterrupt``) does so for SIGTERM."""
    assert issubclass(Terminated, KeyboardInterrupt)
    assert exit_code_for(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130
    assert exit_code_for(Terminated(signal.SIGTERM)) == 143


def test_unexpected_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_with_exit_codes("tool", lambda: 1 // 0, (Bad,))


# -- library errors name parameters; the command line names its flags ----------------------------

def test_option_errors_name_the_flag(capsys):
    from compiler.ir import OptionError
    from spikeform_cli.common import option_flag, render_error

    assert option_flag("time_steps") == "--time-steps"
    assert option_flag("portable", {"portable": "--nir-portable"}) == "--nir-portable"
    # every mention of the parameter becomes the flag
    e = OptionError("g.nir: exported with 4 time steps; time_steps 8 contradicts it (leave "
                    "time_steps unset)", option="time_steps")
    assert render_error(e) == ("g.nir: exported with 4 time steps; --time-steps 8 contradicts "
                               "it (leave --time-steps unset)")
    # a message that does not mention it gets the flag at its end
    e = OptionError("tau/dt = 0.5 time steps; is the time step right?", option="nir_dt")
    assert render_error(e) == "tau/dt = 0.5 time steps; is the time step right? (--nir-dt)"
    # a command may call a parameter otherwise; a flag already quoted is left alone
    e = OptionError("portable=True: nothing to export; export without portable",
                    option="portable")
    assert render_error(e, {"portable": "--nir-portable"}) == (
        "--nir-portable=True: nothing to export; export without --nir-portable")
    e = OptionError("--time-steps 8 contradicts it", option="time_steps")
    assert render_error(e) == "--time-steps 8 contradicts it"
    # only whole words, never parts of paths or of longer names
    e = OptionError("put them in data_dir/train/<class>, not in my_data_dir; pass data_dir",
                    option="data_dir")
    assert render_error(e) == ("put them in data_dir/train/<class>, not in my_data_dir; pass "
                               "--data-dir")
    # errors without an option are unchanged
    assert render_error(ValueError("time_steps is wrong")) == "time_steps is wrong"
    # and run_with_exit_codes prints the rendered message
    assert run_with_exit_codes("tool", _raise(OptionError("pass time_steps", "time_steps")),
                               (ValueError,)) == 2
    assert capsys.readouterr().err == "tool: error: pass --time-steps\n"
    assert run_with_exit_codes("tool", _raise(Mismatch("x")), (Bad,), flags={"a": "--b"},
                               failures=[(Mismatch, "failed", 3)]) == 3
    assert capsys.readouterr().err == "tool: failed: x\n"


def test_data_set_errors_name_data_dir_and_the_tools_the_flag(tmp_path, capsys):
    from spikformer_neuro.data import DatasetError, load_dataset
    from spikeform_cli.common import render_error

    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "test")  # MNIST has no default location
    assert info.value.option == "data_dir"
    assert "--" not in str(info.value) and str(info.value).endswith("as data_dir")
    assert render_error(info.value).endswith("as --data-dir")
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", "test", tmp_path)  # an empty folder
    assert info.value.option == "data_dir" and "--" not in str(info.value)
    assert "passed as --data-dir" in render_error(info.value)
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "test", tmp_path)  # the fix names the folder, not the option
    assert info.value.option is None and str(tmp_path) in str(info.value)


def test_spikeform_train_uses_the_shared_exit_codes(tmp_path, capsys, monkeypatch):
    import spikeform_cli.train as train

    assert train.main(["--config", "digits-tiny", "--dataset", "mnist", "--epochs", "1",
                       "--out", str(tmp_path / "m.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikeform-train: error: mnist: no data directory given")
    assert err.rstrip().endswith("as --data-dir") and err.count("\n") == 1

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupted)
    assert train.main(["--out", str(tmp_path / "m.pth")]) == 130
    assert capsys.readouterr().err == ("spikeform-train: interrupted by SIGINT; the last "
                                       f"completed epoch is in {tmp_path / 'm.last.pth'}\n")
