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
    "spikeattn.plugins",
    "spikeattn.registry",
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


# Per study what the workflow's planning asks: its cells, each cell's frames cache (the key
# pipeline/common.smk lists) and the recipe's settings (which need the backbones' defaults and
# LIF constants, computed with torch or read from the validation record).
FACTS = (
    "from spikeattn.recipe import study_settings; from spikeattn.job_inputs import frames_path; "
    "facts = {s: [[c.id for c in params.cells(s)], study_settings(params, s), "
    "[str(frames_path(params, c)) for c in params.cells(s)]] for s in params.studies}"
)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """The validation records `loaded` writes and `recorded` reads."""
    return tmp_path_factory.mktemp("validated")


@pytest.fixture(scope="module")
def loaded(record) -> dict:
    """Heavy libraries in sys.modules after the light imports and `--help`, then after
    validating params.yaml fully (recording it) and expanding every study's cells (what
    `spikeattn cells` does)."""
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
        params = Params.load("params.yaml", record={str(record)!r})
        {FACTS}
        print(json.dumps({{"imports": after_imports, "params": heavy(), "facts": facts,
                          "validated_fully": params.validated_fully}}))
        """,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def recorded(loaded, record) -> dict:
    """The same, in a fresh interpreter, once `loaded` has recorded the validation."""
    return _run(
        f"""
        import json, sys
        from spikeattn.config import Params
        params = Params.load("params.yaml", record={str(record)!r})
        {FACTS}
        print(json.dumps({{"params": sorted(m for m in {HEAVY!r} if m in sys.modules),
                          "facts": facts, "validated_fully": params.validated_fully}}))
        """,
        cwd=REPO,
    )


def test_light_modules_and_help_load_no_heavy_library(loaded):
    assert loaded["imports"] == []


def test_validating_params_loads_no_tracking_table_or_dataset_library(loaded):
    assert loaded["validated_fully"] and sum(len(f[0]) for f in loaded["facts"].values()) > 0
    assert [m for m in loaded["params"] if m not in ("torch", "timm")] == []


def test_validating_recorded_params_loads_no_torch_and_answers_the_same(loaded, recorded):
    """The full validation (torch, timm) runs once per params, code and library versions; a
    second Params over the same params.yaml reads its record (config.Params `record=`)."""
    assert not recorded["validated_fully"]
    assert recorded["params"] == []
    assert recorded["facts"] == loaded["facts"]


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
