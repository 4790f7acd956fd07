"""A tiny copy of the workflow and its demo studies, shared by the workflow tests.

`copy_workflow(root)` puts the Snakefile, pipeline/ and dvc.yaml into `root` with a params.yaml
that cuts the demo studies down to one epoch on 200 samples (tests/tiny_params.py,
`tiny_params("demo")`); `snakemake()` runs Snakemake there with this interpreter, `planned()`
asks its dry run what it would re-run, and `edited_params()` / `edited_file()` change a file
for the length of a `with` block.
"""

import contextlib
import os
import re
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


def planned(workdir: Path, *args: str) -> dict[str, list[str]]:
    """rule -> outputs of the jobs a dry run (with these extra arguments) would execute."""
    out = snakemake(workdir, *args, "--dry-run", "--cores", "1").stdout
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", block.strip())
        if head:
            outputs = re.search(r"^\s*output: (.*)$", block, re.M)
            jobs.setdefault(head.group(1), []).extend(
                outputs.group(1).split(", ") if outputs else []
            )
    return jobs


@contextlib.contextmanager
def edited_file(path: Path, text: str):
    """`path` holds `text` inside the block, its original text again after it."""
    original = path.read_text()
    path.write_text(text)
    try:
        yield
    finally:
        path.write_text(original)


def edited_params(workdir: Path, edit=None, text=None):
    """workdir's params.yaml as `edit(raw)` leaves it, or as `text`, inside the block."""
    path = workdir / "params.yaml"
    if edit is not None:
        raw = yaml.safe_load(path.read_text())
        edit(raw)
        text = yaml.safe_dump(raw, sort_keys=False)
    return edited_file(path, text)
