# Validation and helpers shared by the rules. The grid comes from params.yaml through
# spikeattn.config, so it is declared once and checked before any job is scheduled.
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from spikeattn import paths
from spikeattn.config import Params, ParamsError
from spikeattn.data import DATASETS, raw_params
from spikeattn.energy import EnergyConventions, captions_by_study
from spikeattn.frozen_params import freeze_params
from spikeattn.recipe import recipe_inputs
from spikeattn.report.captions import figure_captions, paper_report_caption, rst_escape
from spikeattn.report.recipe import recipe_card, recipe_caption
from spikeattn.io import canonical_json, write_json
from spikeattn.job_inputs import frames_path
from spikeattn.worker import ENV_SOCKET
from spikeattn.worker import launch as worker_launch


def _config_source():
    """Where `config` came from, for error messages: params.yaml and the overrides."""
    files = [str(f) for f in workflow.overwrite_configfiles]
    parts = [" + ".join(["params.yaml", *(f"--configfile {f}" for f in files)])]
    if workflow.config_settings.overwrite_config:
        parts.append(
            "--config " + " ".join(sorted(workflow.config_settings.overwrite_config))
        )
    return " + ".join(parts)


# `config` is params.yaml merged with --configfile and --config: what Snakemake plans with.
# Jobs read exactly that, frozen into a file named by its digest (spikeattn.frozen_params).
# Validated fully (torch, timm) once per params, code and library versions; later plans of
# the same params read the verdict from its record (paths.VALIDATED) and load no torch.
try:
    PARAMS = Params(config, source=_config_source(), record=paths.VALIDATED)
    SELECTED = PARAMS.selected(config["studies"])
    PARAMS_FILE = freeze_params(config)
except (ParamsError, ValueError) as err:
    raise WorkflowError(str(err)) from None


USE_CONDA = "CONDA" in {
    method.name for method in workflow.deployment_settings.deployment_method
}
# This run's job server (spikeattn.worker): train and energy jobs fork from one process that
# imported torch, timm and MLflow once. Not under --use-conda (the rule's own environment
# runs each job) or with SPIKEATTN_WORKER=off; started in onstart, for local execution only.
WORKER_SOCKET = None if USE_CONDA else worker_launch.socket_path()
WORKER = {}


def _spikeattn_command():
    """How a job runs `spikeattn`: the interpreter running Snakemake (no reliance on PATH or an
    activated venv), handing train/energy jobs to this run's server when it answers; or under
    `--use-conda` the rule's environment's python (envs/spikeattn.yaml) with this checkout's
    src/ on its path. Quoted: a path may contain spaces."""
    if USE_CONDA:
        src = shlex.quote(str(Path(workflow.basedir) / "src"))
        python = f'PYTHONPATH={src}"${{PYTHONPATH:+:$PYTHONPATH}}" python'
    else:
        python = shlex.quote(sys.executable)
        if WORKER_SOCKET:
            python = f"{ENV_SOCKET}={shlex.quote(WORKER_SOCKET)} {python}"
    return f"{python} -m spikeattn --params {shlex.quote(str(PARAMS_FILE))}"


def start_worker():
    """onstart: the job server, for jobs run on this machine."""
    if WORKER_SOCKET and workflow.local_exec and not workflow.remote_exec:
        WORKER["server"] = worker_launch.start(WORKER_SOCKET, paths.WORKER_LOG)


def stop_worker():
    """onsuccess/onerror: every job has ended."""
    worker_launch.stop(WORKER.pop("server", None))


# Every rule's command starts with the shell function `spikeattn`, which runs it with the frozen
# params of this run; defined in the shell prefix (with bash's strict mode, Snakemake's default),
# so each rule's command reads as what a user would type.
shell.executable("bash")
_COMMAND = (
    _spikeattn_command().replace("{", "{{").replace("}", "}}")
)  # shell.prefix formats it
shell.prefix(f'set -euo pipefail; spikeattn() {{{{ {_COMMAND} "$@"; }}}}; ')

