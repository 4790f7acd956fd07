# spikeattn workflow: params.yaml -> data -> frames -> train -> energy -> tables.
#   snakemake --cores N                         every study selected in params.yaml
#   snakemake --cores N --config studies=demo   the demo studies (embedded data, CPU)
# Stages live in pipeline/*.smk; each rule runs one `spikeattn <stage>` command.

configfile: "params.yaml"


include: "pipeline/common.smk"


rule all:
    default_target: True
    input:
        [report_files(study) for study in SELECTED],


include: "pipeline/data.smk"
include: "pipeline/train.smk"
include: "pipeline/energy.smk"
include: "pipeline/report.smk"
