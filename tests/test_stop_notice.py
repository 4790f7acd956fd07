"""A stopped Snakemake run is explained as stopped (spikeattn.stop_notice)."""

import io
import os
import signal

import pytest

from spikeattn import stop_notice


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in stop_notice.WATCHED}
    stop_notice._seen.clear()
    # Python's own Ctrl-C handler, as in a terminal: a test run started in the background
    # (`cmd &` in a script) inherits SIGINT ignored, and watch() passes on what was there.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    stop_notice._seen.clear()


def test_a_noted_sigterm_still_reaches_the_handler_installed_before(handlers):
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))  # Snakemake's
    stop_notice.watch()
    out = io.StringIO()
    assert not stop_notice.explain(out) and out.getvalue() == ""
    os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGTERM]
    assert stop_notice.explain(out) and "stopped by SIGTERM, not failed" in out.getvalue()


def test_ctrl_c_is_noted_and_still_interrupts(handlers):
    stop_notice.watch()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert stop_notice.stopped_by() == "SIGINT"


def test_ctrl_c_while_planning_is_one_line_then_watch_restores_pythons_handler(handlers, capsys):
    stop_notice.quiet_until_start()
    with pytest.raises(SystemExit) as exit_:
        os.kill(os.getpid(), signal.SIGINT)
    assert exit_.value.code == 130 and "no job had started" in capsys.readouterr().err
    stop_notice.watch()
    with pytest.raises(KeyboardInterrupt):  # Snakemake's job handling sees Ctrl-C as before
        os.kill(os.getpid(), signal.SIGINT)
