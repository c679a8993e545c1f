# Evaluate each trained run (docs/evaluation.md; which model gets which evaluation is the
# `evaluations` key of the config), then gather each dataset's runs into one long CSV per
# evaluation kind (the tables and figures compute mean +- std over seeds from it), with the
# trivial baselines (copy the last frame, the mean training frame) evaluated once per dataset
# by the same protocol code.


rule evaluate_prediction:
    input:
        model=f"{RUN}/model.pt",
        data=lambda w: ancient(data_used(w.dataset)),
    output:
        f"{RUN}/eval/prediction.csv",
    log:
        f"{RUN}/eval/prediction.log",
    benchmark:
        f"{RUN}/eval/prediction.benchmark.tsv"
    conda:
        "../envs/msp.yaml"
    threads: EVAL_RES["threads"]
    resources:
        gpu=EVAL_RES["gpu"],
        mem_mb=EVAL_RES["mem_mb"],
        runtime=EVAL_RES["runtime"],
    params:
        action="prediction",
        out=lambda w, output: output[0],
        flags=eval_flags("prediction"),
    shell:
        "OMP_NUM_THREADS={threads} python -m msp evaluate {params.action} --checkpoint {input.model}"
        " --expect-run {wildcards.dataset}/{wildcards.model}/seed{wildcards.seed} --root {DATA_ROOT_ARG}"
        " --out {params.out:q} {params.flags:q} > {log} 2>&1"


use rule evaluate_prediction as evaluate_equivariance with:
    output:
        f"{RUN}/eval/equivariance.csv",
    log:
        f"{RUN}/eval/equivariance.log",
    benchmark:
        f"{RUN}/eval/equivariance.benchmark.tsv"
    params:
        action="equivariance",
        flags=eval_flags("equivariance"),


use rule evaluate_prediction as evaluate_samples with:
    output:
        f"{RUN}/eval/samples.npz",
    log:
        f"{RUN}/eval/samples.log",
    benchmark:
        f"{RUN}/eval/samples.benchmark.tsv"
    params:
        action="samples",
        flags=eval_flags("samples"),


# `msp evaluate sbd --out DIR` writes DIR/sbd.json and DIR/sbd_maps.npz.
use rule evaluate_prediction as evaluate_sbd with:
    output:
        json=f"{RUN}/eval/sbd/sbd.json",
        maps=f"{RUN}/eval/sbd/sbd_maps.npz",
    log:
        f"{RUN}/eval/sbd.log",
    benchmark:
        f"{RUN}/eval/sbd.benchmark.tsv"
    params:
        action="sbd",
        out=parent_dir,
        flags=sbd_flags,


# No training and no seed: RESULTS/DATASET/BASELINE/eval/KIND.csv, on the CPU (seconds).
rule evaluate_baseline:
    input:
        data=lambda w: ancient(data_used(w.dataset)),
    output:
        f"{RESULTS}/{{dataset}}/{{baseline}}/eval/{{kind}}.csv",
    log:
        f"{RESULTS}/{{dataset}}/{{baseline}}/eval/{{kind}}.log",
    conda:
        "../envs/msp.yaml"
    threads: 1
    resources:
        mem_mb=EVAL_RES["mem_mb"],
        runtime=EVAL_RES["runtime"],
    params:
        flags=lambda w: eval_flags(w.kind),
        options=dataset_options_arg,
        source=SOURCE,
    shell:
        "OMP_NUM_THREADS={threads} python -m msp evaluate {wildcards.kind} --baseline {wildcards.baseline}"
        " --dataset {wildcards.dataset} --dataset-options {params.options:q} --root {DATA_ROOT_ARG}"
        " --source {params.source} --out {output} {params.flags:q} --device cpu > {log} 2>&1"


rule gather:
    input:
        lambda w: eval_files(w.kind, w.dataset) + baseline_files(w.kind, w.dataset),
    output:
        f"{RESULTS}/{{dataset}}/{{kind}}_runs.csv",
    log:
        f"{RESULTS}/logs/gather/{{dataset}}_{{kind}}.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "python -m msp report gather --kind {wildcards.kind} --dataset {wildcards.dataset}"
        " --inputs {input:q} --out {output} > {log} 2>&1"
