"""The whole DAG on a tiny copy of the demo studies, then what each kind of edit re-plans.

One Snakemake run (module fixture) builds data, frames, three trained cells (one over three
seeds, for the ablation's significance test), energy, tables, figures, the demo paper's
tables and the HTML report in a scratch copy of the workflow; each test then edits
params.yaml and asks `snakemake --dry-run` what it would re-run, restoring the file afterwards.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_demo import REPO, copy_workflow, edited_params, planned, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    # A space in the path: every path that reaches a job's shell command must be quoted.
    root = copy_workflow(tmp_path_factory.mktemp("work flow"))
    snakemake(root, "--cores", "2")
    snakemake(root, "--report", "reports/report.html")
    return root


def cells_of(workdir: Path, study: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "spikeattn", "cells", study],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.split()


def test_run_writes_every_stage_output(workdir):
    for study in ("demo-digits", "demo-dvs"):
        for cell in cells_of(workdir, study):
            run = workdir / "results" / study / cell / "seed0"
            for name in ("metrics.json", "history.csv", "checkpoint.pt", "energy.json"):
                assert (run / name).is_file(), run / name
        for name in (
            "summary.md",
            "summary.csv",
            "summary.tex",
            "metrics.json",
            "pareto.png",
            "pareto.svg",
            "firing_rates.svg",
            "training_curves.png",
        ):
            assert (workdir / "reports" / study / name).is_file()
    assert "± –" in (workdir / "reports" / "demo-digits" / "summary.md").read_text()
    for name in (
        "results.md",
        "results.tex",
        "results.csv",
        "ablation.md",
        "ablation.tex",
        "ablation.csv",
        "headline.md",
        "tables.html",
    ):
        assert (workdir / "reports" / "demo" / name).is_file()
    ablation = (workdir / "reports" / "demo" / "ablation.md").read_text()
    assert "TA" in ablation and "3 vs 3" in ablation  # tested: three seeds on each side
    assert (workdir / "reports" / "report.html").stat().st_size > 100_000
    assert list(workdir.glob("data/frames/*/*/train.pt"))


def test_train_and_energy_jobs_ran_on_the_job_server(workdir):
    """Jobs that start before the server has imported run in their own processes; later ones
    fork from it (spikeattn.worker), every one of them successfully, and the server is gone."""
    log = (workdir / ".spikeattn" / "worker.log").read_text().splitlines()
    assert log[0].startswith("spikeattn worker: ready in")
    served = [
        re.match(r"job \d+ exit (\d+) after .*? (train|energy) --study", line) for line in log[1:]
    ]
    assert all(served) and {m[1] for m in served} == {"0"}, log
    assert {m[2] for m in served} == {"train", "energy"}, log
    assert not Path(log[0].split(" at ", 1)[1]).exists(), "the server removed its socket"


def test_mlflow_holds_one_finished_run_per_cell_and_seed(workdir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("spikeattn")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert sorted(r.info.run_name for r in parents.values()) == ["demo-digits", "demo-dvs"]
    assert len(children) == 7
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] in parents
        assert {"test_acc", "train_loss", "energy_uj"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "checkpoint.pt", "energy.json"} <= artifacts


def test_nothing_planned_after_a_finished_run(workdir):
    assert planned(workdir) == {}


def test_training_setting_of_one_study_replans_only_its_jobs(workdir):
    with edited_params(workdir, lambda raw: raw["study"]["demo-dvs"]["train"].update(lr=5e-4)):
        jobs = planned(workdir)
    # the study's recipe card shows its train settings: it is re-rendered too
    assert set(jobs) == {"train", "energy", "tables", "figures", "paper", "recipe", "all"}
    planned_files = (
        jobs["train"] + jobs["energy"] + jobs["tables"] + jobs["figures"] + jobs["recipe"]
    )
    assert planned_files and all("/demo-dvs/" in f for f in planned_files), planned_files


@pytest.mark.parametrize("edit", [{"e_ac_pj": 0.77}, {"repeated_input": "every_step"}])
def test_energy_setting_replans_energy_and_reports_only(workdir, edit):
    with edited_params(workdir, lambda raw: raw["energy"].update(edit)):
        jobs = planned(workdir)
    assert set(jobs) == {"energy", "tables", "figures", "paper", "recipe", "all"}
    assert len(jobs["energy"]) == 7
    # every study's card shows the energy keys
    assert {f.split("/")[1] for f in jobs["recipe"]} == {"demo-digits", "demo-dvs"}


def test_significance_setting_replans_the_paper_tables_only(workdir):
    with edited_params(workdir, lambda raw: raw["report"].update(alpha=0.01)):
        jobs = planned(workdir)
    assert set(jobs) == {"paper", "all"}


def test_reordered_keys_and_comments_replan_nothing(workdir):
    text = (workdir / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    reordered = {key: raw[key] for key in reversed(list(raw))}
    reordered["train"] = dict(reversed(list(raw["train"].items())))
    with edited_params(
        workdir, text="# a new comment\n" + yaml.safe_dump(reordered, sort_keys=False)
    ):
        assert planned(workdir) == {}


def test_bad_params_stop_before_any_job_naming_the_key(workdir):
    before = sorted(p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.json"))
    with edited_params(workdir, lambda raw: raw["study"]["demo-dvs"]["train"].update(lr=0)):
        proc = snakemake(workdir, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "study.demo-dvs.train.lr" in proc.stderr + proc.stdout
    assert "rule train" not in proc.stdout
    assert sorted(p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.json")) == before


def test_a_yaml_syntax_error_names_the_file_and_line(workdir):
    text = (workdir / "params.yaml").read_text()
    with edited_params(workdir, text=text + "broken: [\n"):
        proc = snakemake(workdir, "--dry-run", check=False)
    line = text.count("\n") + 2  # the end of the file, where the list should have closed
    assert proc.returncode != 0
    assert f"params.yaml:{line}:1: not valid YAML" in proc.stdout + proc.stderr


def test_dvc_repro_reuses_outputs_and_shows_metrics(workdir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(*cmd):
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    checkpoints = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("checkpoint.pt")}
    out = run("dvc", "repro")
    for stage in (
        "data@digits",
        "data@digits-dvs",
        "study@demo-digits",
        "study@demo-dvs",
        "paper@demo",
    ):
        assert stage in out
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints, "dvc repro retrained"
    metrics = run("dvc", "metrics", "show")
    assert "reports/demo-dvs/metrics.json" in metrics and "acc_mean" in metrics
    assert "Data and pipelines are up to date" in run("dvc", "status")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium as root in a sandboxless container, with no background traffic on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def browser_page():
    if CHROMIUM is None:
        message = "Debian's chromium is not installed (`make test` installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def test_report_page_renders_tables_and_figures_in_chromium(workdir, browser_page):
    """Open reports/report.html as a reader would: the paper's tables render inside the
    report, with the ablation's significance, and a study's figure loads; screenshots are
    kept in test-artifacts/."""
    page = browser_page
    page.goto((workdir / "reports" / "report.html").as_uri())
    page.get_by_text("Results", exact=True).first.click()
    page.get_by_text("Tables", exact=True).first.click()
    page.locator("tr", has_text="results, ablations, studies").locator("a[iconname=eye]").click()
    frame = page.frame_locator("iframe")
    frame.locator("table.ablation").wait_for(timeout=15_000)
    headings = frame.locator("h2").all_inner_texts()
    assert headings == [
        "Headline",
        "Results",
        "Ablations against the vanilla twin",
        "Study demo-digits",
        "Study demo-dvs",
        "Recipe card: demo-digits",
        "Recipe card: demo-dvs",
    ]
    results = frame.locator("table.results").inner_text()
    assert "digits-dvs · demo_cnn · T=2" in results and "Ours (%)" in results
    assert "TA / direct" in results and "± –" in results  # one-seed cells say so
    ablation = frame.locator("table.ablation tbody tr")
    assert ablation.count() == 1 and "3 vs 3" in ablation.inner_text()
    assert "Energy conventions" in frame.locator("p.caption").nth(1).inner_text()  # results'
    headline = frame.locator("ul.headline").inner_text()  # above the tables
    assert "TA vs none (demo-dvs, seeds 3 vs 3): spikes" in headline
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-tables.png"))

    title = yaml.safe_load((workdir / "params.yaml").read_text())["papers"]["demo"]["title"]
    page.get_by_text(title, exact=True).first.click()  # the breadcrumb back to the paper
    page.get_by_text("demo-dvs", exact=True).first.click()
    page.locator("tr", has_text="accuracy vs energy").locator("a[iconname=eye]").click()
    image = page.locator("#app img").first
    image.wait_for(timeout=15_000)
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", image.element_handle())
    page.screenshot(path=str(ARTIFACTS / "report-pareto.png"))


def _latest_run_params(workdir: Path, study: str, cell: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("spikeattn")
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`spikeattn.study` = '{study}' and tags.`spikeattn.cell` = '{cell}' "
        f"and tags.`spikeattn.seed` = '0'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].data.params


# Last in this file: it leaves one cell trained with other settings.
def test_command_line_overrides_are_what_trains_and_what_mlflow_records(workdir):
    cell = next(c for c in cells_of(workdir, "demo-dvs") if "__TA__" in c)
    target = f"results/demo-dvs/{cell}/seed0/metrics.json"
    assert _latest_run_params(workdir, "demo-dvs", cell)["train.opt"] == "adam"
    # A --configfile (named with shell syntax) and --config both merge over params.yaml.
    (workdir / "p||touch X||.yaml").write_text(yaml.safe_dump({"train": {"lr": 0.005}}))
    overrides = ("--configfile", "p||touch X||.yaml", "--config", "train={opt: sgd}")
    assert set(planned(workdir, target, *overrides)) == {"train"}
    snakemake(workdir, target, "--cores", "1", *overrides)
    recorded = _latest_run_params(workdir, "demo-dvs", cell)
    assert (recorded["train.opt"], recorded["train.lr"]) == ("sgd", "0.005")
    assert not (workdir / "X").exists()
    assert planned(workdir, target, *overrides) == {}  # what ran is what was planned
    assert "train" in planned(workdir, target)  # params.yaml alone: trained with other settings
