"""The `mlflow server` command for the jobs' SQLite store (`spikeattn mlflow-server`).

MLflow's server has no authentication by default, so `server_command` keeps it on loopback
(with MLflow's Host check narrowed to loopback names) unless remote access is asked for
explicitly; then it runs MLflow's basic-auth app (clients set MLFLOW_TRACKING_USERNAME/PASSWORD).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from pathlib import Path

from .store import TrackingError, absolute_uri, check_store, default_uri, sqlite_path

SERVER_WORKERS = 1  # see server_command
AUTH_CONFIG = "mlflow-auth.ini"  # basic-auth app settings of a remote server, next to the db
AUTH_DB = "mlflow-auth.db"  # its users and permissions
_AUTH_MARK = "# Written by `spikeattn mlflow-server` on each start"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


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
            raise TrackingError(
                f"MLFLOW_AUTH_CONFIG_PATH={own}: no such file; unset it to "
                f"use {db_dir / AUTH_CONFIG}, which is written for you"
            )
        return own
    path = db_dir / AUTH_CONFIG
    if path.exists() and not path.read_text().startswith(_AUTH_MARK):
        return path
    users = str(db_dir / AUTH_DB).replace("%", "%%")  # configparser interpolates "%"
    text = (
        f"{_AUTH_MARK}; to change it, copy it and set MLFLOW_AUTH_CONFIG_PATH to the copy.\n"
        f"# The admin user is created on the first start from MLFLOW_AUTH_ADMIN_PASSWORD.\n"
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{users}\n"
        f"admin_username = admin\n"
        f"authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"# Without it each request checks the password hash (~0.8 s, one per log_batch).\n"
        f"# One worker (see SERVER_WORKERS): a password changed through the API holds at once.\n"
        f"auth_cache_ttl_seconds = 60\n"
    )
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
            "there) and reach it through an SSH tunnel."
        ) from None


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
            f"MLFLOW_TRACKING_PASSWORD (or users the admin creates)."
        )


def _remote_warning(host: str, port: int, config: Path) -> str:
    return (
        f"WARNING: the MLflow server listens on {host}:{port}, open to other machines. "
        f"MLflow's basic-auth app guards it (settings: {config}): clients need "
        f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; the user 'admin' is created "
        f"on the first start from MLFLOW_AUTH_ADMIN_PASSWORD. Plain HTTP sends passwords "
        f"and results unencrypted: prefer the default 127.0.0.1 and an SSH tunnel "
        f"(ssh -N -L {port}:127.0.0.1:{port} <this host>)."
    )


def server_command(
    backend_uri: str | None = None,
    artifacts: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = SERVER_WORKERS,
    *,
    allow_remote: bool = False,
    allowed_hosts: str | None = None,
) -> list[str]:
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
    backend_uri = absolute_uri(backend_uri)
    db = sqlite_path(backend_uri)
    if db is not None:
        check_store(db)
    if artifacts is None:
        artifacts = (db.parent if db else Path.cwd()) / "mlartifacts"
    telemetry_off = os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")
    env = [
        "env",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        f"MLFLOW_DISABLE_TELEMETRY={telemetry_off}",
    ]
    options = []
    if is_loopback(host):
        allowed_hosts = allowed_hosts or loopback_allowed_hosts(host)
    elif not allow_remote:
        raise TrackingError(
            f"--host {host}: the MLflow server would be open to other machines. "
            f"Keep the default 127.0.0.1 and reach it through an SSH tunnel "
            f"(ssh -N -L {port}:127.0.0.1:{port} <this host>), or add --allow-remote to serve "
            f"it with MLflow's basic authentication."
        )
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
        *env,
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(Path(artifacts).absolute()),
        *options,
    ]
