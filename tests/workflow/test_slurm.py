"""profiles/slurm for real: the tiny demo studies through Slurm on a one-node cluster.

The module fixture starts a Slurm cluster on this machine (slurm_cluster.py: Debian's
slurm-wlm and munge, installed with apt-get when missing; one node = this host, with two fake
GPUs that Slurm hands out) and stops it afterwards, even when a test fails. One Snakemake run
with `--profile profiles/slurm` (executor slurm) then builds the tiny copy of the demo studies
that test_dag.py builds with local jobs, with one seed per cell (15 Slurm jobs: each one
starts Snakemake twice, so every job costs some 20 s more than a local one); the tests check
the outputs, that every job was a Slurm job (train and energy with their GPUs), and that a
second run submits nothing.

Run on the cluster as a researcher would, except for what this machine cannot offer:
- the job sizes of the profile are cut down to this node (`fitted_to_node`);
- job states come from `squeue` instead of `sacct`: there is no slurmdbd here (the cluster
  keeps finished jobs for an hour instead), and states are polled every few seconds.
The module skips where no cluster can be started (not root, no apt-get, a real Slurm
configuration on this machine), except under CI (the `CI` variable set), where it fails.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster, Unavailable
from tiny_demo import REPO, copy_workflow, snakemake
from tiny_params import tiny_params

pytestmark = pytest.mark.slurm

PROFILE = REPO / "profiles" / "slurm"
GPU_RULES = ("train", "energy")
FAKE_GPUS = 2
# what this test cluster needs besides the profile (see the module docstring)
TEST_CLUSTER_ARGS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-keep-successful-logs",
)


@pytest.fixture(scope="module")
def cluster():
    slurm = SlurmCluster(gpus=FAKE_GPUS)
    try:
        slurm.start()
    except Unavailable as exc:
        message = f"cannot start a Slurm test cluster on this machine: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield slurm
    finally:
        slurm.stop()


def fitted_to_node(profile: dict, cpus: int, mem_mb: int, gpus: int) -> list[str]:
    """Command-line options that cut the profile's job sizes down to the test node: threads
    and CPUs per GPU to what one GPU's share of the node has, memory to a share that lets
    `cpus` jobs run side by side. Everything else in those entries (runtime, nodes, and any
    partition or GPU model) is passed on as the profile has it."""
    cpus_per_gpu = max(1, cpus // gpus)
    mem = max(100, mem_mb // cpus)

    def fit(resources: dict) -> dict:
        out = dict(resources)
        if "mem_mb" in out:
            out["mem_mb"] = min(out["mem_mb"], mem)
        if "cpus_per_gpu" in out:
            out["cpus_per_gpu"] = min(out["cpus_per_gpu"], cpus_per_gpu)
        return out

    args = ["--max-threads", str(cpus)]  # e.g. preprocess asks for 4 threads
    defaults = fit(profile.get("default-resources", {}))
    if defaults:
        args += ["--default-resources", *(f"{k}={v}" for k, v in defaults.items())]
    per_rule = {rule: fit(res) for rule, res in profile.get("set-resources", {}).items()}
    if per_rule:
        args += [
            "--set-resources",
            *(f"{rule}:{k}={v}" for rule, res in per_rule.items() for k, v in res.items()),
        ]
    threads = profile.get("set-threads", {})
    if threads:
        args += [
            "--set-threads",
            *(f"{rule}={min(n, cpus_per_gpu)}" for rule, n in threads.items()),
        ]
    return args


def slurm_snakemake(
    workdir: Path, cluster: SlurmCluster, *args: str
) -> subprocess.CompletedProcess:
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    proc = snakemake(
        workdir,
        "--profile",
        str(PROFILE),
        *TEST_CLUSTER_ARGS,
        *fitted_to_node(profile, cluster.cpus, cluster.mem_mb, cluster.gpus),
        *args,
        check=False,
    )
    if proc.returncode != 0:
        slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        tails = "\n".join(
            f"--- {p}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
            for p in slurm_logs[-3:]
        )
        raise AssertionError(
            f"snakemake --profile {PROFILE} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-8000:]}\n"
            f"last Slurm job logs:\n{tails}\n{cluster.diagnostics()}"
        )
    return proc


def run_id(proc: subprocess.CompletedProcess) -> str:
    """The plugin names every Slurm job of one Snakemake run after its run ID."""
    found = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)
    assert found, f"no SLURM run ID in Snakemake's output:\n{proc.stderr[-3000:]}"
    return found.group(1)


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> number of jobs it planned."""
    text = proc.stdout + proc.stderr
    table = text[text.index("Job stats:") :].split("\n\n")[0]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


