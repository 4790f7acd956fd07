"""A tiny copy of the workflow and its demo studies, shared by the workflow tests.

`copy_workflow(root)` puts the Snakefile, pipeline/ and dvc.yaml into `root` with a params.yaml
that cuts the demo studies down to one epoch on 200 samples (tests/tiny_params.py,
`tiny_params("demo")`); `snakemake()` runs Snakemake there with this interpreter.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from tiny_params import tiny_params

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ("Snakefile", "pipeline", "envs", "dvc.yaml")


def copy_workflow(root: Path, params: dict | None = None) -> Path:
    """The workflow files and a params.yaml in `root` (which must exist): `params`, by
    default `tiny_params("demo")`."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    params = tiny_params("demo") if params is None else params
    (root / "params.yaml").write_text(
        "# tiny copy of the demo studies\n" + yaml.safe_dump(params, sort_keys=False)
    )
    return root


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
