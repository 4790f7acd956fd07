"""Tests of spikeattn.tracking against real MLflow stores (SQLite, and a real `mlflow server`
on 127.0.0.1) in temporary directories.

Every test changes into its own tmp_path, so the repository's own mlflow.db is never touched.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from spikeattn import tracking
from spikeattn.tracking import CellRun, RunNotFoundError, Tracker

PKG_DIR = Path(tracking.__file__).parents[1]  # spikeattn/, for subprocesses


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
    code = (
        "import sys, types; pkg = types.ModuleType('spikeattn'); pkg.__path__ = [sys.argv[1]];"
        "sys.modules['spikeattn'] = pkg; import spikeattn.tracking;"
        "assert 'mlflow' not in sys.modules and 'filelock' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(PKG_DIR)], check=True, timeout=60)


def test_flatten_rejects_keys_that_collide():
    assert tracking.flatten({"opt": {"lr": 1, "betas": [0.9, 0.99]}, "T": 4}) == {
        "opt.lr": 1,
        "opt.betas": [0.9, 0.99],
        "T": 4,
    }
    with pytest.raises(ValueError, match="given twice"):
        tracking.flatten({"a.b": 1, "a": {"b": 2}})


# ---------------------------------------------------------------- one run


def test_single_run_params_metrics_artifacts_status(tracker, tmp_path):
    coords = {
        "study": "s",
        "dataset": "dvs",
        "backbone": "vgg",
        "attention": "ma",
        "coding": "rate",
        "T": 4,
        "seed": 1,
        "cell": "dvs-vgg",
    }
    params = {"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "epochs": 5, "note": "x" * 7000}
    (tmp_path / "ckpt.txt").write_text("weights")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.txt").write_text("curve")

    with tracker.start_cell_run("s", "dvs-vgg", 1, coords, params) as run:
        for epoch in range(3):
            run.log_metrics(
                {"train_loss": 1.0 / (epoch + 1), "test_acc": None, "spike_rate": math.nan},
                step=epoch,
            )
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


# ------------------------------------------- a later stage adds to a run; a killed job continues


def test_later_stage_adds_metrics_and_artifacts_and_keeps_the_train_run_finished(tracker, tmp_path):
    with tracker.start_cell_run("s", "c", 2, {}, {"lr": 0.1}) as run:
        run.log_metrics({"test_acc": 0.5}, step=0)
    trained = _run(tracker, run.run_id).info
    (tmp_path / "energy.json").write_text("{}")
    time.sleep(0.01)

    with tracker.add_to_cell_run(run.run_id) as energy_run:
        assert isinstance(energy_run, CellRun) and energy_run.run_id == run.run_id
        assert _run(tracker, run.run_id).info.status == "FINISHED"  # not flipped to RUNNING
        energy_run.log_params({"energy": {"e_ac_pj": 0.9}})
        energy_run.log_metrics({"energy_mj": 1.5})
        energy_run.log_artifacts([tmp_path / "energy.json"])

    info = _run(tracker, run.run_id)
    assert info.info.status == "FINISHED"
    assert info.info.end_time == trained.end_time  # the train job's duration is kept
    assert info.data.metrics == {"test_acc": 0.5, "energy_mj": 1.5}
    assert info.data.params == {"lr": "0.1", "energy.e_ac_pj": "0.9"}
    assert _artifacts(tracker, run.run_id) == ["energy.json"]

    with pytest.raises(ZeroDivisionError):
        with tracker.add_to_cell_run(run.run_id):
            1 / 0
    assert _run(tracker, run.run_id).info.status == "FAILED"
    with tracker.add_to_cell_run(run.run_id):  # the energy stage re-run succeeds
        pass
    assert _run(tracker, run.run_id).info.status == "FINISHED"


def test_adding_to_an_unknown_run_id_is_a_clear_error(tracker):
    with pytest.raises(RunNotFoundError, match="not in the tracking store"):
        tracker.add_to_cell_run("0" * 32)
    with pytest.raises(RunNotFoundError, match="not in the tracking store"):
        tracker.add_to_cell_run("not-a-run-id")


def test_continued_run_logs_only_missing_steps_and_ends_now(tracker):
    run = tracker.start_cell_run("s", "killed", 0, {}, {"lr": 0.1})
    for epoch in range(3):
        run.log_metrics({"train_loss": 1 / (epoch + 1)}, step=epoch)
    # The job is SIGKILLed here: the run stays RUNNING. Its restart is a new process.
    again = Tracker(uri=tracker.uri).continue_cell_run(run.run_id)
    assert again.run_id == run.run_id and not again.later_stage
    assert again.logged_steps("train_loss") == {0, 1, 2}
    assert again.logged_steps("never_logged") == set()
    with again:
        assert _run(tracker, run.run_id).info.status == "RUNNING"
        for epoch in range(5):
            if epoch not in again.logged_steps("train_loss"):
                again.log_metrics({"train_loss": 1 / (epoch + 1)}, step=epoch)
        again.set_tags({"spikeattn.status": "diverged", "spikeattn.at": {"epoch": 4}})
    got = _run(tracker, run.run_id)
    assert got.info.status == "FINISHED"
    assert [s for s, _ in _steps(tracker, run.run_id, "train_loss")] == [0, 1, 2, 3, 4]
    assert got.data.tags["spikeattn.status"] == "diverged"
    assert got.data.tags["spikeattn.at"] == '{"epoch":4}'
    assert got.data.params == {"lr": "0.1"}

    for status in ("FAILED", "KILLED", "FINISHED"):  # whatever the killed job left behind
        with tracker.locked() as client:
            client.set_terminated(run.run_id, status, end_time=1000)
        continued = tracker.continue_cell_run(run.run_id)
        assert _run(tracker, run.run_id).info.status == "RUNNING"
        before = int(time.time() * 1000)
        continued.finish()
        info = _run(tracker, run.run_id).info
        assert info.status == "FINISHED" and info.end_time >= before  # ends now, not at 1000
    with pytest.raises(RunNotFoundError, match="not in the tracking store"):
        tracker.continue_cell_run("0" * 32)


def test_ensure_store_creates_db_experiment_and_parents_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    exp_id = Tracker(uri=uri).ensure_store(studies=["a", "b"])
    assert (tmp_path / "new" / "mlflow.db").exists()
    again = Tracker(uri=uri)  # another process, e.g. the next Snakemake invocation
    assert again.ensure_store(studies=["b", "a"]) == exp_id
    assert again.ensure_store() == exp_id
    with again.locked() as client:
        exp = client.get_experiment(exp_id)
        parents = client.search_runs([exp_id])
    assert exp.name == "spikeattn"
    assert exp.artifact_location == (tmp_path / "new" / "mlartifacts" / "spikeattn").as_uri()
    assert sorted(
        (r.data.tags["spikeattn.study"], r.data.tags["spikeattn.kind"], r.info.status)
        for r in parents
    ) == [("a", "study", "FINISHED"), ("b", "study", "FINISHED")]
    with again.start_cell_run("a", "c", 0, {}, {}) as run:  # a job finds its parent
        pass
    parent_a = next(r.info.run_id for r in parents if r.data.tags["spikeattn.study"] == "a")
    assert _run(again, run.run_id).data.tags["mlflow.parentRunId"] == parent_a


# ---------------------------------------------------------------- retries


def _raised(
    make: Callable[[], BaseException], cause: BaseException, *, chained: bool = True
) -> BaseException:
    """`make()` raised while handling `cause`: `raise ... from cause` if `chained`, else a plain
    `raise` inside `except` (as MLflow's REST client does), so the error chain is the real one."""
    try:
        try:
            raise cause
        except BaseException:
            if chained:
                raise make() from cause
            raise make()  # noqa: B904
    except BaseException as err:
        return err


def _sqlite_error(text: str) -> BaseException:
    """What MLflow's SQLite store raises: MlflowException from SQLAlchemy from sqlite3."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    dbapi = sqlite3.OperationalError(text)
    wrapped = _raised(lambda: sqlalchemy.exc.OperationalError("SELECT 1", {}, dbapi), dbapi)
    return _raised(
        lambda: MlflowException(message=wrapped, error_code=TEMPORARILY_UNAVAILABLE), wrapped
    )


def _http_error(exc: BaseException) -> BaseException:
    """What MLflow's REST client raises once its own HTTP retries gave up."""
    from mlflow.exceptions import MlflowException

    return _raised(
        lambda: MlflowException(
            f"API request to http://127.0.0.1:5000/api failed with exception {exc}"
        ),
        exc,
        chained=False,
    )


def test_transient_errors_are_told_apart_from_real_ones(monkeypatch):
    import requests
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(MlflowException) as refused:
        MlflowClient(f"http://127.0.0.1:{closed}").get_experiment_by_name("x")

    transient = [
        _sqlite_error("database is locked"),
        _sqlite_error("database is busy"),
        sqlite3.OperationalError("database is locked"),
        refused.value,
        _http_error(requests.exceptions.RetryError("too many 503 error responses")),
        _http_error(requests.exceptions.ReadTimeout("read timed out")),
        RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}),
        RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}),
    ]
    permanent = [
        _sqlite_error("no such table: runs"),
        _sqlite_error("disk I/O error"),
        sqlite3.OperationalError("unable to open database file"),
        MlflowException("Changing param values is not allowed", error_code=TEMPORARILY_UNAVAILABLE),
        _http_error(requests.exceptions.SSLError("certificate verify failed")),
        _http_error(requests.exceptions.InvalidURL("bad url")),
        RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}),
        RestException({"error_code": "INTERNAL_ERROR", "message": "bug"}),
        ValueError("database is locked"),
        TimeoutError(),
    ]
    assert [tracking.is_transient(e) for e in transient] == [True] * len(transient)
    assert [tracking.is_transient(e) for e in permanent] == [False] * len(permanent)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record backoff sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(tracking.retry, "sleep", slept.append)
    return slept


