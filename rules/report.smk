# Tables, claim checks, the figure set of the authors' repository, and results/report.md.
# `snakemake --report report.html` collects every output flagged with report() below,
# captioned by the rst files in rules/report/.

REFERENCE = os.path.join(workflow.basedir, "msp", "reference", "reference_results.csv")


rule tables:
    input:
        runs=[
            f"results/{d}/{k}_runs.csv"
            for k in ("prediction", "equivariance", "sbd")
            for d in datasets_with(k)
        ],
        reference=REFERENCE,
    output:
        [
            report(path, caption="report/tables.rst", category="Tables")
            if path.endswith(".csv")
            else path
            for path in table_files()
        ],
    log:
        "results/logs/report/tables.log",
    params:
        labels=model_labels_arg(),
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report tables --inputs {input.runs:q} --reference {input.reference:q}"
        " --labels {params.labels} --out-dir results/tables > {log} 2>&1"


rule claims:
    input:
        runs=[
            f"results/{d}/{k}_runs.csv"
            for k in ("prediction", "equivariance", "sbd")
            for d in datasets_with(k)
        ],
        reference=REFERENCE,
    output:
        csv=report(
            "results/tables/claims.csv", caption="report/claims.rst", category="Claims"
        ),
        md="results/tables/claims.md",
    log:
        "results/logs/report/claims.log",
    params:
        labels=model_labels_arg(),
        accl_horizon=msp_runs.training_horizon(config, "mnist_accl"),
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report claims --inputs {input.runs:q} --reference {input.reference:q}"
        " --labels {params.labels} --accl-train-horizon {params.accl_horizon}"
        " --out {output.csv} {output.md} > {log} 2>&1"


rule figure_comp_error:
    input:
        "results/{dataset}/prediction_runs.csv",
    output:
        png=report(
            "results/figures/comp_error_{dataset}.png",
            caption="report/comp_error.rst",
            category="Prediction error",
            labels={"dataset": "{dataset}"},
        ),
        pdf="results/figures/comp_error_{dataset}.pdf",
    log:
        "results/logs/figures/comp_error_{dataset}.log",
    params:
        labels=model_labels_arg(),
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report figure comp_error --inputs {input:q} --labels {params.labels}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_comp_error as figure_equiv_error with:
    input:
        "results/{dataset}/equivariance_runs.csv",
    output:
        png=report(
            "results/figures/equiv_error_{dataset}.png",
            caption="report/equiv_error.rst",
            category="Equivariance error",
            labels={"dataset": "{dataset}"},
        ),
        pdf="results/figures/equiv_error_{dataset}.pdf",
    log:
        "results/logs/figures/equiv_error_{dataset}.log",
    shell:
        "msp report figure equiv_error --inputs {input:q} --labels {params.labels}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_comp_error as figure_sbd with:
    input:
        lambda w: f"{sbd_run_dir(w.dataset)}/eval/sbd/sbd_maps.npz",
        lambda w: f"{sbd_run_dir(w.dataset)}/eval/sbd/sbd.json",
    output:
        png=report(
            "results/figures/sbd_{dataset}.png",
            caption="report/sbd.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "heat maps"},
        ),
        pdf="results/figures/sbd_{dataset}.pdf",
    log:
        "results/logs/figures/sbd_{dataset}.log",
    shell:
        "msp report figure sbd --inputs {input:q} --labels {params.labels}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_sbd as figure_sbd_components with:
    output:
        png=report(
            "results/figures/sbd_{dataset}_components.png",
            caption="report/sbd_components.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "per-factor maps"},
        ),
        pdf="results/figures/sbd_{dataset}_components.pdf",
    log:
        "results/logs/figures/sbd_{dataset}_components.log",
    shell:
        "msp report figure sbd_components --inputs {input:q} --labels {params.labels}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_sbd as figure_disentangle with:
    output:
        png=report(
            "results/figures/disentangle_{dataset}.png",
            caption="report/disentangle.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "disentangled roll-outs"},
        ),
        pdf="results/figures/disentangle_{dataset}.pdf",
    log:
        "results/logs/figures/disentangle_{dataset}.log",
    shell:
        "msp report figure disentangle --inputs {input:q} --labels {params.labels}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_comp_error as figure_gen_images with:
    input:
        lambda w: f"{msp_runs.run_dir(w.dataset, w.model, config['seeds'][0])}/eval/samples.npz",
    output:
        png=report(
            "results/figures/gen_images/{dataset}_{model}.png",
            caption="report/gen_images.rst",
            category="Generated sequences",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
        pdf="results/figures/gen_images/{dataset}_{model}.pdf",
    log:
        "results/logs/figures/gen_images_{dataset}_{model}.log",
    shell:
        "msp report figure gen_images --inputs {input:q} --labels {params.labels}"
        " --title '{wildcards.dataset}, {wildcards.model}' --out {output.png} {output.pdf}"
        " > {log} 2>&1"


rule summary:
    input:
        tables=table_files(),
        claims=rules.claims.output.md,
        figures=all_figures(),
    output:
        "results/report.md",
    log:
        "results/logs/report/summary.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report summary --tables {input.tables:q} --claims {input.claims}"
        " --figures {input.figures:q} --out {output} > {log} 2>&1"
