"""A fork server for the pipeline's train and energy jobs.

A Snakemake run starts many short `spikeattn train` / `spikeattn energy` jobs, and each fresh
interpreter spends seconds importing torch, timm and MLflow before its first batch. The
workflow's `onstart` therefore starts one server (`server.py`) that imports them once and
forks a child per job; the rule's `spikeattn` command (`python -m spikeattn`) then hands
its arguments, working directory, environment and standard streams to that server
(`client.py`) and exits with the child's status. Rules, their inputs, outputs and params are
unchanged, so the DAG and its re-run guarantees are too; one process per job is kept, so run
locks, seeding and crash isolation are as before.

Only the commands in `SERVED` go to the server, and only when `ENV_SOCKET` names a server's
socket (the workflow sets it in the rules' shell function): by hand, under `--use-conda`, on
a cluster node or with `SPIKEATTN_WORKER=off`, `spikeattn` runs in its own process as always.
This module and `client.py` import the standard library only, so handing a job over costs
tens of milliseconds.
"""

from __future__ import annotations

import json
import os
import socket
import struct

ENV_SOCKET = "SPIKEATTN_WORKER_SOCKET"  # set by the workflow: the server's socket path
ENV_SWITCH = "SPIKEATTN_WORKER"  # "off": the workflow starts no server
SERVED = ("train", "energy")  # the per-cell x seed jobs, where start-up dominates
STREAMS = (0, 1, 2)  # stdin, stdout, stderr: passed to the job, so `> {log} 2>&1` works

_LENGTH = struct.Struct("!I")


def send_request(sock: socket.socket, request: dict) -> None:
    """The job's request (argv, cwd, env, umask) with the caller's standard streams."""
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [_LENGTH.pack(len(payload))], list(STREAMS))
    sock.sendall(payload)


def receive_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """`send_request`'s other end: the request and the three stream descriptors."""
    header, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, len(STREAMS))
    if len(header) != _LENGTH.size or len(fds) != len(STREAMS):
        for fd in fds:
            _close_quietly(fd)
        raise ConnectionError("incomplete request")
    (length,) = _LENGTH.unpack(header)
    payload = bytearray()
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        if not chunk:
            raise ConnectionError("incomplete request")
        payload += chunk
    return json.loads(payload), fds


def send_line(sock: socket.socket, message: dict) -> None:
    """A reply: one JSON object per line ({"pid": ...}, then {"exit": ...})."""
    sock.sendall(json.dumps(message).encode() + b"\n")


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
