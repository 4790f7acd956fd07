# Energy: spikes and operations counted on the test set, priced with params.yaml's
# constants. Changing a constant re-runs energy and tables, never training. The conventions
# are the study's (global `energy:`, then its own `energy:`, presets expanded): changing one
# study's preset re-runs that study's energy jobs only.


rule energy:
    input:
        checkpoint=run_file("checkpoint.pt"),
        metrics=run_file("metrics.json"),
        frames=lambda w: str(frames_path(PARAMS, cell_of(w))),
    output:
        run_file(paths.ENERGY_FILE),
    log:
        "logs/{study}/{cell}/seed{seed}/energy.log",
    conda:
        "../envs/spikeattn.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=lambda w: canonical_json(PARAMS.energy_settings(w.study)),
    shell:
        "spikeattn energy --study {wildcards.study:q} --cell {wildcards.cell:q} "
        "--seed {wildcards.seed:q} --threads {threads} > {log:q} 2>&1"
