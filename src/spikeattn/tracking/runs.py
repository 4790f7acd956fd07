"""The MLflow runs of a study: one per cell x seed, grouped under one parent run per study.

Layout: one experiment ("spikeattn"); per study one PARENT run (name = study, tags
`spikeattn.study`, `spikeattn.kind=study`); per cell x seed one CHILD run (name `<cell>/seed<k>`,
tag `mlflow.parentRunId`, one `spikeattn.<key>` tag per grid coordinate). The train job starts
a cell's run (`Tracker.start_cell_run`), or continues it after being killed
(`Tracker.continue_cell_run`); the energy job adds its results to the finished run
(`Tracker.add_to_cell_run`).

Every store access goes through `Tracker._store`: under the store lock (store.py), retried when
transient (retry.py). Retries must not duplicate data: metrics keep their timestamp (MLflow
skips an identical (key, step, timestamp, value) row), params are written once with the same
value, and a run is created with a unique `spikeattn.create_token` tag that a retry looks up
before creating again.

`Tracker.ensure_store` creates the db, the experiment and optionally the studies' parent runs
before any job starts (Snakemake's `onstart`). That matters for servers: without a lock, jobs
that find no parent create one each, then keep the earliest after `PARENT_SETTLE_S` and delete
their own if unused. That alone is not exact: a create that the server answers late can still
yield an earlier parent (start times are the client's). So each child, when it finishes, moves
to the study's earliest parent and deletes the parent it left once no active child remains
under it; when the last child has finished, one parent is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, TypeVar

from . import retry, store
from .retry import is_transient, retry_transient
from .store import TrackingError, absolute_uri, broken_store, check_store, default_uri, sqlite_path
from .values import as_float, check_name, chunks, flatten, limits, stringify, truncate

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

T = TypeVar("T")

TAG_PREFIX = "spikeattn."
CREATE_TOKEN_TAG = f"{TAG_PREFIX}create_token"
PARENT_SETTLE_S = 1.0  # lock-free stores: how long parallel creators of a parent may lag
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


class RunNotFoundError(LookupError):
    """The run id is not in this tracking store (wrong store, or the run was deleted)."""


class Tracker:
    """Opens the store lazily (first use builds the client and may migrate a new db)."""

    def __init__(self, uri: str | None = None, experiment: str = "spikeattn"):
        # Jobs must run offline: no usage telemetry unless the user opts in by setting it.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.uri: str = absolute_uri(uri or default_uri())
        self.experiment = experiment
        self.db_path: Path | None = sqlite_path(self.uri)
        self._lock = store.make_lock(self.db_path)
        self._client_obj: MlflowClient | None = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"Tracker(uri={self.uri!r}, experiment={self.experiment!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[MlflowClient]:
        """The client, held under the store lock (no retries: `_store` adds them)."""
        from mlflow.tracking import MlflowClient  # imports outside the lock: they are slow

        if self._client_obj is None and self.db_path is not None:
            # Building the client imports this (~1 s); done under the lock, it would hold
            # every other job up. Left for inside is the real work: migrating a new db (~1.5 s).
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

            self.db_path.parent.mkdir(parents=True, exist_ok=True)  # for the db and its lock

        with self._lock:
            if self._client_obj is None:
                self._client_obj = self._open_client(MlflowClient)
            yield self._client_obj

    def _open_client(self, client_class: type[MlflowClient]) -> MlflowClient:
        """The client (it migrates a new db); for SQLite only after `check_store`, and a db
        MLflow cannot open is a TrackingError naming the file (transient errors are retried)."""
        if self.db_path is None:
            return client_class(tracking_uri=self.uri)
        check_store(self.db_path)
        try:
            return client_class(tracking_uri=self.uri)  # runs migrations
        except Exception as err:
            if is_transient(err):
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise broken_store(self.db_path, reason[:500]) from err

    def _store(self, what: str, fn: Callable[[MlflowClient, int], T]) -> T:
        """One store access: `fn(client, try_index)` under the lock, retried when transient.

        The lock is released between tries, so other jobs go on while this one backs off.
        """

        def attempt(index: int) -> T:
            with self.locked() as client:
                return fn(client, index)

        return retry_transient(attempt, f"MLflow {what} ({self.uri})")

    def ensure_store(self, studies: Iterable[str] = ()) -> str:
        """Create the db (migrations), the experiment and the studies' parent runs; idempotent.

        For Snakemake's `onstart`: jobs then find everything and only create their own runs.
        Returns the experiment id.
        """
        studies = [check_name("study", s) for s in studies]

        def ensure(client: MlflowClient, _: int) -> str:
            exp_id = self._experiment_id_locked(client)
            for study in studies:
                self._study_run_id_locked(client, study)
            return exp_id

        return self._store("ensure store", ensure)

    def relocate_store(self) -> list[str]:
        """Point a copied or moved db at the `mlartifacts/` next to it (`store.relocate`); what
        changed, one line per experiment."""
        if self.db_path is None:
            raise TrackingError(
                f"{self.uri}: only a SQLite store can be relocated; a server "
                f"keeps its artifacts where its --artifacts-destination says"
            )
        return store.relocate(self.db_path, self._lock)

    def artifact_root(self) -> str | None:
        """Where a new experiment's artifacts go: next to a SQLite db, else the server's choice."""
        if self.db_path is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.experiment)
        return (self.db_path.parent / "mlartifacts" / safe).as_uri()

    def _experiment_id_locked(self, client: MlflowClient) -> str:
        from mlflow.exceptions import MlflowException

        if self._experiment_id is None:
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    self._experiment_id = client.create_experiment(
                        self.experiment, artifact_location=self.artifact_root()
                    )
                    return self._experiment_id
                except MlflowException as err:  # another job (no lock: a server) was first
                    if err.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = client.get_experiment_by_name(self.experiment)
                    if exp is None:
                        raise
            if exp.lifecycle_stage != "active":
                raise RuntimeError(
                    f"experiment {self.experiment!r} in {self.uri} is deleted; restore it "
                    f"(`mlflow experiments restore`) or use another experiment name"
                )
            self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _study_parents(self, client: MlflowClient, exp_id: str, study: str) -> list[Run]:
        """Active parent runs of a study, earliest first (ties: run id, the same in every job)."""
        found = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG_PREFIX}study` = '{study}' "
            f"and tags.`{TAG_PREFIX}kind` = 'study'",
            max_results=1000,
        )
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    def _study_run_id_locked(self, client: MlflowClient, study: str) -> str:
        """Get or create the study's parent run: exactly one under the lock (else see below)."""
        exp_id = self._experiment_id_locked(client)
        found = self._study_parents(client, exp_id, study)
        if found:
            if found[0].info.status == "RUNNING":  # a try that created it failed right after
                client.set_terminated(found[0].info.run_id, "FINISHED")
            return found[0].info.run_id
        run = client.create_run(
            exp_id, run_name=study, tags={f"{TAG_PREFIX}study": study, f"{TAG_PREFIX}kind": "study"}
        )
        # The parent only groups its children, which start and end over days; left RUNNING it
        # would spin forever in the UI, so it is closed at once. Its status says nothing about them.
        client.set_terminated(run.info.run_id, "FINISHED")
        if self.db_path is None:
            return self._settle_parent(client, exp_id, study, run.info.run_id)
        return run.info.run_id

    def _settle_parent(self, client: MlflowClient, exp_id: str, study: str, own: str) -> str:
        """No lock (a server): others may have created a parent too. All keep the earliest;
        ours is deleted unless a child already uses it (a job that looked in between)."""
        retry.sleep(PARENT_SETTLE_S)
        parents = self._study_parents(client, exp_id, study)
        if not parents or parents[0].info.run_id == own:
            return own
        keep = parents[0].info.run_id
        if any(r.info.run_id == own for r in parents) and not client.search_runs(
            [exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{own}'", max_results=1
        ):
            client.delete_run(own)
        return keep

    def _rehome_locked(self, client: MlflowClient, run_id: str) -> None:
        """No lock (a server): move a child to its study's earliest parent, and delete the
        parent it left once no active child uses it (see the module docstring)."""
        from mlflow.exceptions import MlflowException

        run = client.get_run(run_id)
        study, old = (
            run.data.tags.get(f"{TAG_PREFIX}study"),
            run.data.tags.get("mlflow.parentRunId"),
        )
        if study is None or old is None:
            return
        parents = self._study_parents(client, run.info.experiment_id, study)
        if not parents or parents[0].info.run_id == old:
            return
        client.set_tag(run_id, "mlflow.parentRunId", parents[0].info.run_id)
        if not client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{old}'",
            max_results=1,
        ):
            with contextlib.suppress(MlflowException):  # another leaver deleted it first
                client.delete_run(old)

    def start_cell_run(
        self, study: str, cell: str, seed: int, tags: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CellRun:
        """Create the child run of one cell x seed (and the study's parent if it is the first)."""
        check_name("study", study)
        token = uuid.uuid4().hex
        all_tags = {**_cell_tags(study, cell, seed, tags), CREATE_TOKEN_TAG: token}
        by_token = f"tags.`{CREATE_TOKEN_TAG}` = '{token}'"

        def create(client: MlflowClient, attempt: int) -> Run:
            exp_id = self._experiment_id_locked(client)
            parent_id = self._study_run_id_locked(client, study)
            # A failed try may have created the run before its answer got lost.
            found = client.search_runs([exp_id], by_token, max_results=10) if attempt else []
            run = (
                found[0]
                if found
                else client.create_run(
                    exp_id,
                    run_name=f"{cell}/seed{seed}",
                    tags={"mlflow.parentRunId": parent_id, **all_tags},
                )
            )
            if self.db_path is None:  # MLflow's HTTP layer may have re-sent the create itself
                for other in client.search_runs([exp_id], by_token, max_results=10):
                    if other.info.run_id != run.info.run_id:
                        client.delete_run(other.info.run_id)
            return run

        run = self._store("create run", create)
        cell_run = CellRun(self, run.info.run_id, run.info.artifact_uri)
        try:
            cell_run.log_params(params)
        except BaseException:
            cell_run.finish("FAILED")
            raise
        return cell_run

    def _active_run(self, run_id: str) -> Run:
        """The run, or RunNotFoundError naming the likely mix-up (another store, deleted)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self._store("get run", lambda client, _: client.get_run(run_id))
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            raise RunNotFoundError(
                f"run {run_id!r} is not in the tracking store {self.uri}; was it logged "
                f"to another store (check MLFLOW_TRACKING_URI and the working directory)?"
            ) from None
        if run.info.lifecycle_stage != "active":
            raise RunNotFoundError(f"run {run_id!r} in {self.uri} is deleted; restore it first")
        return run

    def add_to_cell_run(self, run_id: str) -> CellRun:
        """Open a (usually FINISHED) cell run to add a later stage's results, e.g. the energy
        job's: it is not set back to RUNNING and, once closed, keeps its end time."""
        info = self._active_run(run_id).info
        return CellRun(self, run_id, info.artifact_uri, later_stage=True, end_time=info.end_time)

    def continue_cell_run(self, run_id: str) -> CellRun:
        """Continue the run of a training job that was killed (any status): RUNNING again until
        finished, then ending now. Use `CellRun.logged_steps` to log only the epochs still
        missing."""
        info = self._active_run(run_id).info
        self._store("continue run", lambda client, _: client.update_run(run_id, status="RUNNING"))
        return CellRun(self, run_id, info.artifact_uri)


def _cell_tags(study: str, cell: str, seed: int, coords: Mapping[str, Any]) -> dict[str, str]:
    """`spikeattn.<key>` for each grid coordinate; study/cell/seed must agree with the arguments."""
    fixed = {"study": study, "cell": cell, "seed": seed, "kind": "cell"}
    for key, value in fixed.items():
        if key in coords and stringify(coords[key]) != stringify(value):
            raise ValueError(f"tag {key}={coords[key]!r} contradicts the argument {value!r}")
    _, tag_limit, _, _ = limits()
    merged = {**coords, **fixed}
    return {f"{TAG_PREFIX}{k}": truncate(stringify(v), tag_limit) for k, v in merged.items()}


class CellRun:
    """One child run. As a context manager: FINISHED on normal exit, FAILED on an exception.

    A later stage's run (`Tracker.add_to_cell_run`, `later_stage`) is not set back to RUNNING
    while it is open, and when it is closed it keeps the train job's end time: MLflow's
    `set_terminated` only rewrites status and end_time (it refuses deleted runs only), so
    re-terminating a FINISHED run is allowed, but with the default end_time=now it would stretch
    the run's duration over the gap between the stages. Its status becomes that of the later
    stage: FAILED if the energy stage fails (the run now lacks its results), FINISHED again when
    that stage is re-run. A continued run (`Tracker.continue_cell_run`) is the same training
    going on: it ends now.
    """

    def __init__(
        self,
        tracker: Tracker,
        run_id: str,
        artifact_uri: str,
        *,
        later_stage: bool = False,
        end_time: int | None = None,
    ):
        self.tracker = tracker
        self.run_id = run_id
        self.artifact_uri = artifact_uri
        self.later_stage = later_stage
        self._end_time = end_time  # None: now, when finished
        self._closed = False

    def __repr__(self) -> str:
        return f"CellRun(run_id={self.run_id!r}, uri={self.tracker.uri!r})"

    def __enter__(self) -> CellRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("FINISHED")
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.finish(status)
        except Exception as err:  # never hide the exception that ended the block
            exc.add_note(f"(also failed to mark MLflow run {self.run_id} {status}: {err!r})")

    def _log_batch(self, what: str, **batch: list) -> None:
        """One store write; safe to retry (see the module docstring)."""
        self.tracker._store(what, lambda client, _: client.log_batch(self.run_id, **batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened (dots); strings as they are, other values as JSON (`true`, `[1,2]`); cut to
        MLflow's length limit (6000 characters in 3.17) with a mark; one locked batch per 100."""
        from mlflow.entities import Param

        value_limit, _, batch, _ = limits()
        items = [Param(k, truncate(stringify(v), value_limit)) for k, v in flatten(params).items()]
        for chunk in chunks(items, batch):
            self._log_batch("log params", params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) run tags, keys as given, values stringified like params."""
        from mlflow.entities import RunTag

        _, tag_limit, batch, _ = limits()
        items = [RunTag(k, truncate(stringify(v), tag_limit)) for k, v in tags.items()]
        for chunk in chunks(items, batch):
            self._log_batch("set tags", tags=chunk)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One epoch's metrics in one short locked write. None is skipped; NaN/inf are kept.

        The timestamp is taken once, so a retried write repeats identical rows, which MLflow
        skips instead of storing twice.
        """
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        items = [
            Metric(k, as_float(k, v), now, step or 0) for k, v in metrics.items() if v is not None
        ]
        _, _, _, batch = limits()
        for chunk in chunks(items, batch):
            self._log_batch("log metrics", metrics=chunk)

    def logged_steps(self, key: str) -> set[int]:
        """Steps of metric `key` already in the store (a continued job logs only the others)."""
        history = self.tracker._store(
            "read metric history", lambda client, _: client.get_metric_history(self.run_id, key)
        )
        return {m.step for m in history}

    def log_artifacts(
        self, paths: list[str | os.PathLike], artifact_path: str | None = None
    ) -> None:
        """Copy files (or whole directories, under their own name) into the run's artifacts.

        The copy needs no lock: the run's artifact URI was read when the run was opened.
        Uploads to a server are retried like store accesses; a repeated upload overwrites.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"cannot log missing artifact(s): {', '.join(missing)}")
        repo = get_artifact_repository(self.artifact_uri, tracking_uri=self.tracker.uri)

        def upload(path: Path) -> None:
            if path.is_dir():
                sub = f"{artifact_path}/{path.name}" if artifact_path else path.name
                repo.log_artifacts(str(path), sub)
            else:
                repo.log_artifact(str(path), artifact_path)

        for path in paths:
            retry_transient(
                lambda _, path=path: upload(path),
                f"MLflow artifact upload of {path.name} ({self.artifact_uri})",
            )

    def finish(self, status: str = "FINISHED") -> None:
        """Terminate the run once (later calls do nothing); a later stage's run keeps its end
        time."""
        if status not in _TERMINAL:
            raise ValueError(f"status must be one of {_TERMINAL}, not {status!r}")
        if self._closed:
            return
        self.tracker._store(
            "finish run",
            lambda client, _: client.set_terminated(self.run_id, status, end_time=self._end_time),
        )
        if self.tracker.db_path is None:
            self.tracker._store(
                "move run to the study's parent",
                lambda client, _: self.tracker._rehome_locked(client, self.run_id),
            )
        self._closed = True
