# One training run per dataset x model x seed (docs/interfaces.md, "Training output directory").
# Only DIR/model.pt (written last, atomically) is declared: DIR/checkpoints/ and
# DIR/metrics.jsonl are left alone by Snakemake, so a killed or failed job resumes from its
# newest checkpoint instead of restarting.
# Experiment vs execution (msp.config.EXECUTION_KEYS): run.yaml and the params hold the run's
# identity only; the execution details (data root, device, logging and checkpoint cadence,
# speed switches) reach `msp train` as --set flags through the global TRAIN_EXECUTION, which
# Snakemake does not track as params, so changing them never reruns a job. The data input is
# the ancient() RESULTS/data_used/... copy of prepared.json (rules/data.smk): its path does not
# depend on data.root, and its renewal does not propagate (msp train checks the arrays by
# sha256 instead). model.pt is protected() (read-only: Snakemake refuses to replace it, except
# when it runs as root); the parse-time guard in rules/common.smk stops a changed experiment
# over finished runs for everyone.


rule run_config:
    output:
        f"{RUN}/run.yaml",
    log:
        f"{RUN}/run_config.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    params:
        text=lambda w: msp_runs.run_config_yaml(config, w.dataset, w.model, w.seed),
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"


rule train:
    input:
        config=rules.run_config.output,
        data=lambda w: ancient(data_used(w.dataset)),
    output:
        protected(f"{RUN}/model.pt"),
    log:
        f"{RUN}/train.log",
    benchmark:
        f"{RUN}/train.benchmark.tsv"
    conda:
        "../envs/msp.yaml"
    threads: TRAIN_RES["threads"]
    resources:
        gpu=TRAIN_RES["gpu"],
        mem_mb=TRAIN_RES["mem_mb"],
        runtime=train_runtime,
    params:
        dir=parent_dir,
    shell:
        "OMP_NUM_THREADS={threads} python -m msp train --config {input.config} --out {params.dir:q}"
        " {TRAIN_EXECUTION} > {log} 2>&1"