def _flaky(monkeypatch, client, method: str, errors: list, after: bool = False) -> list:
    """Make `client.<method>` raise errors[0], errors[1], ... (after really running it if
    `after`: the write happened, its answer got lost), then work; returns its calls."""
    real = getattr(client, method)
    calls: list = []

    def flaky(*args, **kwargs):
        calls.append((args, kwargs))
        if len(calls) > len(errors):
            return real(*args, **kwargs)
        if after:
            real(*args, **kwargs)
        raise errors[len(calls) - 1]

    monkeypatch.setattr(client, method, flaky)
    return calls


def test_locked_store_is_retried_with_growing_jittered_backoff(tracker, sleeps, monkeypatch):
    from mlflow.exceptions import MlflowException

    with tracker.start_cell_run("s", "retry", 0, {}, {}) as run:
        with tracker.locked() as client:
            pass
        calls = _flaky(monkeypatch, client, "log_batch", [_sqlite_error("database is locked")] * 3)
        run.log_metrics({"loss": 0.5}, step=7)
        assert len(calls) == 4 and len(sleeps) == 3
        for i, slept in enumerate(sleeps):  # 0.5, 1, 2 s, each jittered down to at most half
            base = tracking.RETRY_FIRST_S * 2**i
            assert base / 2 <= slept <= base
        assert _steps(tracker, run.run_id, "loss") == [(7, 0.5)]

        sleeps.clear()
        calls = _flaky(
            monkeypatch,
            client,
            "log_batch",
            [MlflowException("Changing param values is not allowed", error_code=1001)],
        )
        with pytest.raises(MlflowException, match="Changing param"):
            run.log_params({"lr": 2})
        assert len(calls) == 1 and sleeps == []  # not transient: raised at once

        calls = _flaky(monkeypatch, client, "log_batch", [_sqlite_error("no such table: x")])
        with pytest.raises(MlflowException, match="no such table"):
            run.log_metrics({"loss": 0.1}, step=8)
        assert len(calls) == 1 and sleeps == []

        calls = _flaky(
            monkeypatch,
            client,
            "log_batch",
            [_sqlite_error("database is locked")] * tracking.RETRY_TRIES,
        )
        with pytest.raises(MlflowException, match="database is locked") as gave_up:
            run.log_metrics({"loss": 0.2}, step=9)
        assert len(calls) == tracking.RETRY_TRIES and len(sleeps) == tracking.RETRY_TRIES - 1
        assert sum(sleeps) <= tracking.RETRY_BUDGET_S
        assert f"after {tracking.RETRY_TRIES} tries" in "".join(gave_up.value.__notes__)
    assert _run(tracker, run.run_id).info.status == "FINISHED"


