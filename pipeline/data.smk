# Data: raw datasets (embedded ones built locally, real ones downloaded), then frames.


# Data first: with few cores, a dataset's frames built early let both studies' training
# interleave instead of one study's waiting behind the other's (priority: among ready jobs).
rule raw_data:
    output:
        "data/raw/{dataset}/manifest.json",
    log:
        "logs/data/{dataset}.log",
    priority: 50
    conda:
        "../envs/spikeattn.yaml"
    params:
        # Only what the raw data depends on (e.g. not the upsampled image size).
        spec=lambda w: canonical_json(raw_params(w.dataset, PARAMS.dataset(w.dataset))),
        stage=lambda w: (
            "prepare" if DATASETS[w.dataset].source == "embedded" else "download"
        ),
    shell:
        "spikeattn {params.stage:q} {wildcards.dataset:q} > {log:q} 2>&1"


rule preprocess:
    input:
        "data/raw/{dataset}/manifest.json",
    output:
        # One file per split, and meta.json; the directory appears whole or not at all.
        "data/frames/{dataset}/{key}/train.pt",
        "data/frames/{dataset}/{key}/test.pt",
        "data/frames/{dataset}/{key}/meta.json",
    log:
        "logs/data/{dataset}-{key}.log",
    priority: 50
    conda:
        "../envs/spikeattn.yaml"
    threads: 4
    params:
        args=lambda w: FRAMES[(w.dataset, w.key)],
    shell:
        "spikeattn preprocess {wildcards.dataset:q} {params.args} --workers {threads} > {log:q} 2>&1"


rule dataset_frames:
    """Every frames cache of one dataset that the selected studies use, listed in one file:
    DVC's data stage builds this, so `dvc push`/`dvc pull` share the caches."""
    input:
        lambda w: [
            f"data/frames/{d}/{key}/meta.json" for d, key in FRAMES if d == w.dataset
        ],
    output:
        "data/frames/{dataset}/caches.json",
    log:
        "logs/data/{dataset}-caches.log",
    run:
        list_frames_caches(wildcards.dataset, input, output[0], log[0])
