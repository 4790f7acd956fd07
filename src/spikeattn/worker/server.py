"""The fork server: import the job libraries once, fork a child per train/energy job.

`python -m spikeattn.worker.server SOCKET --parent PID` is started by the workflow's
`onstart` (see pipeline/common.smk) and ends when that Snakemake process ends or stops it
(SIGTERM). Before it listens it imports torch, timm, MLflow and the job modules; it never
touches CUDA or opens the MLflow store, and it starts no thread, so that each forked child
starts clean: the child takes the client's streams, environment, working directory, umask
and process group, runs the command as `python -m spikeattn` would, and exits without
interpreter teardown. The server reports each child's exit status to its client; a client
that disconnects first gets its child stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import ENV_SOCKET, receive_request, send_line

POLL_S = 1.0  # how often the server checks that its Snakemake process is still there


def warm_up() -> None:
    """What every served job imports, loaded once here (a few seconds) instead of per job."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the store: ~2 s alone)
    import timm  # noqa: F401
    import torch  # noqa: F401

    import spikeattn.cli  # noqa: F401
    import spikeattn.data.frames  # noqa: F401  (tonic, h5py)
    import spikeattn.data.loader  # noqa: F401
    import spikeattn.energy.job  # noqa: F401
    import spikeattn.energy.model  # noqa: F401
    import spikeattn.gpu_slots  # noqa: F401
    import spikeattn.models  # noqa: F401
    import spikeattn.stages  # noqa: F401
    import spikeattn.tracking.runs  # noqa: F401
    import spikeattn.train.job  # noqa: F401


def _fork_safe() -> None:
    """A fork copies one thread and whatever CUDA state exists; refuse to serve if either
    would make children unsafe (a library started a thread, or something initialised CUDA)."""
    import torch

    if threading.active_count() != 1:
        raise RuntimeError(f"{threading.active_count()} threads after the imports")
    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised before forking")


class Server:
    def __init__(self, path: str, parent: int) -> None:
        self.path, self.parent = path, parent
        self.jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.started: dict[int, tuple[float, str]] = {}  # child pid -> (start time, argv)
        self.selector = selectors.DefaultSelector()
        self.stopping = False

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # SIGCHLD/SIGTERM wake the loop at once
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the jobs; Snakemake stops us
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        Path(self.path).unlink(missing_ok=True)
        listener.bind(self.path)
        listener.listen(64)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self.stopping and os.getppid() == self.parent:
                for key, _ in self.selector.select(POLL_S):
                    if key.data == "accept":
                        self._start(listener)
                    elif key.data == "wake":
                        os.read(wake_r, 512)
                    else:
                        self._client_gone(key.data)
                self._reap()
        finally:
            Path(self.path).unlink(missing_ok=True)
            listener.close()
            for pid in self.jobs:  # the run is over: its jobs stop as Snakemake's would
                _signal(pid, signal.SIGTERM)

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _start(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        try:
            conn.settimeout(10.0)
            request, fds = receive_request(conn)
        except (OSError, ValueError) as err:
            print(f"spikeattn worker: dropped a request: {err}", file=sys.stderr, flush=True)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._close_inherited(listener, conn)
            _run_job(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            os.setpgid(pid, request["pgid"])  # the child does it too: whoever runs first
        except OSError:
            pass
        self.jobs[pid] = conn
        self.started[pid] = (time.perf_counter(), " ".join(request["argv"]))
        self.selector.register(conn, selectors.EVENT_READ, pid)
        try:
            send_line(conn, {"pid": pid})
        except OSError:
            self._client_gone(pid)

    def _close_inherited(self, *sockets: socket.socket) -> None:
        """In a new child: drop the server's sockets, so a client sees its server's end."""
        for sock in (*sockets, *self.jobs.values()):
            sock.close()
        self.selector.close()

    def _client_gone(self, pid: int) -> None:
        """The client's connection is readable: it sends nothing more, so it has gone."""
        conn = self.jobs.get(pid)
        if conn is None:
            return
        self.selector.unregister(conn)
        _signal(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.jobs.pop(pid, None)
            if conn is None:
                continue
            start, argv = self.started.pop(pid)
            took = time.perf_counter() - start
            code = _exit_code(status)
            print(f"job {pid} exit {code} after {took:.1f} s: {argv}", flush=True)
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            try:
                send_line(conn, {"exit": code})
            except OSError:
                pass
            conn.close()


def _exit_code(status: int) -> int:
    """A shell's convention: the exit code, or 128 + the signal that ended the job."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _run_job(request: dict, fds: list[int]) -> None:
    """In the forked child: become the client's job, run it, exit with its status."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            os.setpgid(0, request["pgid"])
        except OSError:
            pass
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_streams()
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV_SOCKET, None)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        sys.argv = ["spikeattn", *request["argv"]]
        from spikeattn.cli import run

        code = run(request["argv"])
    except BaseException:  # anything at all: report it on the job's own stderr
        import traceback

        traceback.print_exc()
    finally:
        from spikeattn.process_exit import exit_now

        exit_now(code)


def _reopen_streams() -> None:
    """Python's standard streams over the job's descriptors, buffered as a fresh process's."""
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), line_buffering=os.isatty(1)
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        line_buffering=True,
        errors="backslashreplace",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spikeattn.worker.server", description=__doc__)
    p.add_argument("socket", help="the Unix socket to listen on (created; removed on exit)")
    p.add_argument("--parent", type=int, required=True, help="serve while this pid lives")
    args = p.parse_args(argv)
    start = time.perf_counter()
    warm_up()
    _fork_safe()
    took = time.perf_counter() - start
    print(f"spikeattn worker: ready in {took:.1f} s at {args.socket}", flush=True)
    Server(args.socket, args.parent).serve()
    return 0


if __name__ == "__main__":
    from spikeattn.process_exit import exit_now

    exit_now(main())  # the run waits for this exit: no 2 s teardown of torch and friends
