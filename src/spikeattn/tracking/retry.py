"""Retries of MLflow store accesses: which errors are worth another try, and the backoff.

The store lock (store.py) does not cover everything: the `mlflow ui`/server may hold the db, and
on some network filesystems flock is a no-op. So each store access is also retried with
exponential backoff and jitter (at most `RETRY_TRIES` tries within about `RETRY_BUDGET_S`) on
transient errors only: SQLite "database is locked/busy", and for servers connection errors,
timeouts and 429/5xx that MLflow's own HTTP retries gave up on. Retries must not duplicate data;
runs.py says how each write is safe to repeat.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

RETRY_TRIES = 8
RETRY_BUDGET_S = 60.0  # no new try starts later than this after the first one
RETRY_FIRST_S = 0.5  # first backoff; doubles each try, jittered down to half, capped below
RETRY_MAX_S = 16.0
_LOCKED_TEXT = ("database is locked", "database is busy")

_log = logging.getLogger(__name__)
sleep = time.sleep  # every wait of the package goes through it; tests replace it


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
                "TEMPORARILY_UNAVAILABLE",
                "REQUEST_LIMIT_EXCEEDED",
                "RESOURCE_EXHAUSTED",
            ):
                return True
    return False


def _is_transient_http(err: BaseException) -> bool:
    from requests import exceptions as rex

    if isinstance(err, rex.SSLError):  # a ConnectionError, but it will not fix itself
        return False
    return isinstance(
        err, (rex.ConnectionError, rex.Timeout, rex.RetryError, rex.ChunkedEncodingError)
    )


def retry_transient(
    fn: Callable[[int], T], what: str, *, tries: int = RETRY_TRIES, budget_s: float = RETRY_BUDGET_S
) -> T:
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
                err.add_note(
                    f"(spikeattn gave up on {what} after {attempt + 1} tries in {elapsed:.1f} s)"
                )
                raise
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2**attempt) * random.uniform(0.5, 1.0)
            delay = min(delay, left)
            _log.warning(
                "%s: transient error, try %d of %d in %.1f s: %s",
                what,
                attempt + 2,
                tries,
                delay,
                str(err).splitlines()[0][:300] if str(err) else repr(err),
            )
            sleep(delay)
    raise AssertionError("unreachable")