def test_retries_stop_when_the_time_budget_is_spent():
    calls = []

    def always_locked(attempt):
        calls.append(attempt)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        tracking.retry_transient(always_locked, "test", budget_s=0.0)
    assert calls == [0]


def test_retried_creation_whose_answer_was_lost_creates_no_second_run(tracker, sleeps, monkeypatch):
    import requests

    with tracker.locked() as client:
        pass
    lost = _http_error(requests.exceptions.ConnectionError("Connection aborted"))
    calls = _flaky(monkeypatch, client, "create_run", [lost, lost], after=True)
    # try 1 creates the parent (answer lost); try 2 finds it and creates the child (answer
    # lost); try 3 finds the child by its create token
    with tracker.start_cell_run("lost", "c", 0, {}, {"lr": 1}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert len(calls) == 2 and len(sleeps) == 2
    with tracker.locked() as client:
        runs = client.search_runs([tracker._experiment_id], "tags.`spikeattn.study` = 'lost'")
    kinds = sorted((r.data.tags["spikeattn.kind"], r.info.status) for r in runs)
    assert kinds == [("cell", "FINISHED"), ("study", "FINISHED")]
    child = next(r for r in runs if r.data.tags["spikeattn.kind"] == "cell")
    assert child.info.run_id == run.run_id and child.data.params == {"lr": "1"}


def test_run_logs_through_a_write_lock_held_elsewhere(tmp_path, monkeypatch, caplog):
    from sqlalchemy import event

    monkeypatch.chdir(tmp_path)
    tracker = Tracker(uri=f"sqlite:///{tmp_path}/mlflow.db")
    tracker.ensure_store()
    run = tracker.start_cell_run("s", "c", 0, {}, {})
    with tracker.locked() as client:
        engine = client._tracking_client.store.engine

    # MLflow lets SQLite wait up to 20 s for a lock; shorten that here so that a 2 s hold
    # fails the store as a longer one would (a slow `mlflow ui` query, a copy of the db, ...)
    def short_busy_wait(conn, cursor, statement, parameters, context, executemany):
        return statement.replace("busy_timeout = 20000", "busy_timeout = 50"), parameters

    event.listen(engine, "before_cursor_execute", short_busy_wait, retval=True)
    holder = sqlite3.connect(tracker.db_path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # no other connection may read or write now
        release = threading.Timer(2.0, holder.execute, ["COMMIT"])
        release.start()
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="spikeattn.tracking"):
            run.log_metrics({"loss": 1.0, "acc": 0.5}, step=3)
        waited = time.monotonic() - started
        release.join()
    finally:
        event.remove(engine, "before_cursor_execute", short_busy_wait)
        holder.close()
    run.finish()
    assert waited >= 1.9, "the write went through while the db was locked?"
    assert any("transient error" in r.getMessage() for r in caplog.records)
    assert _steps(tracker, run.run_id, "loss") == [(3, 1.0)]
    assert _steps(tracker, run.run_id, "acc") == [(3, 0.5)]
    assert _run(tracker, run.run_id).info.status == "FINISHED"


def test_experiment_created_by_another_job_meanwhile_is_used(tracker, monkeypatch):
    exp_id = tracker.ensure_store()
    late = Tracker(uri=tracker.uri)  # a job that looked before the other created it
    with late.locked() as client:
        real = client.get_experiment_by_name
    calls = []
    monkeypatch.setattr(
        client,
        "get_experiment_by_name",
        lambda name: calls.append(name) or (real(name) if len(calls) > 1 else None),
    )
    assert late.ensure_store() == exp_id and len(calls) == 2


def test_without_a_lock_parallel_parents_settle_on_the_earliest(tracker, sleeps):
    tags = {"spikeattn.study": "race", "spikeattn.kind": "study"}
    with tracker.locked() as client:
        exp_id = tracker._experiment_id_locked(client)
        first, used, late = (
            client.create_run(exp_id, start_time=t, tags=tags, run_name="race")
            for t in (1000, 2000, 3000)
        )
        client.create_run(exp_id, tags={"mlflow.parentRunId": used.info.run_id})
        for own in (late, used, first):  # what each of three racing jobs does after creating
            assert (
                tracker._settle_parent(client, exp_id, "race", own.info.run_id) == first.info.run_id
            )
        stages = [client.get_run(r.info.run_id).info.lifecycle_stage for r in (first, used, late)]
    assert stages == ["active", "active", "deleted"]  # `used` has a child: kept
    assert sleeps == [tracking.PARENT_SETTLE_S] * 3


def test_without_a_lock_finished_children_move_to_a_parent_that_arrived_late(
    tracker, sleeps, monkeypatch
):
    # A server store: no lock, so the settle and re-homing paths run (against SQLite here).
    monkeypatch.setattr(tracker, "db_path", None)
    tags = {"spikeattn.study": "late", "spikeattn.kind": "study"}
    with tracker.locked() as client:
        exp_id = tracker._experiment_id_locked(client)
        seen = client.create_run(exp_id, start_time=2000, tags=tags, run_name="late")
    a = tracker.start_cell_run("late", "a", 0, {}, {})
    b = tracker.start_cell_run("late", "b", 0, {}, {})
    with tracker.locked() as client:  # answered after both jobs looked, stamped earlier
        earliest = client.create_run(exp_id, start_time=1000, tags=tags, run_name="late")
    parent = lambda run: _run(tracker, run.run_id).data.tags["mlflow.parentRunId"]  # noqa: E731
    assert parent(a) == parent(b) == seen.info.run_id
    a.finish()
    assert parent(a) == earliest.info.run_id
    assert _run(tracker, seen.info.run_id).info.lifecycle_stage == "active"  # b is still in it
    b.finish("FAILED")
    assert parent(b) == earliest.info.run_id
    assert _run(tracker, seen.info.run_id).info.lifecycle_stage == "deleted"
    assert _run(tracker, earliest.info.run_id).info.lifecycle_stage == "active"


# ---------------------------------------------------------------- the tracking server


def test_server_command_serves_the_trackers_db_with_artifacts_next_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the jobs' URI
    argv = tracking.server_command()
    assert argv[:3] == [
        "env",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        "MLFLOW_DISABLE_TELEMETRY=true",
    ]
    assert argv[3:7] == [sys.executable, "-m", "mlflow", "server"]
    opt = lambda name: argv[argv.index(name) + 1]  # noqa: E731
    assert (opt("--host"), opt("--port"), opt("--workers")) == ("127.0.0.1", "5000", "1")
    assert opt("--backend-store-uri") == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert opt("--artifacts-destination") == str(tmp_path.resolve() / "mlartifacts")
    assert "--serve-artifacts" in argv

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/m.db")
    argv = tracking.server_command(port=5123, workers=2)
    assert opt("--backend-store-uri") == f"sqlite:///{tmp_path.resolve()}/sub/m.db"
    assert opt("--artifacts-destination") == str(tmp_path.resolve() / "sub" / "mlartifacts")
    assert (opt("--port"), opt("--workers")) == ("5123", "2")
    argv = tracking.server_command("sqlite:////x/y.db", Path("arts"), host="::1")
    assert opt("--backend-store-uri") == "sqlite:////x/y.db"
    assert opt("--artifacts-destination") == str(tmp_path.resolve() / "arts")
    assert opt("--host") == "::1"
    assert opt("--allowed-hosts") == tracking.loopback_allowed_hosts("::1")
    assert "--app-name" not in argv  # loopback: no authentication (see test_tracking_security)


# ---------------------------------------------------------------- parallel jobs

# A job runs two phases, each started at the same moment in all jobs (a file appears):
# 1. study "alpha" on a fresh db: all jobs migrate the new db and create the experiment at once;
# 2. study "beta" on the now migrated db: all jobs look up (and create) beta's parent at once.
# One launcher imports the package and mlflow once (without running spikeattn/__init__.py, which
# imports torch and timm), then forks one process per job: importing mlflow costs ~3 s of CPU a
# process. The jobs are still separate processes, each with its own connections and lock.
# SPIKEATTN_TEST_NO_LOCK=1 swaps the lock for a no-op, to check that this test catches the races.
# With MLFLOW_TRACKING_URI set (a server) the jobs skip importing the SQLite store.
WORKER = textwrap.dedent("""
    import contextlib, os, sys, time, traceback, types
    from pathlib import Path
    pkg = types.ModuleType("spikeattn")
    pkg.__path__ = [sys.argv[1]]
    sys.modules["spikeattn"] = pkg
    from spikeattn import tracking
    import mlflow.tracking, mlflow.entities, mlflow.store.artifact.artifact_repository_registry
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow.store.tracking.sqlalchemy_store
    if os.environ.get("SPIKEATTN_TEST_NO_LOCK"):
        tracking.store.make_lock = lambda db: contextlib.nullcontext()

    def job(cell, seed, studies):
        tracker = tracking.Tracker()
        for study in studies:
            Path(f"ready-{study}-{cell}").touch()
            deadline = time.time() + 120
            while not Path(f"go-{study}").exists():  # blocks until the test says go
                assert time.time() < deadline, "no go from the test"
                time.sleep(0.002)
            coords = {"study": study, "cell": cell, "seed": seed, "dataset": "dvs", "T": 4}
            params = {"lr": 0.01, "job": cell}
            with tracker.start_cell_run(study, cell, seed, coords, params) as run:
                for epoch in range(5):
                    run.log_metrics({"train_loss": 1 / (epoch + 1), "test_acc": epoch / 5},
                                    step=epoch)
                Path(f"{study}-{cell}.txt").write_text(cell)
                run.log_artifacts([Path(f"{study}-{cell}.txt")])

    jobs = {}
    for seed, cell in enumerate(sys.argv[2].split(",")):
        pid = os.fork()
        if pid == 0:
            out = os.open(f"{cell}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = 0
            try:
                job(cell, seed, sys.argv[3:])
            except BaseException:
                traceback.print_exc()
                Path(f"failed-{cell}").touch()  # the test then stops waiting for this job
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        jobs[pid] = cell
    failed = [cell for pid, cell in jobs.items()
              if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
    print("failed:", *failed)
    sys.exit(1 if failed else 0)
""")

CELLS = [f"cell{i}" for i in range(8)]
STUDIES = ["alpha", "beta"]
METRICS = ["train_loss", "test_acc"]
EPOCHS = 5


def _start_jobs(root: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The launcher of one process per cell; each waits for its go before touching the store."""
    with open(root / "jobs.log", "w") as log:  # a file: a pipe could fill up and block
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, str(PKG_DIR), ",".join(CELLS), *STUDIES],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _release_in_step(root: Path, jobs: subprocess.Popen) -> None:
    """Release each phase once every job is waiting for it."""
    for study in STUDIES:
        deadline = time.time() + 120
        while not all((root / f"ready-{study}-{cell}").exists() for cell in CELLS):
            if time.time() > deadline or jobs.poll() is not None or any(root.glob("failed-*")):
                break
            time.sleep(0.005)
        (root / f"go-{study}").touch()


def _finish_jobs(root: Path, jobs: subprocess.Popen) -> list[str]:
    """Wait for every job; the failures' logs (none: all went well)."""
    try:
        jobs.wait(timeout=180)
    except subprocess.TimeoutExpired:
        jobs.kill()  # the jobs give up by themselves: they wait for a go at most 120 s
        jobs.wait()
    if jobs.returncode == 0:
        return []
    logs = [f"--- launcher (exit {jobs.returncode}): {(root / 'jobs.log').read_text()[-3000:]}"]
    for cell in CELLS:
        out = (root / f"{cell}.log").read_text() if (root / f"{cell}.log").exists() else ""
        if "Traceback" in out:
            logs.append(f"--- {cell}:\n{out[-3000:]}")
    return logs


def _expected() -> dict:
    pairs = [(study, cell) for study in STUDIES for cell in CELLS]
    return {
        "runs": len(STUDIES) + len(pairs),
        "parents": {study: 1 for study in STUDIES},
        "children of each parent": {study: CELLS for study in STUDIES},
        "finished children": len(pairs),
        "params": {pair: {"lr": "0.01", "job": pair[1]} for pair in pairs},
        "steps": {(*pair, key): list(range(EPOCHS)) for pair in pairs for key in METRICS},
        "artifacts": {pair: [f"{pair[0]}-{pair[1]}.txt"] for pair in pairs},
    }


def _counted(tracker: Tracker) -> dict:
    """What arrived, read through the tracker's store, shaped like `_expected()`."""
    with tracker.locked() as client:
        exp_id = client.get_experiment_by_name("spikeattn").experiment_id
        runs = client.search_runs([exp_id], max_results=1000)
    parents = {
        r.info.run_id: r.data.tags["spikeattn.study"]
        for r in runs
        if r.data.tags.get("spikeattn.kind") == "study"
    }
    children = [r for r in runs if r.data.tags.get("spikeattn.kind") == "cell"]
    key = lambda r: (r.data.tags["spikeattn.study"], r.data.tags["spikeattn.cell"])  # noqa: E731
    return {
        "runs": len(runs),
        "parents": {s: list(parents.values()).count(s) for s in sorted(set(parents.values()))},
        "children of each parent": {
            s: sorted(
                r.data.tags["spikeattn.cell"]
                for r in children
                if parents.get(r.data.tags["mlflow.parentRunId"]) == s
                and r.data.tags["spikeattn.study"] == s
            )
            for s in sorted(set(parents.values()))
        },
        "finished children": sum(
            r.info.status == "FINISHED"
            and r.info.run_name == f"{key(r)[1]}/seed{r.data.tags['spikeattn.seed']}"
            for r in children
        ),
        "params": {key(r): r.data.params for r in children},
        "steps": {
            (*key(r), m): [s for s, _ in _steps(tracker, r.info.run_id, m)]
            for r in children
            for m in METRICS
        },
        "artifacts": {key(r): _artifacts(tracker, r.info.run_id) for r in children},
    }


def test_parallel_jobs_lose_nothing_and_share_one_parent_per_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    jobs = _start_jobs(tmp_path)
    _release_in_step(tmp_path, jobs)
    failed = _finish_jobs(tmp_path, jobs)
    assert not failed, "\n".join(failed)
    assert _counted(Tracker()) == _expected()  # the jobs used the default URI: ./mlflow.db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _mlflow_server(argv: list[str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run the server in its own process group; stop the whole group however the test ends."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # anything of it still there
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited:\n{log_path.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.2)
    pytest.fail(f"mlflow server not healthy after {timeout} s:\n{log_path.read_text()[-3000:]}")


def _status(port: int, host: str, headers: dict[str, str] | None = None) -> int:
    """The status of a read request to the server on 127.0.0.1:port with this Host header."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        con.request(
            "GET",
            "/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Host": host, **(headers or {})},
        )
        return con.getresponse().status
    finally:
        con.close()


def _counted_in_db(db: Path) -> dict:
    """The same counts straight from the SQLite file the server wrote."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        active = (
            "SELECT run_uuid FROM runs JOIN experiments USING (experiment_id) "
            "WHERE runs.lifecycle_stage = 'active' AND experiments.name = 'spikeattn'"
        )
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "runs": one(f"SELECT count(*) FROM ({active})"),
            "parents": one(
                f"SELECT count(*) FROM tags WHERE key = 'spikeattn.kind' "
                f"AND value = 'study' AND run_uuid IN ({active})"
            ),
            "params": one(f"SELECT count(*) FROM params WHERE run_uuid IN ({active})"),
            "metric rows": one(f"SELECT count(*) FROM metrics WHERE run_uuid IN ({active})"),
            "metric steps": one(
                f"SELECT count(*) FROM (SELECT DISTINCT run_uuid, key, step "
                f"FROM metrics WHERE run_uuid IN ({active}))"
            ),
        }
    finally:
        con.close()


