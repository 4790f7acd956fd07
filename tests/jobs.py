"""Real `spikeattn train` jobs on a tiny study, in scratch directories (for the resume,
divergence and DDP tests). The study is tests/tiny_params.py's "tiny" selection (STUDY, CELL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from tiny_params import CELL, STUDY, tiny_params  # noqa: F401  (tests call jobs.tiny_params)


def job_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SPIKEATTN_GPU"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env["SPIKEATTN_GPUS"] = ""  # CPU jobs, even where a GPU exists: results are compared exactly
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def spikeattn(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "spikeattn", "--params", str(workdir / "params.yaml"), *args]


def setup(workdir: Path, raw: dict, data_from: Path | None = None) -> Path:
    """Write params.yaml and build (or link) the digits frames the study trains on."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    if data_from is not None:
        (workdir / "data").symlink_to(data_from / "data")
        return workdir
    for cmd in (["prepare", "digits"], ["preprocess", "digits", "--T", "2", "--study", STUDY]):
        subprocess.run(
            spikeattn(workdir, *cmd),
            cwd=workdir,
            env=job_env(workdir),
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return workdir


TRAIN = ("train", "--study", STUDY, "--cell", CELL, "--seed", "0")


def train_command(workdir: Path, *extra: str) -> list[str]:
    return spikeattn(workdir, *TRAIN, *extra)


def run_dir(workdir: Path) -> Path:
    return workdir / "results" / STUDY / CELL / "seed0"


def run(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        spikeattn(workdir, *args),
        cwd=workdir,
        env=job_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"spikeattn {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )
    return proc
