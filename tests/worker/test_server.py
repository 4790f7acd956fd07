"""The fork server runs real jobs as `python -m spikeattn` does in its own process: the same
outputs and MLflow run, the exit status and messages on the caller's streams, Ctrl-C sent to
the caller's process group reaching the job, and a job whose caller died being stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jobs
import pandas as pd
import pytest
import torch

from spikeattn.train.checkpoint import read_resume_state
from spikeattn.worker import ENV_SOCKET

EPOCHS = 10


@dataclass
class Server:
    socket: Path
    log: Path

    def env(self, workdir: Path) -> dict[str, str]:
        return {**jobs.job_env(workdir), ENV_SOCKET: str(self.socket)}

    def run(self, workdir: Path, *args: str) -> subprocess.CompletedProcess:
        """`spikeattn <args>` with this server's socket set, waited for."""
        return subprocess.run(
            jobs.spikeattn(workdir, *args),
            cwd=workdir,
            env=self.env(workdir),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def served(self, argv: list[str], code: int | None = None, timeout: float = 60) -> str:
        """The server log's line for the job `spikeattn <argv>` (waits for it; argv names the
        job's params file, so one test's job is not another's), checked for `code`."""
        pattern = re.compile(rf"^job \d+ exit (-?\d+) after [\d.]+ s: {re.escape(' '.join(argv))}$")
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log.read_text().splitlines():
                found = pattern.match(line)
                if found:
                    assert code is None or int(found[1]) == code, line
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no job {argv} in the server log:\n{self.log.read_text()}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return jobs.setup(tmp_path_factory.mktemp("data"), jobs.tiny_params())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    sock, log = root / "w.sock", root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spikeattn.worker.server",
                str(sock),
                "--parent",
                str(os.getpid()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.time() + 180
    while "ready" not in log.read_text():
        assert proc.poll() is None, f"the server ended:\n{log.read_text()}"
        assert time.time() < deadline, "the server was not ready after 180 s"
        time.sleep(0.1)
    yield Server(sock, log)
    proc.terminate()
    assert proc.wait(30) == 0
    assert not sock.exists(), "the server removes its socket"


def _train(workdir: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen(
        jobs.train_command(workdir),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _wait_for_state(workdir: Path, proc: subprocess.Popen) -> int:
    state = jobs.run_dir(workdir) / "resume.pt"
    deadline = time.time() + 240
    while not state.exists():
        assert proc.poll() is None, f"the job ended before saving a state:\n{proc.stderr.read()}"
        assert time.time() < deadline, "no resume state after 240 s"
        time.sleep(0.005)
    return read_resume_state(state)["epoch"]


def test_a_served_job_equals_one_in_its_own_process(data_dir, server, tmp_path):
    own, served = (jobs.setup(tmp_path / n, jobs.tiny_params(), data_from=data_dir) for n in "ab")
    jobs.run(own, *jobs.TRAIN)
    proc = server.run(served, *jobs.TRAIN)
    assert proc.returncode == 0, proc.stderr
    server.served(jobs.train_command(served)[3:], code=0)
    assert "epochs: 100%" in proc.stderr, "the job's progress reaches the caller's stderr"
    a, b = (jobs.run_dir(w) for w in (own, served))
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv"), check_exact=True
    )
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert all(ma[k] == mb[k] for k in ("final", "best", "status"))
    wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["state_dict"] for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    from spikeattn.tracking import Tracker

    with Tracker(uri=f"sqlite:///{served / 'mlflow.db'}").locked() as client:
        run = client.get_run(mb["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["test_acc"] == mb["final"]["test_acc"]


def test_the_exit_status_and_error_reach_the_caller(data_dir, server, tmp_path):
    workdir = jobs.setup(tmp_path / "job", jobs.tiny_params(), data_from=data_dir)
    argv = ["train", "--study", "nope", "--cell", jobs.CELL, "--seed", "0"]
    proc = server.run(workdir, *argv)
    server.served(jobs.spikeattn(workdir, *argv)[3:], code=2)
    assert proc.returncode == 2
    assert proc.stderr.startswith("spikeattn train: error:") and "nope" in proc.stderr


def test_ctrl_c_to_the_callers_group_stops_the_job_which_then_resumes(data_dir, server, tmp_path):
    workdir = jobs.setup(
        tmp_path / "job", jobs.tiny_params(train={"epochs": EPOCHS}), data_from=data_dir
    )
    proc = _train(workdir, server.env(workdir), start_new_session=True)  # its own group
    _wait_for_state(workdir, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "spikeattn: stopped by Ctrl-C; nothing half-written was kept." in err
    server.served(jobs.train_command(workdir)[3:], code=130)
    assert not (jobs.run_dir(workdir) / "metrics.json").exists()
    saved = read_resume_state(jobs.run_dir(workdir) / "resume.pt")["epoch"]
    resumed = server.run(workdir, *jobs.TRAIN)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((jobs.run_dir(workdir) / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == saved >= 1


def test_the_job_of_a_caller_that_died_is_stopped(data_dir, server, tmp_path):
    workdir = jobs.setup(
        tmp_path / "job", jobs.tiny_params(train={"epochs": EPOCHS}), data_from=data_dir
    )
    proc = _train(workdir, server.env(workdir), start_new_session=True)
    _wait_for_state(workdir, proc)
    proc.kill()  # the caller alone: its job is in the server's care
    proc.communicate()
    line = server.served(jobs.train_command(workdir)[3:], timeout=120)
    assert " exit 130 " in line, "SIGTERM from the server: the job stops as a stopped job does"
    assert not (jobs.run_dir(workdir) / "metrics.json").exists()
