# One training run per dataset x model x seed (docs/interfaces.md, "Training output directory").
# Only DIR/model.pt (written last, atomically) is declared: DIR/checkpoints/ and
# DIR/metrics.jsonl are left alone by Snakemake, so a killed or failed job resumes from its
# newest checkpoint instead of restarting.


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
        data=lambda w: prepared_marker(w.dataset),
    output:
        f"{RUN}/model.pt",
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
        "OMP_NUM_THREADS={threads} python -m msp train --config {input.config} --out {params.dir:q} > {log} 2>&1"
