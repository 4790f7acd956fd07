"""Real `spikeattn train` jobs on a tiny study, in scratch directories (for the resume,
divergence and DDP tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STUDY = "tiny"
CELL = "digits__demo_cnn__TA__direct__T2"


def tiny_params(train: dict | None = None, **study) -> dict:
    """The repository's params with one study: static digits (200 samples), demo_cnn with TA, T=2."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.pop("groups", None)
    raw.pop("papers", None)
    raw["datasets"] = {"digits": {**raw["datasets"]["digits"], "max_samples": 200}}
    raw["study"] = {STUDY: {
        "grid": {"dataset": ["digits"], "backbone": ["demo_cnn"], "attention": ["TA"],
                 "coding": ["direct"], "T": [2]},
        "seeds": [0],
        "train": {"epochs": 4, "batch_size": 40, **(train or {})},
        **study,
    }}
    raw["studies"] = STUDY
    return raw


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
        subprocess.run(spikeattn(workdir, *cmd), cwd=workdir, env=job_env(workdir), check=True,
                       capture_output=True, text=True, timeout=300)
    return workdir


TRAIN = ("train", "--study", STUDY, "--cell", CELL, "--seed", "0")


def train_command(workdir: Path, *extra: str) -> list[str]:
    return spikeattn(workdir, *TRAIN, *extra)


def run_dir(workdir: Path) -> Path:
    return workdir / "results" / STUDY / CELL / "seed0"


def run(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(spikeattn(workdir, *args), cwd=workdir, env=job_env(workdir),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"spikeattn {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc
