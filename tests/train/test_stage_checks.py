"""The train and energy stages in-process, on the tiny digits study: a second train of a running
cell x seed is refused; energy measures only the checkpoint metrics.json names, and says which."""

from __future__ import annotations

import json
import subprocess
import sys

import jobs
import pytest
import timm
import yaml

from spikeattn import data, paths, stages
from spikeattn.config import Params, ParamsError
from spikeattn.job_inputs import model_spec
from spikeattn.train.checkpoint import CheckpointError, save_checkpoint
from spikeattn.train.job import RUN_LOCK, RunBusyError, run_lock

# Another job holding the run's lock, as `spikeattn train` does while it trains (plain filelock,
# so the stand-in starts in milliseconds instead of importing torch).
HOLD = (
    "import filelock, sys; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
    "print('held', flush=True); sys.stdin.read()"
)


@pytest.fixture
def study(tmp_path, monkeypatch):
    """The tiny study's params, with tmp_path as the working directory (results/ and data/)."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(jobs.tiny_params(), sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return Params.load(tmp_path / "params.yaml")


def _out():
    return paths.run_dir(jobs.STUDY, jobs.CELL, 0)


def test_a_second_train_of_a_running_cell_and_seed_is_refused(study, tmp_path):
    out = _out()
    out.mkdir(parents=True)
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out / RUN_LOCK)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError) as err:
            stages.train(study, jobs.STUDY, jobs.CELL, 0, track=True)
        assert str(out) in str(err.value) and "is running" in str(err.value)
        assert [p.name for p in out.iterdir()] == [RUN_LOCK]  # no file written
        assert not (tmp_path / "mlflow.db").exists(), "no MLflow run opened"
    finally:
        first.kill()  # SIGKILL: its flock goes with it, nothing is left to clean up
        first.wait()
    with run_lock(out):
        pass


def test_an_unknown_cell_makes_no_run_directory(study, tmp_path):
    with pytest.raises(ParamsError, match="has no cell"):
        stages.train(study, jobs.STUDY, "no-such-cell", 0, track=False)
    assert not (tmp_path / "results").exists()


def _trained(params):
    """A freshly initialised model saved as the run's checkpoint, and the metrics.json naming
    it, as the train stage writes them (what energy reads)."""
    cell = params.cell(jobs.STUDY, jobs.CELL)
    name, kwargs = model_spec(params, cell)
    out = _out()
    digest = save_checkpoint(out / "checkpoint.pt", timm.create_model(name, **kwargs), name, kwargs)
    (out / "metrics.json").write_text(
        json.dumps({"status": "completed", "checkpoint_sha256": digest})
    )
    return out, digest


def test_energy_names_the_checkpoint_it_measured(study):
    data.prepare("digits", study.dataset("digits"), ".")
    stages.preprocess(study, "digits", 2, jobs.STUDY)
    out, digest = _trained(study)
    report = stages.energy(study, jobs.STUDY, jobs.CELL, 0, track=False)
    assert report["checkpoint_sha256"] == digest
    assert json.loads((out / "energy.json").read_text())["checkpoint_sha256"] == digest


def test_energy_refuses_a_checkpoint_other_than_metrics_jsons(study):
    out, _ = _trained(study)
    checkpoint = out / "checkpoint.pt"
    blob = bytearray(checkpoint.read_bytes())
    middle = len(blob) // 2
    blob[middle : middle + 64] = bytes(range(64))  # same size, a few weights garbled
    checkpoint.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError) as err:
        stages.energy(study, jobs.STUDY, jobs.CELL, 0, track=False)
    assert str(checkpoint) in str(err.value) and "--forcerun" in str(err.value)
    assert not (out / "energy.json").exists()
