"""`exit_now` ends a process as a normal exit would for everything a job relies on (atexit
handlers, buffered output, non-daemon threads), with the given status."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import atexit, sys, threading, time
from pathlib import Path
from spikeattn.process_exit import exit_now

out = Path(sys.argv[1])
atexit.register(lambda: print("atexit ran"))
def late_write():
    time.sleep(0.3)
    out.write_text("written by a thread")
threading.Thread(target=late_write).start()
sys.stdout.write("buffered, ")
exit_now(3)
print("never")
"""


def test_exit_now_runs_what_a_normal_exit_runs(tmp_path):
    out = tmp_path / "thread.txt"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, atexit ran\n"
    assert out.read_text() == "written by a thread"
