# Tables: one report per study, computed from results/ files only.


rule tables:
    input:
        metrics=lambda w: study_run_files(w.study, "metrics.json"),
        energy=lambda w: study_run_files(w.study, paths.ENERGY_FILE),
    output:
        [str(paths.report_dir("{study}") / name) for name in paths.REPORT_FILES],
    log:
        "logs/{study}/tables.log",
    shell:
        "{SPIKEATTN} tables --study {wildcards.study} > {log} 2>&1"
