"""Start and stop a Snakemake run's fork server (called from the workflow's onstart/onsuccess).

The socket is named by the Snakemake process's pid, so two runs never share a server, and
lives in the temporary directory (a Unix socket's path must stay under ~100 bytes). A run
that cannot start a server loses nothing: the rules' `spikeattn` command runs each job in
its own process whenever no server answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import ENV_SWITCH

MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


def socket_path() -> str | None:
    """This Snakemake run's socket, or None where no server should run (`SPIKEATTN_WORKER=off`,
    or a temporary directory whose path is too long for a socket)."""
    if os.environ.get(ENV_SWITCH, "").lower() in ("off", "0", "false", "no"):
        return None
    path = str(Path(tempfile.gettempdir()) / f"spikeattn-{os.getuid()}-{os.getpid()}.sock")
    return path if len(path) <= MAX_SOCKET_PATH else None


def start(path: str, log: Path) -> subprocess.Popen:
    """The server, in the background: it imports for a few seconds, then listens at `path`;
    jobs that start before that run in their own processes."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "spikeattn.worker.server", path, "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(server: subprocess.Popen | None, timeout_s: float = 10.0) -> None:
    """Stop the server (it removes its socket); every job has ended by the time Snakemake
    calls onsuccess/onerror."""
    if server is None or server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