def test_jobs_logging_through_a_local_mlflow_server_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # The repository's situation: mlflow.db and its experiment (file:// artifacts next to the
    # db) were made by earlier direct runs; the server then serves that db.
    Tracker().ensure_store()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    (tmp_path / "upload.txt").write_text("through the server")
    with _mlflow_server(tracking.server_command(port=port), log_path) as server:
        jobs = _start_jobs(tmp_path, {**os.environ, "MLFLOW_TRACKING_URI": url})
        try:
            _wait_healthy(url, server, log_path)
            # Only loopback names pass the Host check; MLflow's default admits private networks.
            assert _status(port, "localhost:8080") == _status(port, f"[::1]:{port}") == 200
            assert _status(port, f"10.0.0.7:{port}") == _status(port, "evil.example") == 403
            Tracker(uri=url).ensure_store(studies=["alpha"])  # as Snakemake's onstart would;
            _release_in_step(tmp_path, jobs)  # beta's parent is left to the racing jobs
        finally:
            failed = _finish_jobs(tmp_path, jobs)
        assert not failed, "\n".join(failed)
        assert _counted(Tracker(uri=url)) == _expected()

        # An experiment the server creates: its artifacts are uploaded through the server.
        served = Tracker(uri=url, experiment="served")
        with served.start_cell_run("s", "c", 0, {}, {}) as run:
            run.log_artifacts([tmp_path / "upload.txt"], artifact_path="out")
        assert run.artifact_uri.startswith("mlflow-artifacts:/")
        assert _artifacts(served, run.run_id, "out") == ["out/upload.txt"]

        # MLflow's HTTP layer re-sent a create whose answer got lost: the extra run is deleted.
        with served.locked() as client:
            real = client.create_run
        monkeypatch.setattr(client, "create_run", lambda *a, **k: [real(*a, **k) for _ in "12"][1])
        with served.start_cell_run("s", "twice", 0, {}, {}) as twice:
            pass
        with served.locked() as client:
            found = client.search_runs([served._experiment_id], "tags.`spikeattn.cell` = 'twice'")
        assert [r.info.run_id for r in found] == [twice.run_id]
    log = log_path.read_text()
    assert "database is locked" not in log
    assert not re.findall(r'" (?:429|5\d\d) ', log), "the server answered with errors"
    assert _counted_in_db(tmp_path / "mlflow.db") == {
        "runs": len(STUDIES) * (1 + len(CELLS)),
        "parents": len(STUDIES),
        "params": 2 * len(STUDIES) * len(CELLS),
        "metric rows": len(STUDIES) * len(CELLS) * len(METRICS) * EPOCHS,
        "metric steps": len(STUDIES) * len(CELLS) * len(METRICS) * EPOCHS,
    }
    on_disk = sorted(p.name for p in (tmp_path / "mlartifacts").rglob("*.txt"))
    assert on_disk == sorted([f"{s}-{c}.txt" for s in STUDIES for c in CELLS] + ["upload.txt"])


