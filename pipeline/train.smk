# Train: one job per cell x seed. Its params are the cell's resolved settings as canonical
# JSON, so editing one study's training settings re-runs that study's jobs only, and
# reordering keys or editing comments in params.yaml re-runs nothing.
# Each job takes `gpu` slots (`--resources gpu=N`) and pins itself to free GPUs (spikeattn.gpu_slots);
# a killed job resumes from its last finished epoch when it runs again (results/.../resume.pt).


rule train:
    input:
        frames=lambda w: str(frames_path(PARAMS, cell_of(w))),
    output:
        [run_file(name) for name in paths.TRAIN_FILES],
    log:
        "logs/{study}/{cell}/seed{seed}/train.log",
    conda:
        "../envs/spikeattn.yaml"
    threads: 1
    resources:
        gpu=lambda w: gpu_slots(w.study),
    params:
        spec=lambda w: canonical_json(PARAMS.train_spec(cell_of(w))),
    shell:
        "spikeattn train --study {wildcards.study:q} --cell {wildcards.cell:q} "
        "--seed {wildcards.seed:q} --threads {threads} > {log:q} 2>&1"
