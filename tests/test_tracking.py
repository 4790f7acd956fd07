"""Tests of spikeattn.tracking against real MLflow SQLite stores in temporary directories.

Every test changes into its own tmp_path, so the repository's own mlflow.db is never touched.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spikeattn import tracking
from spikeattn.tracking import CellRun, RunNotFoundError, Tracker

PKG_DIR = Path(tracking.__file__).parent


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One db for the in-process tests: building a fresh one costs ~1-3 s of migrations."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def tracker(store_uri, tmp_path, monkeypatch) -> Tracker:
    monkeypatch.chdir(tmp_path)
    return Tracker(uri=store_uri)


def _run(tracker: Tracker, run_id: str):
    with tracker.locked() as client:
        return client.get_run(run_id)


def _steps(tracker: Tracker, run_id: str, key: str) -> list[tuple[int, float]]:
    with tracker.locked() as client:
        history = client.get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def _artifacts(tracker: Tracker, run_id: str, path: str | None = None) -> list[str]:
    with tracker.locked() as client:
        return sorted(f.path for f in client.list_artifacts(run_id, path))


# ---------------------------------------------------------------- URIs (no store is opened)


def test_default_uri_is_sqlite_file_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker()
    assert tracker.uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracker.db_path == tmp_path.resolve() / "mlflow.db"
    assert not (tmp_path / "mlflow.db").exists(), "the store must open lazily"


def test_env_overrides_default_and_argument_overrides_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert Tracker().uri == f"sqlite:///{tmp_path}/env.db"
    assert Tracker(uri=f"sqlite:///{tmp_path}/arg.db").uri == f"sqlite:///{tmp_path}/arg.db"


def test_relative_sqlite_uri_is_pinned_to_cwd_and_servers_get_no_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Tracker(uri="sqlite:///sub/m.db").uri == f"sqlite:///{tmp_path.resolve()}/sub/m.db"
    server = Tracker(uri="http://localhost:5000")
    assert server.uri == "http://localhost:5000" and server.db_path is None


def test_importing_the_module_does_not_import_mlflow():
    code = ("import sys, types; pkg = types.ModuleType('spikeattn'); pkg.__path__ = [sys.argv[1]];"
            "sys.modules['spikeattn'] = pkg; import spikeattn.tracking;"
            "assert 'mlflow' not in sys.modules and 'filelock' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(PKG_DIR)], check=True, timeout=60)


def test_flatten_rejects_keys_that_collide():
    assert tracking.flatten({"opt": {"lr": 1, "betas": [0.9, 0.99]}, "T": 4}) == {
        "opt.lr": 1, "opt.betas": [0.9, 0.99], "T": 4}
    with pytest.raises(ValueError, match="given twice"):
        tracking.flatten({"a.b": 1, "a": {"b": 2}})


# ---------------------------------------------------------------- one run


def test_single_run_params_metrics_artifacts_status(tracker, tmp_path):
    coords = {"study": "s", "dataset": "dvs", "backbone": "vgg", "attention": "ma",
              "coding": "rate", "T": 4, "seed": 1, "cell": "dvs-vgg"}
    params = {"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "epochs": 5, "note": "x" * 7000}
    (tmp_path / "ckpt.txt").write_text("weights")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.txt").write_text("curve")

    with tracker.start_cell_run("s", "dvs-vgg", 1, coords, params) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1), "test_acc": None,
                             "spike_rate": math.nan}, step=epoch)
        run.log_artifacts([tmp_path / "ckpt.txt", tmp_path / "plots"], artifact_path="out")

    got = _run(tracker, run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "dvs-vgg/seed1"
    assert got.data.params["optim.lr"] == "0.001"
    assert got.data.params["optim.betas"] == "[0.9,0.99]"
    assert len(got.data.params["note"]) == 6000 and got.data.params["note"].endswith("[truncated]")
    tags = {k: got.data.tags[f"spikeattn.{k}"] for k in coords}
    assert tags == {k: str(v) for k, v in coords.items()}
    assert got.data.tags["spikeattn.kind"] == "cell"
    assert [s for s, _ in _steps(tracker, run.run_id, "train_loss")] == [0, 1, 2]
    assert all(math.isnan(v) for _, v in _steps(tracker, run.run_id, "spike_rate"))
    assert "test_acc" not in got.data.metrics
    assert _artifacts(tracker, run.run_id, "out") == ["out/ckpt.txt", "out/plots"]
    assert _artifacts(tracker, run.run_id, "out/plots") == ["out/plots/loss.txt"]

    db_dir = Path(tracker.db_path).parent
    assert got.info.artifact_uri.startswith((db_dir / "mlartifacts").as_uri())
    parent = _run(tracker, got.data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == "s"
    assert parent.data.tags["spikeattn.study"] == "s"
    assert parent.data.tags["spikeattn.kind"] == "study"


def test_exception_inside_context_marks_run_failed(tracker):
    with pytest.raises(RuntimeError, match="diverged"):
        with tracker.start_cell_run("s", "bad", 0, {}, {}) as run:
            run.log_metrics({"train_loss": 1.0}, step=0)
            raise RuntimeError("loss diverged")
    assert _run(tracker, run.run_id).info.status == "FAILED"


def test_missing_artifact_is_named_and_nothing_is_copied(tracker, tmp_path):
    (tmp_path / "ok.txt").write_text("ok")
    with tracker.start_cell_run("s", "c", 5, {}, {}) as run:
        with pytest.raises(FileNotFoundError, match="nope.txt"):
            run.log_artifacts([tmp_path / "ok.txt", tmp_path / "nope.txt"])
    assert _artifacts(tracker, run.run_id) == []


def test_contradicting_coordinate_is_rejected(tracker):
    with pytest.raises(ValueError, match="contradicts"):
        tracker.start_cell_run("s", "c", 0, {"seed": 3}, {})


# ---------------------------------------------------------------- resume (energy stage)


def test_resume_adds_metrics_and_artifacts_and_keeps_the_train_run_finished(tracker, tmp_path):
    with tracker.start_cell_run("s", "c", 2, {}, {"lr": 0.1}) as run:
        run.log_metrics({"test_acc": 0.5}, step=0)
    trained = _run(tracker, run.run_id).info
    (tmp_path / "energy.json").write_text("{}")
    time.sleep(0.01)

    with tracker.resume_cell_run(run.run_id) as resumed:
        assert isinstance(resumed, CellRun) and resumed.run_id == run.run_id
        assert _run(tracker, run.run_id).info.status == "FINISHED"  # not flipped to RUNNING
        resumed.log_params({"energy": {"e_ac_pj": 0.9}})
        resumed.log_metrics({"energy_mj": 1.5})
        resumed.log_artifacts([tmp_path / "energy.json"])

    info = _run(tracker, run.run_id)
    assert info.info.status == "FINISHED"
    assert info.info.end_time == trained.end_time  # the train job's duration is kept
    assert info.data.metrics == {"test_acc": 0.5, "energy_mj": 1.5}
    assert info.data.params == {"lr": "0.1", "energy.e_ac_pj": "0.9"}
    assert _artifacts(tracker, run.run_id) == ["energy.json"]

    with pytest.raises(ZeroDivisionError):
        with tracker.resume_cell_run(run.run_id):
            1 / 0
    assert _run(tracker, run.run_id).info.status == "FAILED"
    with tracker.resume_cell_run(run.run_id):  # the energy stage re-run succeeds
        pass
    assert _run(tracker, run.run_id).info.status == "FINISHED"


def test_resume_unknown_run_id_is_a_clear_error(tracker):
    with pytest.raises(RunNotFoundError, match="not in the tracking store"):
        tracker.resume_cell_run("0" * 32)
    with pytest.raises(RunNotFoundError, match="not in the tracking store"):
        tracker.resume_cell_run("not-a-run-id")


# ---------------------------------------------------------------- parallel jobs

# A job runs two phases, each started at the same moment in all jobs (a line on their stdin):
# 1. study "alpha" on a fresh db: all jobs migrate the new db and create the experiment at once;
# 2. study "beta" on the now migrated db: all jobs look up (and create) beta's parent at once.
# The package is loaded without running spikeattn/__init__.py (torch and timm: ~4 s a process).
# SPIKEATTN_TEST_NO_LOCK=1 swaps the lock for a no-op, to check that this test catches the races.
WORKER = textwrap.dedent("""
    import contextlib, os, sys, types
    from pathlib import Path
    pkg = types.ModuleType("spikeattn")
    pkg.__path__ = [sys.argv[1]]
    sys.modules["spikeattn"] = pkg
    from spikeattn import tracking
    import mlflow.tracking, mlflow.entities, mlflow.store.artifact.artifact_repository_registry
    import mlflow.store.tracking.sqlalchemy_store
    if os.environ.get("SPIKEATTN_TEST_NO_LOCK"):
        tracking._make_lock = lambda db: contextlib.nullcontext()
    cell, seed = sys.argv[2], int(sys.argv[3])
    tracker = tracking.Tracker()
    for study in sys.argv[4:]:
        Path(f"ready-{study}-{cell}").touch()
        assert sys.stdin.readline().strip() == study  # blocks until the test says go
        coords = {"study": study, "cell": cell, "seed": seed, "dataset": "dvs", "T": 4}
        with tracker.start_cell_run(study, cell, seed, coords, {"lr": 0.01, "job": cell}) as run:
            for epoch in range(5):
                run.log_metrics({"train_loss": 1 / (epoch + 1), "test_acc": epoch / 5}, step=epoch)
            Path(f"{study}-{cell}.txt").write_text(cell)
            run.log_artifacts([Path(f"{study}-{cell}.txt")])
""")

CELLS = [f"cell{i}" for i in range(4)]
STUDIES = ["alpha", "beta"]


def _run_jobs_in_step(root: Path) -> list[tuple[str, int, str]]:
    """Start one process per cell; release each phase once every job is waiting for it."""
    procs = []
    for seed, cell in enumerate(CELLS):
        with open(root / f"{cell}.log", "w") as log:  # a file: a pipe could fill up and block
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, str(PKG_DIR), cell, str(seed), *STUDIES],
                cwd=root, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                text=True))
    for study in STUDIES:
        deadline = time.time() + 120
        while not all((root / f"ready-{study}-{cell}").exists() for cell in CELLS):
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.005)
        for p in procs:
            with contextlib.suppress(BrokenPipeError):  # a job that already died
                p.stdin.write(f"{study}\n")
                p.stdin.flush()
    return [(cell, _wait(p), (root / f"{cell}.log").read_text()) for cell, p in zip(CELLS, procs)]


def _wait(proc: subprocess.Popen) -> int:
    try:
        proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def test_parallel_jobs_lose_nothing_and_share_one_parent_per_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    results = _run_jobs_in_step(tmp_path)
    failed = [f"--- {cell} (exit {rc}):\n{out[-3000:]}" for cell, rc, out in results if rc != 0]
    assert not failed, "\n".join(failed)

    tracker = Tracker()  # the jobs used the default URI: ./mlflow.db
    with tracker.locked() as client:
        runs = client.search_runs(
            [client.get_experiment_by_name("spikeattn").experiment_id], max_results=1000)
    parents = {s: [r for r in runs if r.data.tags.get("spikeattn.kind") == "study"
                   and r.data.tags.get("spikeattn.study") == s] for s in STUDIES}
    assert {s: len(p) for s, p in parents.items()} == {s: 1 for s in STUDIES}
    assert len(runs) == len(STUDIES) * (1 + len(CELLS))

    for study in STUDIES:
        parent_id = parents[study][0].info.run_id
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
        assert sorted(r.data.tags["spikeattn.cell"] for r in children) == CELLS
        for child in children:
            cell = child.data.tags["spikeattn.cell"]
            assert child.info.status == "FINISHED"
            assert child.info.run_name == f"{cell}/seed{child.data.tags['spikeattn.seed']}"
            assert child.data.params == {"lr": "0.01", "job": cell}
            for key in ("train_loss", "test_acc"):
                assert [s for s, _ in _steps(tracker, child.info.run_id, key)] == [0, 1, 2, 3, 4]
            assert _artifacts(tracker, child.info.run_id) == [f"{study}-{cell}.txt"]
