# Validation and helpers shared by the rules. The grid comes from params.yaml through
# spikeattn.config, so it is declared once and checked before any job is scheduled.
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from spikeattn import paths
from spikeattn.config import Params, ParamsError
from spikeattn.data import DATASETS, raw_params
from spikeattn.frozen_params import freeze_params
from spikeattn.io import canonical_json, write_json
from spikeattn.job_inputs import frames_path


def _config_source():
    """Where `config` came from, for error messages: params.yaml and the overrides."""
    files = [str(f) for f in workflow.overwrite_configfiles]
    parts = [" + ".join(["params.yaml"] + [f"--configfile {f}" for f in files])]
    if workflow.config_settings.overwrite_config:
        parts.append("--config " + " ".join(sorted(workflow.config_settings.overwrite_config)))
    return " + ".join(parts)


# `config` is params.yaml merged with --configfile and --config: what Snakemake plans with.
# Jobs read exactly that, frozen into a file named by its digest (spikeattn.frozen_params).
try:
    PARAMS = Params(config, source=_config_source())
    SELECTED = PARAMS.selected(config["studies"])
    PARAMS_FILE = freeze_params(config)
except (ParamsError, ValueError) as err:
    raise WorkflowError(str(err)) from None

# The interpreter running Snakemake runs the jobs too: no reliance on PATH or an activated venv.
# Quoted: a checkout path may contain spaces or shell characters.
SPIKEATTN = shlex.join([sys.executable, "-m", "spikeattn", "--params", str(PARAMS_FILE)])

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
    return [str(paths.run_dir(study, cell.id, seed) / name)
            for cell in PARAMS.cells(study) for seed in PARAMS.seeds(study)]


def report_files(study):
    return [str(paths.report_dir(study) / name) for name in paths.REPORT_FILES]


def figure_file(study, name, fmt):
    return str(paths.report_dir(study) / f"{name}.{fmt}")


def figure_files(study):
    return [figure_file(study, n, f) for n in paths.FIGURE_NAMES for f in paths.FIGURE_FORMATS]


def paper_files(paper):
    return [str(paths.report_dir(paper) / name) for name in paths.PAPER_FILES]


def recipe_files(study):
    return [str(paths.report_dir(study) / name) for name in paths.RECIPE_FILES]


# Papers whose studies are all selected get their tables (a paper's table needs every study).
PAPERS = PARAMS.papers_of(SELECTED)
PAPER_OF = {study: paper for paper in PARAMS.papers for study in PARAMS.paper(paper)["studies"]}


# Every frames cache the selected studies need: (dataset, key) -> `spikeattn preprocess`
# arguments that build it (a study whose overrides give the same key shares the cache).
FRAMES = {}
for _study in SELECTED:
    for _cell in PARAMS.cells(_study):
        _key = frames_path(PARAMS, _cell).parent.name
        FRAMES.setdefault((_cell.dataset, _key), shlex.join(["--T", str(_cell.T), "--study", _study]))
