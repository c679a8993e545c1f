# Tables, claim checks, the figure set of the authors' repository, and results/report.md.
# `snakemake --report report.html` collects every output flagged with report() below,
# captioned by the rst files in rules/report/.

REFERENCE = os.path.join(workflow.basedir, "msp", "reference", "reference_results.csv")


rule tables:
    input:
        runs=[
            f"{RESULTS}/{d}/{k}_runs.csv"
            for k in ("prediction", "equivariance", "sbd")
            for d in datasets_with(k)
        ],
        reference=REFERENCE,
    output:
        [
            (
                report(path, caption="report/tables.rst", category="Tables")
                if path.endswith(".csv")
                else path
            )
            for path in table_files()
        ],
    log:
        f"{RESULTS}/logs/report/tables.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    params:
        labels=model_labels(),
        out_dir=parent_dir,
    shell:
        "python -m msp report tables --inputs {input.runs:q} --reference {input.reference:q}"
        " --labels {params.labels:q} --out-dir {params.out_dir:q} > {log} 2>&1"


rule claims:
    input:
        runs=[
            f"{RESULTS}/{d}/{k}_runs.csv"
            for k in ("prediction", "equivariance", "sbd")
            for d in datasets_with(k)
        ],
        reference=REFERENCE,
    output:
        compact=report(
            f"{RESULTS}/tables/claims_summary.csv",
            caption="report/claims.rst",
            category="Claims",
        ),
        csv=report(
            f"{RESULTS}/tables/claims.csv",
            caption="report/claims_details.rst",
            category="Claims",
        ),
        md=f"{RESULTS}/tables/claims.md",
    log:
        f"{RESULTS}/logs/report/claims.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    params:
        labels=model_labels(),
        accl_horizon=msp_runs.training_horizon(config, "mnist_accl"),
    shell:
        "python -m msp report claims --inputs {input.runs:q} --reference {input.reference:q}"
        " --labels {params.labels:q} --accl-train-horizon {params.accl_horizon}"
        " --out {output.csv} {output.md} --compact {output.compact} > {log} 2>&1"


rule figure_comp_error:
    input:
        f"{RESULTS}/{{dataset}}/prediction_runs.csv",
    output:
        png=report(
            f"{RESULTS}/figures/comp_error_{{dataset}}.png",
            caption="report/comp_error.rst",
            category="Prediction error",
            labels={"dataset": "{dataset}"},
        ),
        pdf=f"{RESULTS}/figures/comp_error_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/comp_error_{{dataset}}.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    params:
        figure="comp_error",
        labels=model_labels(),
    shell:
        "python -m msp report figure {params.figure} --inputs {input:q} --labels {params.labels:q}"
        " --out {output.png} {output.pdf} > {log} 2>&1"


use rule figure_comp_error as figure_equiv_error with:
    input:
        f"{RESULTS}/{{dataset}}/equivariance_runs.csv",
    output:
        png=report(
            f"{RESULTS}/figures/equiv_error_{{dataset}}.png",
            caption="report/equiv_error.rst",
            category="Equivariance error",
            labels={"dataset": "{dataset}"},
        ),
        pdf=f"{RESULTS}/figures/equiv_error_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/equiv_error_{{dataset}}.log",
    params:
        figure="equiv_error",


# Training loss vs step of every run of the dataset (each run's metrics.jsonl, next to model.pt).
use rule figure_comp_error as figure_training_curves with:
    input:
        lambda w: [f"{r.dir}/model.pt" for r in RUNS if r.dataset == w.dataset],
    output:
        png=report(
            f"{RESULTS}/figures/training_curves_{{dataset}}.png",
            caption="report/training_curves.rst",
            category="Training curves",
            labels={"dataset": "{dataset}"},
        ),
        pdf=f"{RESULTS}/figures/training_curves_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/training_curves_{{dataset}}.log",
    params:
        figure="training_curves",


use rule figure_comp_error as figure_sbd with:
    input:
        lambda w: f"{sbd_run_dir(w.dataset)}/eval/sbd/sbd_maps.npz",
        lambda w: f"{sbd_run_dir(w.dataset)}/eval/sbd/sbd.json",
    output:
        png=report(
            f"{RESULTS}/figures/sbd_{{dataset}}.png",
            caption="report/sbd.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "heat maps"},
        ),
        pdf=f"{RESULTS}/figures/sbd_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/sbd_{{dataset}}.log",
    params:
        figure="sbd",


use rule figure_sbd as figure_sbd_components with:
    output:
        png=report(
            f"{RESULTS}/figures/sbd_{{dataset}}_components.png",
            caption="report/sbd_components.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "per-factor maps"},
        ),
        pdf=f"{RESULTS}/figures/sbd_{{dataset}}_components.pdf",
    log:
        f"{RESULTS}/logs/figures/sbd_{{dataset}}_components.log",
    params:
        figure="sbd_components",


use rule figure_sbd as figure_disentangle with:
    output:
        png=report(
            f"{RESULTS}/figures/disentangle_{{dataset}}.png",
            caption="report/disentangle.rst",
            category="Block diagonalization",
            labels={"dataset": "{dataset}", "figure": "disentangled roll-outs"},
        ),
        pdf=f"{RESULTS}/figures/disentangle_{{dataset}}.pdf",
    log:
        f"{RESULTS}/logs/figures/disentangle_{{dataset}}.log",
    params:
        figure="disentangle",


use rule figure_comp_error as figure_gen_images with:
    input:
        lambda w: f"{msp_runs.run_dir(RESULTS, w.dataset, w.model, config['seeds'][0])}/eval/samples.npz",
    output:
        png=report(
            f"{RESULTS}/figures/gen_images/{{dataset}}_{{model}}.png",
            caption="report/gen_images.rst",
            category="Generated sequences",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
        pdf=f"{RESULTS}/figures/gen_images/{{dataset}}_{{model}}.pdf",
    log:
        f"{RESULTS}/logs/figures/gen_images_{{dataset}}_{{model}}.log",
    params:
        figure="gen_images",


rule summary:
    input:
        tables=table_files(),
        claims=rules.claims.output.csv,
        figures=all_figures(),
        runs=[f"{r.dir}/model.pt" for r in RUNS],
    output:
        f"{RESULTS}/report.md",
    log:
        f"{RESULTS}/logs/report/summary.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "python -m msp report summary --tables {input.tables:q} --claims {input.claims}"
        " --figures {input.figures:q} --runs {input.runs:q} --out {output} > {log} 2>&1"
