"""`import spikeattn` is cheap and has no side effects; the modules the Snakefile, `--help` and
`spikeattn cells` load do not import torch or the other heavy libraries (issue 18, point 5).

Each check runs in a fresh interpreter: this test process has imported torch long ago, so its
own `sys.modules` says nothing. A failure names the heavy libraries that were loaded; find the
importer with `python -X importtime -c "import <module>"` and move the import into the function
that needs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "timm", "mlflow", "pandas", "matplotlib", "scipy", "sklearn", "tonic"]
# What the Snakefile (Snakefile, pipeline/*.smk), the CLI's parser and `spikeattn cells` import.
LIGHT_MODULES = [
    "spikeattn",
    "spikeattn.config",
    "spikeattn.data",
    "spikeattn.frozen_params",
    "spikeattn.io",
    "spikeattn.paths",
    "spikeattn.job_inputs",
    "spikeattn.stages",
    "spikeattn.cli",
    "spikeattn.energy",
    "spikeattn.recipe",
    "spikeattn.records",
    "spikeattn.stop_notice",
]


def _run(code: str, cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Run `code` in a fresh interpreter in `cwd`; it prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Heavy libraries in sys.modules after the light imports and `--help`, then after
    validating params.yaml and expanding every study's cells (what `spikeattn cells` does)."""
    return _run(
        f"""
        import contextlib, io, json, sys
        HEAVY = {HEAVY!r}
        def heavy():
            return sorted(m for m in HEAVY if m in sys.modules)
        for name in {LIGHT_MODULES!r}:
            __import__(name)
        from spikeattn.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["--help"])
        after_imports = heavy()
        from spikeattn.config import Params
        params = Params.load("params.yaml")
        cells = sum(len(params.cells(study)) for study in params.raw["study"])
        print(json.dumps({{"imports": after_imports, "params": heavy(), "cells": cells}}))
        """,
        cwd=REPO,
    )


def test_light_modules_and_help_load_no_heavy_library(loaded):
    assert loaded["imports"] == []


def test_validating_params_loads_no_tracking_table_or_dataset_library(loaded):
    assert loaded["cells"] > 0
    assert [m for m in loaded["params"] if m not in ("torch", "timm")] == []


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Params validation checks options against code that imports torch and timm: backbone names, "
        "signatures and frame sizes (spikeattn.models), attention builders (spikeattn.attention), "
        "LIF presets (spikeattn.neurons), timm optimizers and schedules and their dry build "
        "(config._check_train): see benchmarks/RESULTS.md, 'Start-up cost'"
    ),
)
def test_validating_params_loads_no_torch(loaded):
    assert loaded["params"] == []


def test_import_spikeattn_has_no_side_effects(tmp_path):
    """No file written (in the working directory or HOME), no environment variable set, and
    no backbone known to timm until `spikeattn.models` is imported (that import registers)."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    result = _run(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(REPO / "src")!r})
        before = dict(os.environ)
        for name in {LIGHT_MODULES!r}:
            __import__(name)
        changed = sorted(k for k in {{*before, *os.environ}} if before.get(k) != os.environ.get(k))
        written = sorted(str(p) for d in (".", {str(home)!r}) for p in __import__("pathlib").Path(d).rglob("*"))
        import timm
        known_before = timm.is_model("ms_resnet18")
        import spikeattn.models
        print(json.dumps({{"changed": changed, "written": written, "known_before": known_before,
                          "known_after": timm.is_model("ms_resnet18")}}))
        """,
        cwd=cwd,
        env=env,
    )
    assert result == {"changed": [], "written": [], "known_before": False, "known_after": True}
