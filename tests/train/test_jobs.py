"""Real `spikeattn train` jobs: a job killed with SIGKILL resumes from its last epoch, continues
its MLflow run and ends exactly as an uninterrupted job; a NaN loss ends a job as diverged, not
as a crash; a job pins itself to a free GPU slot."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import jobs
import pandas as pd
import pytest
import torch

from spikeattn.io import file_digest
from spikeattn.train.checkpoint import read_resume_state

EPOCHS = 10


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The digits frames, built once and linked into each job's scratch directory."""
    return jobs.setup(tmp_path_factory.mktemp("data"), jobs.tiny_params())


def _store(workdir):
    from spikeattn.tracking import Tracker

    return Tracker(uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(workdir):
    with _store(workdir).locked() as client:
        exp = client.get_experiment_by_name("spikeattn")
        return [
            r
            for r in client.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags.get("spikeattn.kind") == "cell"
        ]


def _kill_after_first_epoch(workdir) -> int:
    """Start the job, SIGKILL it as soon as its first epoch's state is on disk; the epoch it had saved."""
    state = jobs.run_dir(workdir) / "resume.pt"
    proc = subprocess.Popen(
        jobs.train_command(workdir),
        cwd=workdir,
        env=jobs.job_env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not state.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"the job ended before saving a state:\n{proc.stderr.read()[-3000:]}"
            )
        assert time.time() < deadline, "no resume state after 240 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (jobs.run_dir(workdir) / "metrics.json").exists(), (
        "killed too late: the job had finished"
    )
    return read_resume_state(state)["epoch"]


def test_killed_job_resumes_and_matches_an_uninterrupted_one(data_dir, tmp_path):
    raw = jobs.tiny_params(train={"epochs": EPOCHS})
    whole = jobs.setup(tmp_path / "whole", raw, data_from=data_dir)
    killed = jobs.setup(tmp_path / "killed", raw, data_from=data_dir)
    jobs.run(whole, *jobs.TRAIN)

    saved = _kill_after_first_epoch(killed)
    assert 1 <= saved < EPOCHS
    [left] = _runs(killed)
    assert left.info.status == "RUNNING", "SIGKILL leaves the run open; the restart continues it"
    jobs.run(killed, *jobs.TRAIN)

    a, b = (jobs.run_dir(w) for w in (whole, killed))
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv"), check_exact=True
    )
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("final", "best", "status"):
        assert ma[key] == mb[key], key
    assert not {"firing_rates", "mean_firing_rate"} & set(ma), (
        "firing rates live in energy.json only"
    )
    assert (ma["resumed_from_epoch"], mb["resumed_from_epoch"]) == (0, saved)
    assert [m["checkpoint_sha256"] for m in (ma, mb)] == [
        file_digest(d / "checkpoint.pt") for d in (a, b)
    ]
    wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["state_dict"] for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed weights differ"
    assert not (b / "resume.pt").exists(), "the state is dropped once the outputs are written"
    for workdir in (whole, killed):  # firing rates: measured by the energy job, on the same weights
        jobs.run(workdir, "energy", "--study", jobs.STUDY, "--cell", jobs.CELL, "--seed", "0")
    ea, eb = (json.loads((d / "energy.json").read_text()) for d in (a, b))
    assert ea["firing_rates"] and ea["firing_rates"] == eb["firing_rates"]
    assert ea["mean_firing_rate"] == eb["mean_firing_rate"]

    [run] = _runs(killed)  # the same run, continued: each epoch logged exactly once
    assert run.info.run_id == left.info.run_id == mb["mlflow_run_id"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["mean_firing_rate"] == pytest.approx(
        eb["mean_firing_rate"]
    )  # the energy job logs it
    with _store(killed).locked() as client:
        history = client.get_metric_history(run.info.run_id, "test_acc")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    logged = {m.step: m.value for m in history}
    assert [logged[e] for e in range(1, EPOCHS + 1)] == pd.read_csv(a / "history.csv")[
        "test_acc"
    ].tolist()


def test_state_saved_with_other_settings_is_not_resumed(data_dir, tmp_path):
    workdir = jobs.setup(
        tmp_path / "job", jobs.tiny_params(train={"epochs": EPOCHS}), data_from=data_dir
    )
    _kill_after_first_epoch(workdir)
    raw = jobs.tiny_params(train={"epochs": 2, "lr": 2e-3})
    (workdir / "params.yaml").write_text(__import__("yaml").safe_dump(raw))
    proc = jobs.run(workdir, *jobs.TRAIN)
    assert "saved with other settings" in proc.stderr
    metrics = json.loads((jobs.run_dir(workdir) / "metrics.json").read_text())
    assert (
        metrics["resumed_from_epoch"] == 0
        and len(pd.read_csv(jobs.run_dir(workdir) / "history.csv")) == 2
    )


def test_nan_loss_ends_the_job_as_diverged(data_dir, tmp_path):
    # SGD at an absurd learning rate: the squared error overflows to inf within epoch 1.
    raw = jobs.tiny_params(train={"epochs": 3, "opt": "sgd", "lr": 1.0e20, "loss": "mse_mean"})
    workdir = jobs.setup(tmp_path / "job", raw, data_from=data_dir)
    jobs.run(workdir, *jobs.TRAIN)
    out = jobs.run_dir(workdir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert metrics["diverged"]["phase"] in ("train", "test")
    assert metrics["diverged"]["loss"] in ("nan", "inf", "-inf")
    history = pd.read_csv(out / "history.csv")
    assert len(history) == metrics["diverged"]["epoch"] - 1
    assert (
        history.drop(columns="lr").map(lambda v: pd.notna(v) and abs(v) < float("inf")).all().all()
    )

    jobs.run(workdir, "energy", "--study", jobs.STUDY, "--cell", jobs.CELL, "--seed", "0")
    energy = json.loads((out / "energy.json").read_text())
    assert energy["status"] == "diverged" and energy["energy_uj"] is None and energy["layers"] == []
    assert (
        energy["checkpoint_sha256"]
        == metrics["checkpoint_sha256"]
        == file_digest(out / "checkpoint.pt")
    )

    [run] = _runs(workdir)
    assert run.info.status == "FAILED"
    assert run.data.tags["spikeattn.status"] == "diverged"
    assert run.data.metrics["diverged"] == 1


def test_jobs_pin_themselves_to_free_gpu_slots(data_dir, tmp_path, monkeypatch):
    """Two fake GPUs: each job leases one and records the CUDA_VISIBLE_DEVICES it ran under
    (training itself runs on the CPU here; the slot logic is tested in tests/test_gpu_slots.py)."""
    raw = jobs.tiny_params(train={"epochs": 3})
    workdirs = [jobs.setup(tmp_path / f"job{i}", raw, data_from=data_dir) for i in range(2)]
    procs = []
    for w in workdirs:
        env = {
            **jobs.job_env(w),
            "SPIKEATTN_GPUS": "2",
            "SPIKEATTN_GPU_LOCK_DIR": str(tmp_path / "locks"),
        }
        procs.append(
            subprocess.Popen(
                jobs.train_command(w, "--no-track"),
                cwd=w,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    devices = [
        json.loads((jobs.run_dir(w) / "metrics.json").read_text())["cuda_visible_devices"]
        for w in workdirs
    ]
    assert set(devices) <= {"0", "1"} and all(devices)
