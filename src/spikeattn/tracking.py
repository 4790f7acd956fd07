"""MLflow tracking for parallel pipeline jobs.

The only module of the project that imports mlflow (lazily, so `import spikeattn` stays fast).

Layout: one experiment ("spikeattn"); per study one PARENT run (name = study, tags
`spikeattn.study`, `spikeattn.kind=study`); per cell x seed one CHILD run (name `<cell>/seed<k>`,
tag `mlflow.parentRunId`, one `spikeattn.<key>` tag per grid coordinate).

Store: MLflow's embedded SQLite store `sqlite:///<cwd>/mlflow.db` unless `MLFLOW_TRACKING_URI`
(or the `uri` argument) says otherwise, e.g. a local `mlflow server` (see `server_command`).
Snakemake runs many jobs as separate processes, and SQLite with concurrent writers fails
("database is locked"), lets two jobs both create a study's parent run, and races the schema
migrations that the first connection to a new db runs. So every store access of this module
(including building the client, which migrates) happens under a `filelock.FileLock` at
`<db>.lock`. Each access is short: one `log_batch` per epoch. Artifact files are copied outside
the lock (they go to a per-run directory, not into the db).

The lock does not cover everything: the `mlflow ui`/server may hold the db, and on some network
filesystems flock is a no-op. So each store access is also retried with exponential backoff and
jitter (at most `RETRY_TRIES` tries within about `RETRY_BUDGET_S`) on transient errors only:
SQLite "database is locked/busy", and for servers connection errors, timeouts and 429/5xx that
MLflow's own HTTP retries gave up on. Retries must not duplicate data: metrics keep their
timestamp (MLflow skips an identical (key, step, timestamp, value) row), params are written once
with the same value, and a run is created with a unique `spikeattn.create_token` tag that a retry
looks up before creating again. `Tracker.ensure_store` creates the db, the experiment and
optionally the studies' parent runs before any job starts (Snakemake's `onstart`). That matters
for servers: without a lock, jobs that find no parent create one each, then keep the earliest
after `PARENT_SETTLE_S` and delete their own if unused. That alone is not exact: a create that
the server answers late can still yield an earlier parent (start times are the client's). So
each child, when it finishes, moves to the study's earliest parent and deletes the parent it
left once no active child remains under it; when the last child has finished, one parent is left.

Artifacts, sqlite stores only: MLflow's default is `./mlruns/<experiment id>/`, resolved against the
working directory of whichever process first creates the experiment. That depends on where a job
happened to start, so the experiment is created with its artifact location next to the db instead:
`<db dir>/mlartifacts/<experiment>/<run id>/artifacts/`. An existing experiment keeps its location,
also when jobs later log through a server: such `file://` runs are written directly by the job
(same machine only). Experiments that a server creates get `mlflow-artifacts:/` locations,
uploaded through the server into its `--artifacts-destination`.

MLflow stores that location as an absolute `file://` URI (it resolves relative ones against the
working directory), so a copied or moved project's db still points at the original folder, and
its runs would write there. Before MLflow opens a SQLite file, `check_store` refuses such a db
(and one that is no SQLite db or holds another program's tables, which MLflow would extend);
`Tracker.relocate_store` (`spikeattn tracking-store --relocate`) points it at its own folder.

Server: MLflow's has no authentication by default, so `server_command` keeps it on loopback
(with MLflow's Host check narrowed to loopback names) unless remote access is asked for
explicitly; then it runs MLflow's basic-auth app (clients set MLFLOW_TRACKING_USERNAME/PASSWORD).
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
import re
import secrets
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, TypeVar
from urllib.parse import unquote, urlparse

from .io import canonical_json

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

T = TypeVar("T")

TAG_PREFIX = "spikeattn."
CREATE_TOKEN_TAG = f"{TAG_PREFIX}create_token"
LOCK_TIMEOUT_S = 600.0  # a holder only does one short db write; this long means a stuck process
RETRY_TRIES = 8
RETRY_BUDGET_S = 60.0  # no new try starts later than this after the first one
RETRY_FIRST_S = 0.5  # first backoff; doubles each try, jittered down to half, capped below
RETRY_MAX_S = 16.0
SQLITE_BUSY_S = 20.0  # how long our own reads wait for a db lock, as MLflow's connections do
PARENT_SETTLE_S = 1.0  # lock-free stores: how long parallel creators of a parent may lag
SERVER_WORKERS = 1  # see server_command
AUTH_CONFIG = "mlflow-auth.ini"  # basic-auth app settings of a remote server, next to the db
AUTH_DB = "mlflow-auth.db"  # its users and permissions
_AUTH_MARK = "# Written by `spikeattn mlflow-server` on each start"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_TRUNCATION_MARK = "...[truncated]"
_TERMINAL = ("FINISHED", "FAILED", "KILLED")
_LOCKED_TEXT = ("database is locked", "database is busy")

_log = logging.getLogger(__name__)
_sleep = time.sleep  # tests replace it


class RunNotFoundError(LookupError):
    """The run id is not in this tracking store (wrong store, or the run was deleted)."""


class TrackingError(RuntimeError):
    """The store or server cannot be used as asked: a broken or foreign db, a copied project
    whose db still points at the original's artifacts, a server open to the network without
    opt-in. The message names the file or option and how to go on; CLIs print it, no traceback."""


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


# ---------------------------------------------------------------- store checks
# Read straight from the SQLite file, before MLflow opens it: MLflow would add its tables to any
# SQLite file, and it has no API to read or change where an experiment keeps its artifacts.


def _broken_store(db: Path, reason: str) -> TrackingError:
    """The error for a db file MLflow cannot use, with the ways on (MLflow is only a view)."""
    return TrackingError(
        f"{db}: cannot be used as an MLflow store ({reason}). MLflow only mirrors results/, "
        f"which keeps every result, so training need not wait for it: move the file aside "
        f"(`mv {db} {db}.broken`; the next job creates a new store there), or train with "
        f"`--no-track`, or set MLFLOW_TRACKING_URI to another store.")


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_S)


def _store_tables(db: Path) -> set[str] | None:
    """Table names of the db file, None if there is none yet; TrackingError if it is no SQLite
    db or not MLflow's. "database is locked" passes through (transient: retried)."""
    if not db.exists() or db.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(_connect_ro(db)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as err:
        if is_transient(err):
            raise
        raise _broken_store(db, str(err)) from err
    except sqlite3.DatabaseError as err:  # "file is not a database", "disk image is malformed"
        raise _broken_store(db, str(err)) from err
    if tables and "alembic_version" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise _broken_store(db, f"a SQLite db of something else, with tables {shown}; MLflow "
                                f"would add its own tables to it")
    return tables


def _local_path(uri: str) -> Path | None:
    """The directory of a `file://` URI or plain absolute path; None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme and uri.startswith("/"):
        return Path(uri)
    return None


def _moved_experiments(con: sqlite3.Connection, db: Path) -> list[tuple[int, str, Path, Path]]:
    """(id, name, stored dir, dir here) of experiments whose artifacts are in the `mlartifacts/`
    of another folder: this db was copied or moved from there (see `artifact_root`)."""
    here = db.parent / "mlartifacts"
    moved = []
    for exp_id, name, location in con.execute(
            "SELECT experiment_id, name, artifact_location FROM experiments"):
        path = _local_path(location or "")
        if path is not None and path.parent.name == "mlartifacts" \
                and path.parent.resolve() != here.resolve():
            moved.append((exp_id, name, path, here / path.name))
    return moved


def check_store(db: Path) -> None:
    """TrackingError unless `db` is missing, empty or an MLflow store whose experiments keep
    their artifacts next to it: a copied project must never write into the original's."""
    tables = _store_tables(db)
    if not tables or "experiments" not in tables:
        return
    with contextlib.closing(_connect_ro(db)) as con:
        moved = _moved_experiments(con, db)
    if moved:
        _, name, old, new = moved[0]
        raise TrackingError(
            f"{db}: experiment {name!r} keeps its artifacts in {old}, outside this folder: "
            f"mlflow.db was copied or moved from {old.parent.parent}, and runs logged here would "
            f"write into that folder. Once {new.parent} holds the artifacts (a copy of the "
            f"whole folder does), run `spikeattn tracking-store --relocate` in {db.parent} to "
            f"point this mlflow.db at {new}; or log to the original with "
            f"MLFLOW_TRACKING_URI=sqlite:///{old.parent.parent / db.name}.")


# Tables whose rows keep an artifact location derived from their experiment's: (key, column).
_LOCATED = {"experiments": ("experiment_id", "artifact_location"),
            "runs": ("run_uuid", "artifact_uri"),
            "logged_models": ("model_id", "artifact_location")}


class _Relocation:
    """What `Tracker.relocate_store` rewrites: (table, key, new URI) rows, the artifact
    directories that exist in the original but not here (then nothing is rewritten), and one
    summary line per experiment."""

    def __init__(self, con: sqlite3.Connection, db: Path, tables: set[str]):
        self.updates: list[tuple[str, Any, str]] = []
        self.missing: list[str] = []
        self.lines: list[str] = []
        for exp_id, name, old, new in _moved_experiments(con, db):
            self.updates.append(("experiments", exp_id, new.as_uri()))
            runs = self._children(con, tables, "runs", exp_id, old, new)
            models = self._children(con, tables, "logged_models", exp_id, old, new)
            self.lines.append(f"experiment {name!r}: {old} -> {new} "
                              f"({runs} runs, {models} logged models)")

    def _children(self, con: sqlite3.Connection, tables: set[str], table: str, exp_id: int,
                  old: Path, new: Path) -> int:
        if table not in tables:
            return 0
        key, column = _LOCATED[table]
        count = 0
        for row_id, uri in con.execute(
                f"SELECT {key}, {column} FROM {table} WHERE experiment_id = ?", (exp_id,)):
            path = _local_path(uri or "")
            if path is None or not path.is_relative_to(old):
                continue
            moved = new / path.relative_to(old)
            self.updates.append((table, row_id, moved.as_uri()))
            if path.exists() and not moved.exists():
                self.missing.append(str(path))
            count += 1
        return count

    def apply(self, con: sqlite3.Connection) -> None:
        for table, row_id, uri in self.updates:
            key, column = _LOCATED[table]
            con.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (uri, row_id))


