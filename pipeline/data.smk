# Data: raw datasets (embedded ones built locally, real ones downloaded), then frames.


rule raw_data:
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        # Only what the raw data depends on (e.g. not the upsampled image size).
        spec=lambda w: canonical_json(raw_params(w.dataset, PARAMS.dataset(w.dataset))),
        stage=lambda w: "prepare" if DATASETS[w.dataset].source == "embedded" else "download",
    log:
        "logs/data/{dataset}.log",
    shell:
        "{SPIKEATTN} {params.stage} {wildcards.dataset} > {log} 2>&1"


rule preprocess:
    input:
        "data/raw/{dataset}/manifest.json",
    output:
        "data/frames/{dataset}/{key}/frames.pt",
    params:
        args=lambda w: FRAMES[(w.dataset, w.key)],
    log:
        "logs/data/{dataset}-{key}.log",
    shell:
        "{SPIKEATTN} preprocess {wildcards.dataset} {params.args} > {log} 2>&1"