# ---------------------------------------------------------------- exposure of the server


def test_server_refuses_other_hosts_without_opt_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "gpu-box.example", ""):
        with pytest.raises(tracking.TrackingError, match="--allow-remote") as refused:
            tracking.server_command(host=host, port=5123)
        assert "ssh -N -L 5123:127.0.0.1:5123" in str(refused.value)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        argv = tracking.server_command(host=host)
        assert "--app-name" not in argv
        allowed = argv[argv.index("--allowed-hosts") + 1]
        assert allowed == tracking.loopback_allowed_hosts(host)
    assert not list(tmp_path.iterdir()), "a refused or loopback server writes no auth files"


def test_loopback_allowed_hosts_admit_loopback_names_only():
    """Checked with MLflow's own matcher, as its Host middleware applies the patterns."""
    from mlflow.server.security_utils import get_default_allowed_hosts, is_allowed_host_header

    allowed = tracking.loopback_allowed_hosts().split(",")
    for host in ("127.0.0.1:5000", "localhost:8080", "[::1]:5000", "localhost", "127.0.0.1"):
        assert is_allowed_host_header(allowed, host), host
    for host in (
        "10.0.0.7:5000",
        "192.168.1.2",
        "172.16.0.1:5000",
        "evil.example",
        "127.0.0.1.evil.example:5000",
        "[fd00::1]:5000",
        "",
    ):
        assert not is_allowed_host_header(allowed, host), host
    assert is_allowed_host_header(get_default_allowed_hosts(), "10.0.0.7:5000")  # the reason
    assert is_allowed_host_header(
        tracking.loopback_allowed_hosts("127.0.0.2").split(","), "127.0.0.2:5000"
    )


