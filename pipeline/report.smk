# Tables: one report per study, computed from results/ files only.


rule tables:
    input:
        metrics=lambda w: study_run_files(w.study, "metrics.json"),
        energy=lambda w: study_run_files(w.study, paths.ENERGY_FILE),
    output:
        report_files("{study}"),
    log:
        "logs/{study}/tables.log",
    shell:
        "{SPIKEATTN} tables --study {wildcards.study} > {log} 2>&1"