# ---------------------------------------------------------------- retries


def _causes(err: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from or during (MLflow wraps without `from` at times)."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]


def is_transient(err: BaseException) -> bool:
    """Worth trying again: the store was busy or unreachable, not wrong about the request.

    SQLite: only "database is locked/busy" (MLflow maps every OperationalError, "no such table"
    included, to TEMPORARILY_UNAVAILABLE). Servers: connection errors, timeouts, exhausted
    429/5xx retries, and 429/503 answers MLflow did not retry.
    """
    for e in _causes(err):
        text = str(e).lower()
        locked = any(t in text for t in _LOCKED_TEXT)
        if isinstance(e, sqlite3.OperationalError) and locked:
            return True
        if type(e).__module__.startswith("requests") and _is_transient_http(e):
            return True
        code = getattr(e, "error_code", None)
        if type(e).__module__.startswith("mlflow") and isinstance(code, str):
            if code == "TEMPORARILY_UNAVAILABLE" and locked:
                return True
            if type(e).__name__ == "RestException" and code in (
                    "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"):
                return True
    return False


def _is_transient_http(err: BaseException) -> bool:
    from requests import exceptions as rex

    if isinstance(err, rex.SSLError):  # a ConnectionError, but it will not fix itself
        return False
    return isinstance(err, (rex.ConnectionError, rex.Timeout, rex.RetryError,
                            rex.ChunkedEncodingError))


def retry_transient(fn: Callable[[int], T], what: str, *, tries: int = RETRY_TRIES,
                    budget_s: float = RETRY_BUDGET_S) -> T:
    """`fn(try_index)`, tried again after a transient error with jittered exponential backoff.

    Other errors raise at once. `fn` gets the index so that a retry can first check whether the
    failed try wrote anything after all.
    """
    start = time.monotonic()
    for attempt in range(tries):
        try:
            return fn(attempt)
        except Exception as err:
            if not is_transient(err):
                raise
            elapsed = time.monotonic() - start
            left = budget_s - elapsed
            if attempt + 1 >= tries or left <= 0:
                err.add_note(f"(spikeattn gave up on {what} after {attempt + 1} tries "
                             f"in {elapsed:.1f} s)")
                raise
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)
            delay = min(delay, left)
            _log.warning("%s: transient error, try %d of %d in %.1f s: %s", what, attempt + 2,
                         tries, delay, str(err).splitlines()[0][:300] if str(err) else repr(err))
            _sleep(delay)
    raise AssertionError("unreachable")


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


