"""The `spikeattn` command's side of the fork server: hand a job over, wait, return its status.

The job runs in a child of the server that joins this process's process group, so a signal
sent to the group (Ctrl-C in a terminal, a scheduler stopping the job) reaches it exactly as
it reaches a job in its own process; this process then only waits for the status. When the
child could not join the group, SIGINT and SIGTERM sent here are passed on to it instead.
If this process dies first, the server stops the child with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from . import ENV_SOCKET, SERVED, send_request

REPLY_TIMEOUT_S = 120.0  # the server forks as soon as it reads a request; silence means it hung


def stage_of(argv: list[str]) -> str | None:
    """The stage an argv runs (`--params FILE train ...` -> "train"); None for help requests."""
    if "-h" in argv or "--help" in argv:
        return None
    args = iter(argv)
    for arg in args:
        if arg == "--params":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def run_on_worker(argv: list[str]) -> int | None:
    """Run `spikeattn <argv>` on the server named by `ENV_SOCKET` and return its exit status;
    None when this command is not served or no server answers (then it runs here)."""
    path = os.environ.get(ENV_SOCKET)
    if not path or stage_of(argv) not in SERVED:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:  # no server (not started yet, or gone): nothing was handed over
        sock.close()
        return None
    with sock:
        env = {k: v for k, v in os.environ.items() if k != ENV_SOCKET}
        umask = os.umask(0)
        os.umask(umask)
        request = {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": env,
            "umask": umask,
            "pgid": os.getpgrp(),
        }
        send_request(sock, request)
        return _wait(sock, path)


def _wait(sock: socket.socket, path: str) -> int:
    replies = sock.makefile("rb")
    sock.settimeout(REPLY_TIMEOUT_S)
    try:
        pid = json.loads(replies.readline())["pid"]
    except (OSError, ValueError, KeyError):
        print(
            f"spikeattn: the job server at {path} did not start the job; set "
            f"SPIKEATTN_WORKER=off to run jobs in their own processes",
            file=sys.stderr,
        )
        return 1
    sock.settimeout(None)
    _route_signals(pid)
    line = replies.readline()
    if not line:
        print(f"spikeattn: the job server at {path} ended before job {pid}", file=sys.stderr)
        return 1
    return int(json.loads(line)["exit"])


def _route_signals(pid: int) -> None:
    """Ctrl-C and SIGTERM: the group already delivers them to the job, or they are passed on."""
    try:
        same_group = os.getpgid(pid) == os.getpgrp()
    except OSError:  # the job already ended; its status is on the way
        same_group = True

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN if same_group else forward)
