"""The `spikeattn` command's hand-over to the fork server: which commands go, what travels
with them (argv, cwd, environment, the three standard streams), and that without a server
nothing is handed over."""

from __future__ import annotations

import os
import socket

import pytest

from spikeattn.worker import ENV_SOCKET, STREAMS, receive_request, send_request
from spikeattn.worker.client import run_on_worker, stage_of


@pytest.mark.parametrize(
    "argv, stage",
    [
        (["train", "--study", "s"], "train"),
        (["--params", "p.yaml", "energy", "--seed", "0"], "energy"),
        (["--params", "train", "cells", "x"], "cells"),  # a params file named "train"
        (["train", "--help"], None),
        (["-h"], None),
        (["--params", "p.yaml"], None),
    ],
)
def test_stage_of(argv, stage):
    assert stage_of(argv) == stage


def test_nothing_is_handed_over_without_a_server(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_SOCKET, raising=False)
    assert run_on_worker(["train", "--study", "s"]) is None
    monkeypatch.setenv(ENV_SOCKET, str(tmp_path / "absent.sock"))
    assert run_on_worker(["train", "--study", "s"]) is None


def test_only_train_and_energy_are_handed_over(monkeypatch, tmp_path):
    path = tmp_path / "w.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(0.2)
    monkeypatch.setenv(ENV_SOCKET, str(path))
    with listener:
        for argv in (["cells", "demo"], ["tables", "--study", "s"], ["train", "-h"]):
            assert run_on_worker(argv) is None
            with pytest.raises(TimeoutError):
                listener.accept()  # nobody connected


def test_a_request_carries_its_argv_and_the_callers_streams():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    request = {"argv": ["train", "--seed", "0"], "cwd": "/x", "env": {"K": "v" * 50_000}}
    with a, b:
        send_request(a, request)
        received, fds = receive_request(b)
    try:
        assert received == request
        for fd, original in zip(fds, STREAMS):
            same = os.fstat(fd), os.fstat(original)
            assert (same[0].st_dev, same[0].st_ino) == (same[1].st_dev, same[1].st_ino)
    finally:
        for fd in fds:
            os.close(fd)
