"""The example plugin (examples/tdg_attention.py) through the whole DAG, then what edits re-plan.

One Snakemake run (module fixture) trains demo-dvs's none, TCSA and TDG cells in a scratch copy
of the workflow whose params.yaml lists the plugin (tests/tiny_params.py, selection "plugin"),
with no edit under src/. The tests then edit the plugin and ask `snakemake --dry-run` what it
would re-run, and list broken plugins to see the run stop before any job, naming the file.
"""

import csv
import json
import re

import pytest
from tiny_demo import REPO, copy_workflow, edited_file, edited_params, planned, snakemake
from tiny_params import PLUGIN, tiny_params

pytestmark = pytest.mark.workflow

TDG_CELL = "digits-dvs__demo_cnn__TDG__direct__T2"
DEFAULT = "init_bias: float = 2.0"  # the builder's default: part of the plugin's code


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = copy_workflow(tmp_path_factory.mktemp("plugin"), tiny_params("plugin"))
    (root / PLUGIN).parent.mkdir()
    (root / PLUGIN).write_text((REPO / "examples" / "tdg_attention.py").read_text())
    snakemake(root, "--cores", "2")
    return root


def result_times(workdir):
    files = [*(workdir / "results").rglob("*.json"), *(workdir / "reports").rglob("*.csv")]
    return {p: p.stat().st_mtime_ns for p in files}


def test_the_plugin_cell_reaches_the_ablation_table(workdir):
    with open(workdir / "reports" / "demo" / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["attention"] for row in rows} == {"TCSA", "TDG"}
    assert all(row["twin"] == "digits-dvs__demo_cnn__none__direct__T2" for row in rows)

    energy = json.loads((workdir / "results/demo-dvs" / TDG_CELL / "seed0/energy.json").read_text())
    attention = [row for row in energy["layers"] if row["role"] == "attention"]
    # the gate's depthwise conv (an nn.Conv2d: counted) and its products (elementwise_macs)
    assert {row["kind"] for row in attention} == {"conv", "elementwise"}, attention
    assert all(".attention" in row["layer"] and row["macs"] > 0 for row in attention), attention


def test_the_plugin_jobs_ran_on_the_job_server(workdir):
    """A TDG job handed to the server imports the plugin in its own forked child (the server
    never imports it) and succeeds. Its energy job starts after its train job, well after the
    server is ready; its train job may start before that (and run in a process of its own)."""
    log = (workdir / ".spikeattn" / "worker.log").read_text().splitlines()
    served = [re.search(r"exit (\d+) after .*? (train|energy) --study", line) for line in log]
    tdg = {m[2]: m[1] for m, line in zip(served, log) if m and TDG_CELL in line}
    assert tdg.get("energy") == "0" and set(tdg.values()) == {"0"}, log


def test_nothing_planned_after_the_run(workdir):
    assert planned(workdir) == {}


def test_editing_the_plugin_replans_only_its_cells(workdir):
    path = workdir / PLUGIN
    code = path.read_text()
    assert code.count(DEFAULT) == 1
    with edited_file(path, code.replace(DEFAULT, "init_bias: float = 1.5")):
        jobs = planned(workdir)
    assert set(jobs) == {"train", "energy", "tables", "figures", "paper", "all"}, jobs
    cell_files = jobs["train"] + jobs["energy"]
    assert cell_files and all(f"/{TDG_CELL}/" in f for f in cell_files), cell_files


def test_a_comment_in_the_plugin_replans_nothing(workdir):
    path = workdir / PLUGIN
    code = path.read_text()
    with edited_file(path, "# a comment: not code\n" + code.replace("\n\n\n", "\n\n\n\n")):
        assert planned(workdir) == {}


BAD_PLUGINS = {
    "clash with a built-in name": (
        "from spikeattn.plugins import register_attention\n\n"
        "@register_attention('mine', slot='current', variants=['TCSA'])\n"
        "def mine(*, T, channels):\n"
        "    raise AssertionError('never built')\n",
        "attention 'TCSA' is already registered by spikeattn (built in)",
    ),
    "option without a default": (
        "from spikeattn.plugins import register_attention\n\n"
        "@register_attention('mine', slot='current', variants=['MINE'])\n"
        "def mine(*, T, channels, width):\n"
        "    raise AssertionError('never built')\n",
        "option 'width' has no default",
    ),
    "import error": (
        "import nonexistent_module\n",
        "ModuleNotFoundError: No module named 'nonexistent_module'",
    ),
}


@pytest.mark.parametrize("code, detail", BAD_PLUGINS.values(), ids=BAD_PLUGINS)
def test_a_bad_plugin_stops_before_any_job_naming_its_file(workdir, code, detail):
    before = result_times(workdir)
    bad = "plugins/bad.py"
    (workdir / bad).write_text(code)
    try:
        with edited_params(workdir, lambda raw: raw["plugins"].append(bad)):
            proc = snakemake(workdir, "--cores", "1", check=False)
    finally:
        (workdir / bad).unlink()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(rf"plugins\[1\] \({re.escape(bad)}:\d+\): .*{re.escape(detail)}", out), out
    assert "rule " not in proc.stdout, proc.stdout
    assert result_times(workdir) == before
