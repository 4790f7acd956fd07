"""End a `spikeattn` process without Python's interpreter teardown.

Tearing down an interpreter that loaded torch, timm and MLflow takes about 2 s on a 2-core
machine (module and object finalisation, measured in benchmarks/RESULTS.md), which is paid
by every one of the pipeline's many short jobs. Everything a job writes is already on disk
when its command returns (atomic writes, sqlite commits per call), so the process can end
as soon as what Python would still do that matters is done: flush the standard streams, wait
for non-daemon threads, run the atexit handlers (file locks, MLflow's open run, logging).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_now(code: int) -> None:
    """Finish what a normal exit would (threads, atexit, streams), then `os._exit(code)`."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to save
            pass
    os._exit(code)
