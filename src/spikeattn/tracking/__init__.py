"""MLflow tracking for parallel pipeline jobs: a view of results/, which keeps every result.

The only package of the project that imports mlflow, and only inside functions, so importing it
stays fast. One job per module, each importing only those above it:

    retry.py   which store errors are transient, and the jittered backoff that retries them
    store.py   where the store is (`MLFLOW_TRACKING_URI` or ./mlflow.db), the file lock around
               it, the checks that refuse a broken, foreign or copied db, and `relocate`
    values.py  params, tags and metrics as MLflow takes them (flattened, stringified, cut)
    server.py  the `mlflow server` command: loopback only, or basic-auth when asked
    runs.py    `Tracker` (the experiment, one parent run per study) and `CellRun` (one cell x
               seed: started by the train job, continued after a kill, added to by the energy job)
"""

from .retry import (
    RETRY_BUDGET_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    RETRY_TRIES,
    is_transient,
    retry_transient,
)
from .runs import CREATE_TOKEN_TAG, PARENT_SETTLE_S, TAG_PREFIX, CellRun, RunNotFoundError, Tracker
from .server import auth_config, is_loopback, loopback_allowed_hosts, server_command
from .store import TrackingError, check_store, default_uri, sqlite_path
from .values import flatten

__all__ = [
    "CREATE_TOKEN_TAG",
    "PARENT_SETTLE_S",
    "RETRY_BUDGET_S",
    "RETRY_FIRST_S",
    "RETRY_MAX_S",
    "RETRY_TRIES",
    "TAG_PREFIX",
    "CellRun",
    "RunNotFoundError",
    "Tracker",
    "TrackingError",
    "auth_config",
    "check_store",
    "default_uri",
    "flatten",
    "is_loopback",
    "is_transient",
    "loopback_allowed_hosts",
    "retry_transient",
    "server_command",
    "sqlite_path",
]