@pytest.fixture(scope="module")
def run(cluster, tmp_path_factory):
    """One Snakemake run of the tiny demo studies through Slurm: (workdir, its output, the
    Slurm jobs it submitted as {job id: `scontrol show job` fields})."""
    params = tiny_params("demo")
    params["study"]["demo-dvs"]["seeds"] = [0]  # one seed per cell: 15 Slurm jobs
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-workflow"), params)
    start = time.monotonic()
    proc = slurm_snakemake(workdir, cluster)
    print(f"snakemake --profile profiles/slurm took {time.monotonic() - start:.0f} s")
    name = run_id(proc)
    jobs = {
        job["JobId"]: cluster.job_details(job["JobId"])
        for job in cluster.finished_jobs()
        if job.get("Name") == name
    }
    return workdir, proc, jobs


def test_run_writes_every_stage_output(run):
    from spikeattn.config import Params

    workdir, _, _ = run
    params = Params.load(workdir / "params.yaml")
    assert list(workdir.glob("data/raw/*/manifest.json"))
    assert list(workdir.glob("data/frames/*/*/train.pt"))
    runs = 0
    for study in ("demo-digits", "demo-dvs"):
        for cell in params.cells(study):
            runs += 1
            run_dir = workdir / "results" / study / cell.id / "seed0"
            for name in ("metrics.json", "history.csv", "checkpoint.pt", "energy.json"):
                assert (run_dir / name).is_file(), run_dir / name
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
            assert (workdir / "reports" / study / name).is_file(), f"reports/{study}/{name}"
    assert runs == 3  # 1 digits cell + 2 digits-dvs cells, one seed each
    for name in ("results.md", "results.csv", "ablation.md", "tables.html"):
        assert (workdir / "reports" / "demo" / name).is_file(), f"reports/demo/{name}"


def test_every_job_ran_as_a_slurm_job_with_its_gpus(run):
    workdir, proc, jobs = run
    planned = job_counts(proc)
    assert planned.get("train") == 3 and planned.get("energy") == 3, planned
    assert jobs, "Slurm's job completion log lists no job of this run"
    assert {job["JobState"] for job in jobs.values()} == {"COMPLETED"}
    # the plugin comments each job with its rule and wildcards: rule_<rule>_wildcards_<...>
    per_rule: dict[str, list[dict]] = {}
    for job in jobs.values():
        rule = re.match(r"rule_(\w+?)(?:_wildcards_|$)", job["Comment"]).group(1)
        per_rule.setdefault(rule, []).append(job)
    # every job but the target rule `all` (which Snakemake runs itself) went through Slurm
    assert {rule: len(js) for rule, js in per_rule.items()} == {
        rule: n for rule, n in planned.items() if rule != "all"
    }
    for rule, rule_jobs in per_rule.items():
        for job in rule_jobs:
            asked, got = job.get("TresPerJob", ""), job.get("JOB_GRES", "")
            if rule in GPU_RULES:
                assert re.fullmatch(r"gres:gpu:\d+", asked), f"{rule} job asked for no GPU: {job}"
                assert got == asked.removeprefix("gres:"), (
                    f"{rule} job got {got!r}, asked {asked!r}"
                )
            else:
                assert "gpu" not in asked + got, f"{rule} job with a GPU: {job}"
            log = workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}"
            assert list(log.rglob(f"{job['JobId']}.log")), f"no Slurm log for job {job['JobId']}"


def test_second_run_submits_nothing(run, cluster):
    workdir, _, _ = run
    before = len(cluster.finished_jobs())
    proc = slurm_snakemake(workdir, cluster)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert len(cluster.finished_jobs()) == before
