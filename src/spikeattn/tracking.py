"""MLflow tracking for parallel pipeline jobs.

The only module of the project that imports mlflow (lazily, so `import spikeattn` stays fast).

Layout: one experiment ("spikeattn"); per study one PARENT run (name = study, tags
`spikeattn.study`, `spikeattn.kind=study`); per cell x seed one CHILD run (name `<cell>/seed<k>`,
tag `mlflow.parentRunId`, one `spikeattn.<key>` tag per grid coordinate).

Store: MLflow's embedded SQLite store `sqlite:///<cwd>/mlflow.db` unless `MLFLOW_TRACKING_URI`
(or the `uri` argument) says otherwise. Snakemake runs many jobs as separate processes, and SQLite
with concurrent writers fails ("database is locked"), lets two jobs both create a study's parent
run, and races the schema migrations that the first connection to a new db runs. So every store
access of this module (including building the client, which migrates) happens under a
`filelock.FileLock` at `<db>.lock`. Each access is short: one `log_batch` per epoch. Artifact
files are copied outside the lock (they go to a per-run directory, not into the db).

Artifacts, sqlite stores only: MLflow's default is `./mlruns/<experiment id>/`, resolved against the
working directory of whichever process first creates the experiment. That depends on where a job
happened to start, so the experiment is created with its artifact location next to the db instead:
`<db dir>/mlartifacts/<experiment>/<run id>/artifacts/`. An existing experiment keeps its location.
For server URIs the server decides.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from urllib.parse import unquote

from .io import canonical_json

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TAG_PREFIX = "spikeattn."
LOCK_TIMEOUT_S = 600.0  # a holder only does one short db write; this long means a stuck process
_TRUNCATION_MARK = "...[truncated]"
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


class RunNotFoundError(LookupError):
    """The run id is not in this tracking store (wrong store, or the run was deleted)."""


# ---------------------------------------------------------------- URIs and the lock


def default_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite file `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The db file of a `sqlite:` URI (absolute), or None for other stores and in-memory dbs."""
    scheme, sep, rest = uri.partition(":///")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    path = unquote(rest.split("?")[0])
    if not path or path == ":memory:":
        return None
    return Path(path) if Path(path).is_absolute() else Path.cwd() / path


def _absolute_uri(uri: str) -> str:
    """Pin a relative sqlite path to the current directory, so child processes agree on it."""
    path = sqlite_path(uri)
    scheme, _, rest = uri.partition(":///")
    if path is None or rest.startswith("/"):
        return uri
    query = rest.partition("?")[2]
    return f"{scheme}:///{path}" + (f"?{query}" if query else "")


def _make_lock(db: Path | None) -> contextlib.AbstractContextManager:
    """A cross-process lock next to a SQLite db; nothing for server stores (they serialise)."""
    if db is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S)


# ---------------------------------------------------------------- value helpers


def _stringify(value: Any) -> str:
    """Strings as they are; everything else as canonical JSON (numbers, bools, lists, numpy)."""
    if isinstance(value, str):
        return value
    try:
        return canonical_json(value)
    except TypeError:
        return str(value)


def _truncate(text: str, limit: int) -> str:
    """Cut to `limit` characters with a visible mark (MLflow would cut silently or raise)."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"opt": {"lr": 1}} -> {"opt.lr": 1}; a key produced twice is an error, not an overwrite."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        items = flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: value}
        for k, v in items.items():
            if k in flat:
                raise ValueError(f"parameter {k!r} given twice after flattening nested dicts")
            flat[k] = v
    return flat


def _limits() -> tuple[int, int, int, int]:
    """MLflow's (param value, tag value, params+tags per batch, metrics per batch) limits."""
    try:
        from mlflow.utils import validation as v

        return (v.MAX_PARAM_VAL_LENGTH, v.MAX_TAG_VAL_LENGTH,
                v.MAX_PARAMS_TAGS_PER_BATCH, v.MAX_METRICS_PER_BATCH)
    except (ImportError, AttributeError):  # values of mlflow 3.17
        return 6000, 8000, 100, 1000


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_name(what: str, name: str) -> str:
    """Study/cell names go into a search filter between single quotes: keep them plain."""
    if not name or "'" in name or "\\" in name:
        raise ValueError(f"{what} name {name!r} must be non-empty without quotes or backslashes")
    return name


