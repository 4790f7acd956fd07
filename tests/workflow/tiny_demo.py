"""A tiny copy of the workflow and its demo studies, shared by the workflow tests.

`copy_workflow(root)` puts the Snakefile, pipeline/ and dvc.yaml into `root` with a params.yaml
that cuts the demo studies down to one epoch on 200 samples (`tiny_params()`); `snakemake()`
runs Snakemake there with this interpreter.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ("Snakefile", "pipeline", "dvc.yaml")


def tiny_params() -> dict:
    """The repository's demo studies, cut down to one epoch: one digits cell with one seed,
    and a vanilla and a TA digits-dvs cell with three seeds."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.pop("groups", None)
    raw["papers"] = {"demo": raw["papers"]["demo"]}
    raw["study"] = {name: raw["study"][name] for name in raw["papers"]["demo"]["studies"]}
    used = {d for study in raw["study"].values() for d in study["grid"]["dataset"]}
    raw["datasets"] = {name: {**raw["datasets"][name], "max_samples": 200} for name in used}
    digits, dvs = raw["study"]["demo-digits"], raw["study"]["demo-dvs"]
    digits["grid"].update(attention=["TCSA"], coding=["gac"], T=[2])
    digits.pop("exclude", None)
    dvs["grid"].update(attention=["none", "TA"], T=[2])
    for study in raw["study"].values():
        study["seeds"] = [0]
        study["train"] = {"epochs": 1, "batch_size": 50}
    dvs["seeds"] = [0, 1, 2]
    raw["studies"] = "demo"
    return raw


def copy_workflow(root: Path, params: dict | None = None) -> Path:
    """The workflow files and a params.yaml in `root` (which must exist): `params`, by
    default `tiny_params()`."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    params = tiny_params() if params is None else params
    (root / "params.yaml").write_text(
        "# tiny copy of the demo studies\n" + yaml.safe_dump(params, sort_keys=False))
    return root


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
