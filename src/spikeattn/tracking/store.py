"""Where the MLflow store is, the lock around it, and whether it may be used at all.

Store: MLflow's embedded SQLite store `sqlite:///<cwd>/mlflow.db` unless `MLFLOW_TRACKING_URI`
(or a Tracker's `uri` argument) says otherwise, e.g. a local `mlflow server` (server.py).
Snakemake runs many jobs as separate processes, and SQLite with concurrent writers fails
("database is locked"), lets two jobs both create a study's parent run, and races the schema
migrations that the first connection to a new db runs. So every store access (including
building the client, which migrates) happens under a `filelock.FileLock` at `<db>.lock`
(`make_lock`). Each access is short: one `log_batch` per epoch. Artifact files are copied
outside the lock (they go to a per-run directory, not into the db).

Artifacts, sqlite stores only: MLflow's default is `./mlruns/<experiment id>/`, resolved against
the working directory of whichever process first creates the experiment. That depends on where a
job happened to start, so the experiment is created with its artifact location next to the db
instead: `<db dir>/mlartifacts/<experiment>/<run id>/artifacts/`. An existing experiment keeps
its location, also when jobs later log through a server: such `file://` runs are written
directly by the job (same machine only). Experiments that a server creates get
`mlflow-artifacts:/` locations, uploaded through the server into its `--artifacts-destination`.

MLflow stores that location as an absolute `file://` URI (it resolves relative ones against the
working directory), so a copied or moved project's db still points at the original folder, and
its runs would write there. Before MLflow opens a SQLite file, `check_store` refuses such a db
(and one that is no SQLite db or holds another program's tables, which MLflow would extend);
`relocate` (`spikeattn tracking-store --relocate`) points it at its own folder.

The checks read the SQLite file straight, before MLflow opens it: MLflow would add its tables to
any SQLite file, and it has no API to read or change where an experiment keeps its artifacts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .retry import is_transient, retry_transient

LOCK_TIMEOUT_S = 600.0  # a holder only does one short db write; this long means a stuck process
SQLITE_BUSY_S = 20.0  # how long our own reads wait for a db lock, as MLflow's connections do


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


def absolute_uri(uri: str) -> str:
    """Pin a relative sqlite path to the current directory, so child processes agree on it."""
    path = sqlite_path(uri)
    scheme, _, rest = uri.partition(":///")
    if path is None or rest.startswith("/"):
        return uri
    query = rest.partition("?")[2]
    return f"{scheme}:///{path}" + (f"?{query}" if query else "")


def make_lock(db: Path | None) -> contextlib.AbstractContextManager:
    """A cross-process lock next to a SQLite db; nothing for server stores (they serialise)."""
    if db is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S)


# ---------------------------------------------------------------- store checks


def broken_store(db: Path, reason: str) -> TrackingError:
    """The error for a db file MLflow cannot use, with the ways on (MLflow is only a view)."""
    return TrackingError(
        f"{db}: cannot be used as an MLflow store ({reason}). MLflow only mirrors results/, "
        f"which keeps every result, so training need not wait for it: move the file aside "
        f"(`mv {db} {db}.broken`; the next job creates a new store there), or train with "
        f"`--no-track`, or set MLFLOW_TRACKING_URI to another store."
    )


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_S)


def _store_tables(db: Path) -> set[str] | None:
    """Table names of the db file, None if there is none yet; TrackingError if it is no SQLite
    db or not MLflow's. "database is locked" passes through (transient: retried)."""
    if not db.exists() or db.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(_connect_ro(db)) as con:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.OperationalError as err:
        if is_transient(err):
            raise
        raise broken_store(db, str(err)) from err
    except sqlite3.DatabaseError as err:  # "file is not a database", "disk image is malformed"
        raise broken_store(db, str(err)) from err
    if tables and "alembic_version" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise broken_store(
            db,
            f"a SQLite db of something else, with tables {shown}; MLflow "
            f"would add its own tables to it",
        )
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
    of another folder: this db was copied or moved from there (see `Tracker.artifact_root`)."""
    here = db.parent / "mlartifacts"
    moved = []
    for exp_id, name, location in con.execute(
        "SELECT experiment_id, name, artifact_location FROM experiments"
    ):
        path = _local_path(location or "")
        if (
            path is not None
            and path.parent.name == "mlartifacts"
            and path.parent.resolve() != here.resolve()
        ):
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
            f"MLFLOW_TRACKING_URI=sqlite:///{old.parent.parent / db.name}."
        )


# Tables whose rows keep an artifact location derived from their experiment's: (key, column).
_LOCATED = {
    "experiments": ("experiment_id", "artifact_location"),
    "runs": ("run_uuid", "artifact_uri"),
    "logged_models": ("model_id", "artifact_location"),
}


class _Relocation:
    """What `relocate` rewrites: (table, key, new URI) rows, the artifact
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
            self.lines.append(
                f"experiment {name!r}: {old} -> {new} ({runs} runs, {models} logged models)"
            )

    def _children(
        self,
        con: sqlite3.Connection,
        tables: set[str],
        table: str,
        exp_id: int,
        old: Path,
        new: Path,
    ) -> int:
        if table not in tables:
            return 0
        key, column = _LOCATED[table]
        count = 0
        for row_id, uri in con.execute(
            f"SELECT {key}, {column} FROM {table} WHERE experiment_id = ?", (exp_id,)
        ):
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


def relocate(db: Path, lock: contextlib.AbstractContextManager) -> list[str]:
    """Point a copied or moved db at the `mlartifacts/` next to it, under the store's `lock`;
    what changed, one line per experiment (nothing if the db is already in place).

    Rewrites only locations under the old folder's `mlartifacts/` (experiments, and their
    runs' and logged models' artifact URIs), in one transaction; MLflow has no API for this.
    Refused, changing nothing, while an artifact directory exists only in the old folder.
    """

    def attempt(_: int) -> list[str]:
        with lock:
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
                            f"first (cp -a), then run this again."
                        )
                    plan.apply(con)
            return plan.lines

    return retry_transient(attempt, f"relocating {db}")