@pytest.fixture
def remote_env(monkeypatch, tmp_path) -> Path:
    """A fresh folder as working directory, and no auth settings from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_AUTH_CONFIG_PATH",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores the real state afterwards
        monkeypatch.delenv(name)
    return tmp_path


def test_remote_server_uses_basic_auth_and_warns(remote_env, monkeypatch, capsys):
    with pytest.raises(tracking.TrackingError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        tracking.server_command(host="0.0.0.0", allow_remote=True)  # first start: no password
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-long-admin-password")
    argv = tracking.server_command(host="0.0.0.0", port=5123, allow_remote=True)
    config = remote_env / "mlflow-auth.ini"
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert f"MLFLOW_AUTH_CONFIG_PATH={config}" in argv[: argv.index(sys.executable)]
    assert "--allowed-hosts" not in argv  # MLflow's default; authentication guards the rest
    text = config.read_text()
    assert f"database_uri = sqlite:///{remote_env / 'mlflow-auth.db'}" in text
    warning = capsys.readouterr().err
    assert "WARNING" in warning and "0.0.0.0:5123" in warning
    assert "MLFLOW_TRACKING_USERNAME" in warning and "ssh -N -L 5123:127.0.0.1:5123" in warning
    secret = os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # the app's CSRF key, not in argv
    assert len(secret) >= 32 and not any(secret in arg for arg in argv)

    config.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n")  # the user's own
    tracking.server_command(host="0.0.0.0", allow_remote=True)
    assert config.read_text() == "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(remote_env / "missing.ini"))
    with pytest.raises(tracking.TrackingError, match="missing.ini"):
        tracking.server_command(host="0.0.0.0", allow_remote=True)
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH")
    monkeypatch.setitem(sys.modules, "flask_wtf", None)  # as if mlflow[auth] was not installed
    with pytest.raises(tracking.TrackingError, match=r"mlflow\[auth\]"):
        tracking.server_command(host="0.0.0.0", allow_remote=True)


def test_remote_server_answers_only_with_credentials(project, remote_env, monkeypatch):
    """The hostile tester's request: a client elsewhere reading and creating runs. The server
    serves a relocated copy of a project (a fresh db would add ~10 s of migrations)."""
    from mlflow.exceptions import MlflowException

    served = _copy(project, remote_env / "served")
    Tracker(uri=f"sqlite:///{served}/mlflow.db").relocate_store()
    monkeypatch.chdir(served)
    password = "a-long-admin-password"
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    port = _free_port()
    log_path = remote_env / "server.log"
    argv = tracking.server_command(host="0.0.0.0", port=port, allow_remote=True)
    assert (served / "mlflow-auth.ini").exists()
    with _mlflow_server(argv, log_path) as server:
        _wait_healthy(f"http://127.0.0.1:{port}", server, log_path)
        host = f"10.0.0.7:{port}"  # how another machine on the network addresses it
        assert _status(port, host) == 401
        wrong = base64.b64encode(b"admin:not-the-password").decode()
        assert _status(port, host, {"Authorization": f"Basic {wrong}"}) == 401
        right = base64.b64encode(f"admin:{password}".encode()).decode()
        assert _status(port, host, {"Authorization": f"Basic {right}"}) == 200

        url = f"http://127.0.0.1:{port}"
        with pytest.raises(MlflowException, match="401"):  # not retried: fails at once
            Tracker(uri=url).ensure_store()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        with Tracker(uri=url).start_cell_run("s", "remote", 0, {}, {"lr": 0.1}) as run:
            run.log_metrics({"loss": 1.0}, step=0)
    assert "Rejected" not in log_path.read_text()  # no Host header was refused
    assert (served / "mlflow-auth.db").exists()  # the users live next to the served db
    assert run.artifact_uri.startswith((served / "mlartifacts").as_uri())


# ---------------------------------------------------------------- a copied project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with one finished run that logged an artifact (a fresh db: ~2 s)."""
    root = tmp_path_factory.mktemp("project") / "orig"
    root.mkdir()
    tracker = Tracker(uri=f"sqlite:///{root}/mlflow.db")
    (root / "ckpt.txt").write_text("weights")
    with tracker.start_cell_run("s", "c", 0, {}, {"lr": 0.1}) as run:
        run.log_artifacts([root / "ckpt.txt"])
    (root / "run_id").write_text(run.run_id)
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under the folder with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def test_copied_project_never_writes_into_the_original(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(project)
    copy = _copy(project, tmp_path / "copy")
    old_run = (copy / "run_id").read_text()
    tracker = Tracker(uri=f"sqlite:///{copy}/mlflow.db")
    with pytest.raises(tracking.TrackingError) as refused:
        tracker.start_cell_run("s", "c", 1, {}, {})
    text = str(refused.value)
    assert str(copy / "mlflow.db") in text and str(project / "mlartifacts") in text
    assert str(copy / "mlartifacts" / "spikeattn") in text and "--relocate" in text
    with pytest.raises(tracking.TrackingError, match="copied or moved"):
        tracking.server_command(f"sqlite:///{copy}/mlflow.db")  # jobs via a server: the same

    lines = tracker.relocate_store()
    assert lines == [
        f"experiment 'spikeattn': {project / 'mlartifacts' / 'spikeattn'} -> "
        f"{copy / 'mlartifacts' / 'spikeattn'} (2 runs, 0 logged models)"
    ]
    assert tracker.relocate_store() == []  # in place now
    (tmp_path / "new.txt").write_text("new")
    with tracker.start_cell_run("s", "c", 1, {}, {}) as run:
        run.log_artifacts([tmp_path / "new.txt"])
    with tracker.add_to_cell_run(old_run) as energy_run:  # a run the original made, e.g. energy
        energy_run.log_artifacts([tmp_path / "new.txt"])
    for run_id in (run.run_id, old_run):
        assert _run(tracker, run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    assert _artifacts(tracker, old_run) == ["ckpt.txt", "new.txt"]
    assert sorted(p.parent.parent.name for p in (copy / "mlartifacts").rglob("new.txt")) == sorted(
        [run.run_id, old_run]
    )
    assert _snapshot(project) == before, "the copy wrote into the original"

    original = Tracker(uri=f"sqlite:///{project}/mlflow.db")  # the original works as before
    assert _run(original, old_run).info.artifact_uri.startswith(project.as_uri())
    assert _artifacts(original, old_run) == ["ckpt.txt"]


def test_relocation_waits_for_the_artifacts_to_be_copied(project, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    subprocess.run(["cp", "-a", str(project / "mlflow.db"), str(moved)], check=True)
    tracker = Tracker(uri=f"sqlite:///{moved}/mlflow.db")
    db_bytes = (moved / "mlflow.db").read_bytes()
    with pytest.raises(tracking.TrackingError, match="only in the original") as refused:
        tracker.relocate_store()
    assert str(project / "mlartifacts" / "spikeattn") in str(refused.value)
    assert (moved / "mlflow.db").read_bytes() == db_bytes  # nothing rewritten
    _copy(project / "mlartifacts", moved / "mlartifacts")
    assert len(tracker.relocate_store()) == 1
    run_id = (project / "run_id").read_text()
    assert _artifacts(tracker, run_id) == ["ckpt.txt"]


# ---------------------------------------------------------------- a broken store


def test_broken_or_foreign_db_is_named_with_the_way_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    garbage = tmp_path / "mlflow.db"
    garbage.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as con:
        con.execute("CREATE TABLE samples (x)")
        con.commit()
    for db, reason in ((garbage, "file is not a database"), (foreign, "tables samples")):
        before = db.read_bytes()
        with pytest.raises(tracking.TrackingError) as refused:
            Tracker(uri=f"sqlite:///{db}").start_cell_run("s", "c", 0, {}, {})
        text = str(refused.value)
        assert str(db) in text and reason in text
        assert f"mv {db} {db}.broken" in text and "--no-track" in text
        assert "MLFLOW_TRACKING_URI" in text
        assert db.read_bytes() == before, "MLflow must not touch it"
        with pytest.raises(tracking.TrackingError, match=reason):
            tracking.server_command(f"sqlite:///{db}")


def test_db_mlflow_fails_to_open_is_named(tmp_path, monkeypatch):
    """A db from an unknown MLflow version (or half-migrated): MLflow's own error, wrapped."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        con.execute("INSERT INTO alembic_version VALUES ('ffffffffffff')")
        con.commit()
    with pytest.raises(tracking.TrackingError, match="ffffffffffff") as refused:
        Tracker().ensure_store()
    assert str(db) in str(refused.value) and "--no-track" in str(refused.value)
    assert refused.value.__cause__ is not None  # MLflow's error stays in the chain
