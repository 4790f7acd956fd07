# spikeattn workflow: params.yaml -> data -> frames -> train -> energy -> tables, figures.
#   snakemake --cores N                         every study selected in params.yaml
#   snakemake --cores N --config studies=demo   the demo studies (embedded data, CPU)
#   snakemake --config studies=demo --report reports/report.html   tables and figures, one page
# Stages live in pipeline/*.smk; each rule runs one `spikeattn <stage>` command.

import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")  # the pinned version is 9.27.1 (requirements.lock)

from spikeattn import stop_notice
from spikeattn.io import read_yaml

stop_notice.quiet_until_start()  # Ctrl-C while planning: one line, not a traceback

# Snakemake's own message for a YAML syntax error names neither file nor line; this one does.
for _file in ["params.yaml", *workflow.overwrite_configfiles]:
    if os.path.exists(_file):
        try:
            read_yaml(_file)
        except ValueError as err:
            raise WorkflowError(str(err)) from None


configfile: "params.yaml"


report: "pipeline/report/workflow.rst"


include: "pipeline/common.smk"


# The MLflow store, its experiment and the studies' parent runs are created once, before any
# job, so parallel jobs only add their own runs (MLFLOW_TRACKING_URI: a server instead of mlflow.db).
onstart:
    from spikeattn.tracking import Tracker

    stop_notice.watch()  # a stop (SIGTERM, Ctrl-C) is then explained as one, not as a failure
    start_worker()  # imports while the store is set up; early jobs run without it
    Tracker().ensure_store(SELECTED)


onsuccess:
    stop_worker()


onerror:
    stop_worker()
    stop_notice.explain()


rule all:
    default_target: True
    input:
        [
            report_files(study) + figure_files(study) + recipe_files(study)
            for study in SELECTED
        ],
        [paper_files(paper) for paper in PAPERS],


include: "pipeline/data.smk"
include: "pipeline/train.smk"
include: "pipeline/energy.smk"
include: "pipeline/report.smk"