# Snakemake counts `--resources gpu=N` but does not say which GPU a job gets: each train and
# energy job leases free GPU slots itself (lock files; compute.jobs_per_gpu slots per GPU) and
# sets CUDA_VISIBLE_DEVICES before touching CUDA (spikeattn.gpu_slots).


def gpu_slots(study):
    """GPU slots one train job of `study` takes: 1, or every slot of its nproc_per_node GPUs."""
    nproc = PARAMS.distributed(study)["nproc_per_node"]
    return 1 if nproc == 1 else nproc * PARAMS.jobs_per_gpu


wildcard_constraints:
    study="[^/]+",
    cell="[^/]+",
    seed=r"\d+",
    dataset="|".join(DATASETS),
    paper="|".join(PARAMS.papers) or "^$",


def cell_of(wildcards):
    return PARAMS.cell(wildcards.study, wildcards.cell)


def run_file(name):
    """A file in results/<study>/<cell>/seed<k>/, as a pattern for rule outputs."""
    return str(paths.run_dir("{study}", "{cell}", "{seed}") / name)


def study_run_files(study, name):
    """That file for every cell x seed of a study."""
    return [
        str(paths.run_dir(study, cell.id, seed) / name)
        for cell in PARAMS.cells(study)
        for seed in PARAMS.seeds(study)
    ]


def report_files(study):
    return [str(paths.report_dir(study) / name) for name in paths.REPORT_FILES]


def figure_file(study, name, fmt):
    return str(paths.report_dir(study) / f"{name}.{fmt}")


def figure_files(study):
    return [
        figure_file(study, n, f)
        for n in paths.FIGURE_NAMES
        for f in paths.FIGURE_FORMATS
    ]


def paper_files(paper):
    return [str(paths.report_dir(paper) / name) for name in paths.PAPER_FILES]


def recipe_files(study):
    return [str(paths.report_dir(study) / name) for name in paths.RECIPE_FILES]


# Papers whose studies are all selected get their tables (a paper's table needs every study).
PAPERS = PARAMS.papers_of(SELECTED)
PAPER_OF = {
    study: paper for paper in PARAMS.papers for study in PARAMS.paper(paper)["studies"]
}


# Every frames cache the selected studies need: (dataset, key) -> `spikeattn preprocess`
# arguments that build it (a study whose overrides give the same key shares the cache).
FRAMES = {}
for _study in SELECTED:
    for _cell in PARAMS.cells(_study):
        _key = frames_path(PARAMS, _cell).parent.name
        FRAMES.setdefault(
            (_cell.dataset, _key), shlex.join(["--T", str(_cell.T), "--study", _study])
        )


def list_frames_caches(dataset, meta_files, output, log):
    """data/frames/<dataset>/caches.json: the cache keys of `dataset` the selection uses."""
    caches = sorted(Path(p).parent.name for p in meta_files)
    write_json(output, {"dataset": dataset, "caches": caches})
    Path(log).write_text(f"{len(caches)} frames caches of {dataset}\n")


# Reports: captions and titles the report rules attach to their outputs.


def energy_caption(study):
    """The study's energy conventions as its captions state them (its preset, if any)."""
    return EnergyConventions.from_params(PARAMS.energy_settings(study)).caption()


def paper_energy_caption(studies):
    """A paper's: its studies' captions, each distinct one once."""
    return captions_by_study({s: energy_caption(s) for s in studies})


def paper_title(wildcards):
    paper = (
        wildcards.paper
        if "paper" in wildcards.keys()
        else PAPER_OF.get(wildcards.study)
    )
    return PARAMS.paper(paper)["title"] if paper else "Studies outside any paper"


def paper_studies(wildcards):
    return PARAMS.paper(wildcards.paper)["studies"]


def report_figure(name, label):
    return report(
        figure_file("{study}", name, "png"),
        caption=f"report/{name}.rst",
        category=paper_title,
        subcategory="{study}",
        labels={"study": "{study}", "figure": label},
    )
