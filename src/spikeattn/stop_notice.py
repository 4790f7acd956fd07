"""Say plainly that a Snakemake run was stopped, not failed.

Stopped with SIGTERM, Snakemake lets the running jobs finish, reports them done, and then
ends with "At least one job did not complete successfully." (Ctrl-C: the same line after
killing them). Nothing failed: the user stopped it. The workflow's `onstart` calls `watch()`,
which notes such a signal and passes it on to Snakemake's own handler; its `onerror` calls
`explain()`, which then prints what happened and how to continue. Before that, while
Snakemake reads the workflow and plans, `quiet_until_start()` makes Ctrl-C end it with one line.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable, TextIO

WATCHED = (signal.SIGTERM, signal.SIGINT)
_seen: list[str] = []


def _passing_on(previous: Callable | int | None) -> Callable:
    def handler(signum, frame):
        _seen.append(signal.Signals(signum).name)
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_DFL:  # what would have happened without us
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        return None

    return handler


def _quit_quietly(signum, frame):
    print(
        f"spikeattn: stopped by {signal.Signals(signum).name} while Snakemake was still "
        f"planning; no job had started.",
        file=sys.stderr,
    )
    raise SystemExit(130)


def quiet_until_start() -> None:
    """Until `watch()`: Ctrl-C ends Snakemake with one line instead of a traceback through
    its parser and DAG code (no job has started, so there is nothing to clean up)."""
    signal.signal(signal.SIGINT, _quit_quietly)


def watch() -> None:
    """Note SIGTERM/SIGINT from now on, then hand each to the handler installed before
    (Ctrl-C: Python's own again, which Snakemake's job handling expects)."""
    if signal.getsignal(signal.SIGINT) is _quit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in WATCHED:
        signal.signal(sig, _passing_on(signal.getsignal(sig)))


def stopped_by() -> str | None:
    """The first signal noted since `watch()`, or None."""
    return _seen[0] if _seen else None


def explain(out: TextIO = sys.stderr) -> bool:
    """Print what a stop means, if one was noted; True if it printed."""
    name = stopped_by()
    if name is None:
        return False
    print(
        f"spikeattn: this run was stopped by {name}, not failed. Jobs reported as finished are "
        f"complete and kept; interrupted ones left nothing half-written, and a train job "
        f"resumes from its last finished epoch. Run the same command again to continue (add "
        f"--rerun-incomplete if Snakemake lists incomplete files).",
        file=out,
    )
    return True