# ---------------------------------------------------------------- tracker


class Tracker:
    """Opens the store lazily (first use builds the client and may migrate a new db)."""

    def __init__(self, uri: str | None = None, experiment: str = "spikeattn"):
        # Jobs must run offline: no usage telemetry unless the user opts in by setting it.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.uri: str = _absolute_uri(uri or default_uri())
        self.experiment = experiment
        self.db_path: Path | None = sqlite_path(self.uri)
        self._lock = _make_lock(self.db_path)
        self._client_obj: MlflowClient | None = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"Tracker(uri={self.uri!r}, experiment={self.experiment!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[MlflowClient]:
        """The client, held under the store lock: wrap every store access in this."""
        from mlflow.tracking import MlflowClient  # imports outside the lock: they are slow

        if self._client_obj is None and self.db_path is not None:
            # Building the client imports this (~1 s); done under the lock, it would hold
            # every other job up. Left for inside is the real work: migrating a new db (~1.5 s).
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

            self.db_path.parent.mkdir(parents=True, exist_ok=True)  # for the db and its lock

        with self._lock:
            if self._client_obj is None:
                self._client_obj = MlflowClient(tracking_uri=self.uri)  # runs migrations
            yield self._client_obj

    def artifact_root(self) -> str | None:
        """Where a new experiment's artifacts go: next to a SQLite db, else the server's choice."""
        if self.db_path is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.experiment)
        return (self.db_path.parent / "mlartifacts" / safe).as_uri()

    def _experiment_id_locked(self, client: MlflowClient) -> str:
        if self._experiment_id is None:
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                self._experiment_id = client.create_experiment(
                    self.experiment, artifact_location=self.artifact_root()
                )
            elif exp.lifecycle_stage != "active":
                raise RuntimeError(
                    f"experiment {self.experiment!r} in {self.uri} is deleted; restore it "
                    f"(`mlflow experiments restore`) or use another experiment name"
                )
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _study_run_id_locked(self, client: MlflowClient, study: str) -> str:
        """Get or create the study's parent run; called under the lock, so exactly one exists."""
        exp_id = self._experiment_id_locked(client)
        found = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG_PREFIX}study` = '{study}' "
            f"and tags.`{TAG_PREFIX}kind` = 'study'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if found:
            return found[0].info.run_id
        run = client.create_run(
            exp_id, run_name=study, tags={f"{TAG_PREFIX}study": study, f"{TAG_PREFIX}kind": "study"}
        )
        # The parent only groups its children, which start and end over days; left RUNNING it
        # would spin forever in the UI, so it is closed at once. Its status says nothing about them.
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def start_cell_run(
        self, study: str, cell: str, seed: int, tags: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CellRun:
        """Create the child run of one cell x seed (and the study's parent if it is the first)."""
        _check_name("study", study)
        all_tags = _cell_tags(study, cell, seed, tags)
        with self.locked() as client:
            parent_id = self._study_run_id_locked(client, study)
            run = client.create_run(
                self._experiment_id_locked(client),
                run_name=f"{cell}/seed{seed}",
                tags={"mlflow.parentRunId": parent_id, **all_tags},
            )
        cell_run = CellRun(self, run.info.run_id, run.info.artifact_uri)
        try:
            cell_run.log_params(params)
        except BaseException:
            cell_run.finish("FAILED")
            raise
        return cell_run

    def resume_cell_run(self, run_id: str) -> CellRun:
        """Re-open a (usually FINISHED) run to add a later stage's results, e.g. energy."""
        from mlflow.exceptions import MlflowException

        with self.locked() as client:
            try:
                run = client.get_run(run_id)
            except MlflowException as err:
                if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                raise RunNotFoundError(
                    f"run {run_id!r} is not in the tracking store {self.uri}; was it logged "
                    f"to another store (check MLFLOW_TRACKING_URI and the working directory)?"
                ) from None
        if run.info.lifecycle_stage != "active":
            raise RunNotFoundError(f"run {run_id!r} in {self.uri} is deleted; restore it first")
        info = run.info
        return CellRun(self, run_id, info.artifact_uri, resumed=True, end_time=info.end_time)


def _cell_tags(study: str, cell: str, seed: int, coords: Mapping[str, Any]) -> dict[str, str]:
    """`spikeattn.<key>` for each grid coordinate; study/cell/seed must agree with the arguments."""
    fixed = {"study": study, "cell": cell, "seed": seed, "kind": "cell"}
    for key, value in fixed.items():
        if key in coords and _stringify(coords[key]) != _stringify(value):
            raise ValueError(f"tag {key}={coords[key]!r} contradicts the argument {value!r}")
    _, tag_limit, _, _ = _limits()
    merged = {**coords, **fixed}
    return {f"{TAG_PREFIX}{k}": _truncate(_stringify(v), tag_limit) for k, v in merged.items()}


# ---------------------------------------------------------------- one run


class CellRun:
    """One child run. As a context manager: FINISHED on normal exit, FAILED on an exception.

    A resumed run (see `Tracker.resume_cell_run`) is not set back to RUNNING while it is open,
    and when it is closed it keeps the train job's end time: MLflow's `set_terminated` only
    rewrites status and end_time (it refuses deleted runs only), so re-terminating a FINISHED
    run is allowed, but with the default end_time=now it would stretch the run's duration over
    the gap between the stages. Its status becomes that of the later stage: FAILED if the energy
    stage fails (the run now lacks its results), FINISHED again when that stage is re-run.
    """

    def __init__(self, tracker: Tracker, run_id: str, artifact_uri: str, *,
                 resumed: bool = False, end_time: int | None = None):
        self.tracker = tracker
        self.run_id = run_id
        self.artifact_uri = artifact_uri
        self.resumed = resumed
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

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened (dots); strings as they are, other values as JSON (`true`, `[1,2]`); cut to
        MLflow's length limit (6000 characters in 3.17) with a mark; one locked batch per 100."""
        from mlflow.entities import Param

        value_limit, _, batch, _ = _limits()
        items = [Param(k, _truncate(_stringify(v), value_limit))
                 for k, v in flatten(params).items()]
        for chunk in _chunks(items, batch):
            with self.tracker.locked() as client:
                client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One epoch's metrics in one short locked write. None is skipped; NaN/inf are kept."""
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        items = [Metric(k, _as_float(k, v), now, step or 0)
                 for k, v in metrics.items() if v is not None]
        _, _, _, batch = _limits()
        for chunk in _chunks(items, batch):
            with self.tracker.locked() as client:
                client.log_batch(self.run_id, metrics=chunk)

    def log_artifacts(self, paths: list[str | os.PathLike],
                      artifact_path: str | None = None) -> None:
        """Copy files (or whole directories, under their own name) into the run's artifacts.

        The copy needs no lock: the run's artifact URI was read when the run was opened.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"cannot log missing artifact(s): {', '.join(missing)}")
        repo = get_artifact_repository(self.artifact_uri, tracking_uri=self.tracker.uri)
        for path in paths:
            if path.is_dir():
                sub = f"{artifact_path}/{path.name}" if artifact_path else path.name
                repo.log_artifacts(str(path), sub)
            else:
                repo.log_artifact(str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """Terminate the run once (later calls do nothing); a resumed run keeps its end time."""
        if status not in _TERMINAL:
            raise ValueError(f"status must be one of {_TERMINAL}, not {status!r}")
        if self._closed:
            return
        with self.tracker.locked() as client:
            client.set_terminated(self.run_id, status, end_time=self._end_time)
        self._closed = True


def _as_float(key: str, value: Any) -> float:
    """float(value) (numpy and 1-element torch scalars included), naming the metric if it fails."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {key!r} must be a number, not {type(value).__name__}") from None