# ---------------------------------------------------------------- tracking server


def is_loopback(host: str) -> bool:
    """Only this machine can connect: `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name, "" or 0.0.0.0-like wildcards are not loopback
        return False


def loopback_allowed_hosts(host: str = "127.0.0.1") -> str:
    """`--allowed-hosts` for a loopback server: loopback names on any port (an SSH tunnel may
    forward another local port), nothing else. MLflow's default also admits private-network
    addresses, so a request with a forged `Host: 10.0.0.7` would pass."""
    bound = f"[{host.strip('[]')}]" if ":" in host else host
    names = list(dict.fromkeys([*_LOOPBACK_NAMES, bound]))
    # fnmatch patterns: "[" opens a character class, so "[::1]:*" is written "[[]::1]:*".
    return ",".join(p for n in names for p in (n, n.replace("[", "[[]", 1) + ":*"))


def auth_config(db_dir: Path) -> Path:
    """MLflow's basic-auth settings for a remote server; MLFLOW_AUTH_CONFIG_PATH if set.

    Written next to the db with the users' db beside it, rather than MLflow's default
    `basic_auth.db` in whatever directory the server starts in; rewritten on each start so a
    copied project uses its own users' db. A file of the user's own (without our first line)
    is used as it is.
    """
    if os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        own = Path(os.environ["MLFLOW_AUTH_CONFIG_PATH"])
        if not own.is_file():
            raise TrackingError(f"MLFLOW_AUTH_CONFIG_PATH={own}: no such file; unset it to "
                                f"use {db_dir / AUTH_CONFIG}, which is written for you")
        return own
    path = db_dir / AUTH_CONFIG
    if path.exists() and not path.read_text().startswith(_AUTH_MARK):
        return path
    users = str(db_dir / AUTH_DB).replace("%", "%%")  # configparser interpolates "%"
    text = (f"{_AUTH_MARK}; to change it, copy it and set MLFLOW_AUTH_CONFIG_PATH to the copy.\n"
            f"# The admin user is created on the first start from MLFLOW_AUTH_ADMIN_PASSWORD.\n"
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{users}\n"
            f"admin_username = admin\n"
            f"authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"# Without it each request checks the password hash (~0.8 s, one per log_batch).\n"
            f"# One worker (see SERVER_WORKERS): a password changed through the API holds at once.\n"
            f"auth_cache_ttl_seconds = 60\n")
    db_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _require_auth_app() -> None:
    """MLflow's basic-auth app needs the `mlflow[auth]` extra (Flask-WTF); without it the
    server would die while starting, so a remote server is refused here, before anything runs."""
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        raise TrackingError(
            "--allow-remote: MLflow's basic-auth app needs Flask-WTF; install "
            "`pip install 'mlflow[auth]'`, or serve on 127.0.0.1 (no authentication needed "
            "there) and reach it through an SSH tunnel.") from None


def _require_admin_password(config: Path) -> None:
    """On the first start MLflow creates the admin user from MLFLOW_AUTH_ADMIN_PASSWORD and
    fails without it, with a traceback; our own config's users' db tells if it is the first."""
    ours = config.read_text().startswith(_AUTH_MARK)
    first = ours and not (config.parent / AUTH_DB).exists()
    if first and not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise TrackingError(
            f"--allow-remote: the first start creates MLflow's admin user in "
            f"{config.parent / AUTH_DB}; set MLFLOW_AUTH_ADMIN_PASSWORD (12 characters or more) "
            f"for it, and give clients MLFLOW_TRACKING_USERNAME=admin and that password as "
            f"MLFLOW_TRACKING_PASSWORD (or users the admin creates).")


def _remote_warning(host: str, port: int, config: Path) -> str:
    return (f"WARNING: the MLflow server listens on {host}:{port}, open to other machines. "
            f"MLflow's basic-auth app guards it (settings: {config}): clients need "
            f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; the user 'admin' is created "
            f"on the first start from MLFLOW_AUTH_ADMIN_PASSWORD. Plain HTTP sends passwords "
            f"and results unencrypted: prefer the default 127.0.0.1 and an SSH tunnel "
            f"(ssh -N -L {port}:127.0.0.1:{port} <this host>).")


def server_command(backend_uri: str | None = None, artifacts: Path | None = None,
                   host: str = "127.0.0.1", port: int = 5000,
                   workers: int = SERVER_WORKERS, *, allow_remote: bool = False,
                   allowed_hosts: str | None = None) -> list[str]:
    """argv that runs `mlflow server` on the jobs' SQLite store; exec it as it is.

    Defaults: the store a Tracker here would use (`MLFLOW_TRACKING_URI` if it is sqlite, else
    `./mlflow.db`) and `mlartifacts/` next to it. One worker: SQLite takes one writer at a time,
    so more workers add lock contenders, memory and start-up time but no write throughput (one
    worker still serves requests on threads). MLflow's job runner (GenAI scoring and trace jobs,
    seven more processes polling the db) is switched off, and telemetry unless opted in.

    MLflow's server has no authentication by default, so it stays on loopback, where only
    `loopback_allowed_hosts` pass MLflow's Host check (DNS rebinding, forged Host headers).
    Another host needs `allow_remote`; it then runs MLflow's basic-auth app (`auth_config`)
    and prints a warning. A db copied from another folder is refused (`check_store`).
    """
    if backend_uri is None:
        env_uri = default_uri()
        backend_uri = env_uri if sqlite_path(env_uri) else f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    backend_uri = _absolute_uri(backend_uri)
    db = sqlite_path(backend_uri)
    if db is not None:
        check_store(db)
    if artifacts is None:
        artifacts = (db.parent if db else Path.cwd()) / "mlartifacts"
    telemetry_off = os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")
    env = ["env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
           f"MLFLOW_DISABLE_TELEMETRY={telemetry_off}"]
    options = []
    if is_loopback(host):
        allowed_hosts = allowed_hosts or loopback_allowed_hosts(host)
    elif not allow_remote:
        raise TrackingError(
            f"--host {host}: the MLflow server would be open to other machines. "
            f"Keep the default 127.0.0.1 and reach it through an SSH tunnel "
            f"(ssh -N -L {port}:127.0.0.1:{port} <this host>), or add --allow-remote to serve "
            f"it with MLflow's basic authentication.")
    else:
        _require_auth_app()
        config = auth_config(db.parent if db else Path.cwd())
        _require_admin_password(config)
        env.append(f"MLFLOW_AUTH_CONFIG_PATH={config}")
        # The basic-auth app needs a fixed key for its CSRF tokens. Generated here, it reaches
        # the server through the environment: argv is printed and visible in `ps`.
        os.environ.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        options += ["--app-name", "basic-auth"]
        print(_remote_warning(host, port, config), file=sys.stderr)
    if allowed_hosts:
        options += ["--allowed-hosts", allowed_hosts]
    return [
        *env, sys.executable, "-m", "mlflow", "server",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(Path(artifacts).absolute()),
        *options,
    ]


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
            raise _broken_store(self.db_path, reason[:500]) from err

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
        studies = [_check_name("study", s) for s in studies]

        def ensure(client: MlflowClient, _: int) -> str:
            exp_id = self._experiment_id_locked(client)
            for study in studies:
                self._study_run_id_locked(client, study)
            return exp_id

        return self._store("ensure store", ensure)

    def relocate_store(self) -> list[str]:
        """Point a copied or moved db at the `mlartifacts/` next to it; what changed, one line
        per experiment (nothing if the db is already in place).

        Rewrites only locations under the old folder's `mlartifacts/` (experiments, and their
        runs' and logged models' artifact URIs), in one transaction; MLflow has no API for this.
        Refused, changing nothing, while an artifact directory exists only in the old folder.
        """
        db = self.db_path
        if db is None:
            raise TrackingError(f"{self.uri}: only a SQLite store can be relocated; a server "
                                f"keeps its artifacts where its --artifacts-destination says")

        def relocate(_: int) -> list[str]:
            with self._lock:
                tables = _store_tables(db)
                if not tables or "experiments" not in tables:
                    return []
                with contextlib.closing(sqlite3.connect(db, timeout=SQLITE_BUSY_S)) as con:
                    with con:  # one transaction: all rewritten, or nothing
                        con.execute("BEGIN IMMEDIATE")
                        plan = _Relocation(con, db, tables)
                        if plan.missing:
                            raise TrackingError(
                                f"{db}: not relocated: {len(plan.missing)} artifact "
                                f"director{'y is' if len(plan.missing) == 1 else 'ies are'} "
                                f"only in the original, e.g. {plan.missing[0]}. Copy the "
                                f"original's mlartifacts/ into {db.parent / 'mlartifacts'} "
                                f"first (cp -a), then run this again.")
                        plan.apply(con)
                return plan.lines

        return retry_transient(relocate, f"relocating {db}")

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
        _sleep(PARENT_SETTLE_S)
        parents = self._study_parents(client, exp_id, study)
        if not parents or parents[0].info.run_id == own:
            return own
        keep = parents[0].info.run_id
        if any(r.info.run_id == own for r in parents) and not client.search_runs(
                [exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{own}'", max_results=1):
            client.delete_run(own)
        return keep

    def _rehome_locked(self, client: MlflowClient, run_id: str) -> None:
        """No lock (a server): move a child to its study's earliest parent, and delete the
        parent it left once no active child uses it (see the module docstring)."""
        from mlflow.exceptions import MlflowException

        run = client.get_run(run_id)
        study, old = run.data.tags.get(f"{TAG_PREFIX}study"), run.data.tags.get("mlflow.parentRunId")
        if study is None or old is None:
            return
        parents = self._study_parents(client, run.info.experiment_id, study)
        if not parents or parents[0].info.run_id == old:
            return
        client.set_tag(run_id, "mlflow.parentRunId", parents[0].info.run_id)
        if not client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{old}'",
                                  max_results=1):
            with contextlib.suppress(MlflowException):  # another leaver deleted it first
                client.delete_run(old)

    def start_cell_run(
        self, study: str, cell: str, seed: int, tags: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CellRun:
        """Create the child run of one cell x seed (and the study's parent if it is the first)."""
        _check_name("study", study)
        token = uuid.uuid4().hex
        all_tags = {**_cell_tags(study, cell, seed, tags), CREATE_TOKEN_TAG: token}
        by_token = f"tags.`{CREATE_TOKEN_TAG}` = '{token}'"

        def create(client: MlflowClient, attempt: int) -> Run:
            exp_id = self._experiment_id_locked(client)
            parent_id = self._study_run_id_locked(client, study)
            # A failed try may have created the run before its answer got lost.
            found = client.search_runs([exp_id], by_token, max_results=10) if attempt else []
            run = found[0] if found else client.create_run(
                exp_id, run_name=f"{cell}/seed{seed}",
                tags={"mlflow.parentRunId": parent_id, **all_tags})
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

    def resume_cell_run(self, run_id: str) -> CellRun:
        """Re-open a (usually FINISHED) run to add a later stage's results, e.g. energy."""
        info = self._active_run(run_id).info
        return CellRun(self, run_id, info.artifact_uri, resumed=True, end_time=info.end_time)

    def reopen_cell_run(self, run_id: str) -> CellRun:
        """Continue a run whose training job died (any status): RUNNING again until finished,
        then ending now. Use `CellRun.logged_steps` to log only the epochs still missing."""
        info = self._active_run(run_id).info
        self._store("reopen run", lambda client, _: client.update_run(run_id, status="RUNNING"))
        return CellRun(self, run_id, info.artifact_uri)


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
    A reopened run (`Tracker.reopen_cell_run`) is the same training continued: it ends now.
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

    def _log_batch(self, what: str, **batch: list) -> None:
        """One store write; safe to retry (see the module docstring)."""
        self.tracker._store(what, lambda client, _: client.log_batch(self.run_id, **batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened (dots); strings as they are, other values as JSON (`true`, `[1,2]`); cut to
        MLflow's length limit (6000 characters in 3.17) with a mark; one locked batch per 100."""
        from mlflow.entities import Param

        value_limit, _, batch, _ = _limits()
        items = [Param(k, _truncate(_stringify(v), value_limit))
                 for k, v in flatten(params).items()]
        for chunk in _chunks(items, batch):
            self._log_batch("log params", params=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) run tags, keys as given, values stringified like params."""
        from mlflow.entities import RunTag

        _, tag_limit, batch, _ = _limits()
        items = [RunTag(k, _truncate(_stringify(v), tag_limit)) for k, v in tags.items()]
        for chunk in _chunks(items, batch):
            self._log_batch("set tags", tags=chunk)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One epoch's metrics in one short locked write. None is skipped; NaN/inf are kept.

        The timestamp is taken once, so a retried write repeats identical rows, which MLflow
        skips instead of storing twice.
        """
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        items = [Metric(k, _as_float(k, v), now, step or 0)
                 for k, v in metrics.items() if v is not None]
        _, _, _, batch = _limits()
        for chunk in _chunks(items, batch):
            self._log_batch("log metrics", metrics=chunk)

    def logged_steps(self, key: str) -> set[int]:
        """Steps of metric `key` already in the store (a resumed job logs only the others)."""
        history = self.tracker._store(
            "read metric history", lambda client, _: client.get_metric_history(self.run_id, key))
        return {m.step for m in history}

    def log_artifacts(self, paths: list[str | os.PathLike],
                      artifact_path: str | None = None) -> None:
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
            retry_transient(lambda _, path=path: upload(path),
                            f"MLflow artifact upload of {path.name} ({self.artifact_uri})")

    def finish(self, status: str = "FINISHED") -> None:
        """Terminate the run once (later calls do nothing); a resumed run keeps its end time."""
        if status not in _TERMINAL:
            raise ValueError(f"status must be one of {_TERMINAL}, not {status!r}")
        if self._closed:
            return
        self.tracker._store("finish run", lambda client, _: client.set_terminated(
            self.run_id, status, end_time=self._end_time))
        if self.tracker.db_path is None:
            self.tracker._store("move run to the study's parent",
                                lambda client, _: self.tracker._rehome_locked(client, self.run_id))
        self._closed = True


def _as_float(key: str, value: Any) -> float:
    """float(value) (numpy and 1-element torch scalars included), naming the metric if it fails."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {key!r} must be a number, not {type(value).__name__}") from None
