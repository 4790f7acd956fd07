# Reports, computed from results/ files only: per study its tables and figures, per paper
# its results and ablation tables and its headline (headline.md, also atop tables.html);
# `snakemake --report reports/report.html` gathers them.
# Each study's recipe card comes from params.yaml alone.
rule tables:
    input:
        metrics=lambda w: study_run_files(w.study, "metrics.json"),
        energy=lambda w: study_run_files(w.study, paths.ENERGY_FILE),
    output:
        report_files("{study}"),
    log:
        "logs/{study}/tables.log",
    conda:
        "../envs/spikeattn.yaml"
    shell:
        "spikeattn tables --study {wildcards.study:q} > {log:q} 2>&1"


rule figures:
    input:
        summary=str(paths.report_dir("{study}") / "summary.csv"),
        energy=lambda w: study_run_files(w.study, paths.ENERGY_FILE),
        history=lambda w: study_run_files(w.study, "history.csv"),
    output:
        pareto=report_figure("pareto", "accuracy vs energy"),
        firing_rates=report_figure("firing_rates", "firing rate per layer"),
        training_curves=report_figure("training_curves", "training curves"),
        svg=[figure_file("{study}", n, "svg") for n in paths.FIGURE_NAMES],
    log:
        "logs/{study}/figures.log",
    conda:
        "../envs/spikeattn.yaml"
    params:
        captions=lambda w: figure_captions(PARAMS, w.study, energy_caption(w.study)),
    shell:
        "spikeattn figures --study {wildcards.study:q} > {log:q} 2>&1"


rule paper:
    input:
        metrics=lambda w: [
            f for s in paper_studies(w) for f in study_run_files(s, "metrics.json")
        ],
        energy=lambda w: [
            f for s in paper_studies(w) for f in study_run_files(s, paths.ENERGY_FILE)
        ],
    output:
        tables=report(
            str(paths.report_dir("{paper}") / "tables.html"),
            caption="report/tables.rst",
            category=paper_title,
            subcategory="Tables",
            labels={"paper": "{paper}", "tables": "results, ablations, studies"},
        ),
        other=[
            str(paths.report_dir("{paper}") / n)
            for n in paths.PAPER_FILES
            if n != "tables.html"
        ],
    log:
        "logs/{paper}/paper.log",
    conda:
        "../envs/spikeattn.yaml"
    params:
        settings=canonical_json(PARAMS.report),
        recipes=lambda w: canonical_json(
            {s: recipe_inputs(PARAMS, s) for s in paper_studies(w)}
        ),
        caption=lambda w: paper_report_caption(
            PARAMS, w.paper, paper_studies(w), paper_energy_caption(paper_studies(w))
        ),
    shell:
        "spikeattn paper --paper {wildcards.paper:q} > {log:q} 2>&1"


# A study's recipe card, from params.yaml alone (no results): its params are the study's
# settings and sources, so editing one source re-renders that card (and its paper's tables.html).
rule recipe:
    output:
        html=report(
            str(paths.report_dir("{study}") / "recipe.html"),
            caption="report/recipe.rst",
            category=paper_title,
            subcategory="{study}",
            labels={"study": "{study}", "figure": "recipe card"},
        ),
        other=[
            str(paths.report_dir("{study}") / n)
            for n in paths.RECIPE_FILES
            if n != "recipe.html"
        ],
    log:
        "logs/{study}/recipe.log",
    conda:
        "../envs/spikeattn.yaml"
    params:
        recipe=lambda w: canonical_json(recipe_inputs(PARAMS, w.study)),
        caption=lambda w: rst_escape(
            recipe_caption(w.study, recipe_card(PARAMS, w.study))
        ),
    shell:
        "spikeattn recipe --study {wildcards.study:q} > {log:q} 2>&1"
