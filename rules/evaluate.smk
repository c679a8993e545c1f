# Evaluate each trained run (docs/evaluation.md; which model gets which evaluation is the
# `evaluations` key of the config), then gather each dataset's runs into one long CSV per
# evaluation kind (the tables and figures compute mean +- std over seeds from it).


rule evaluate_prediction:
    input:
        model=f"{RUN}/model.pt",
        data=lambda w: prepared_marker(w.dataset),
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
        "OMP_NUM_THREADS={threads} msp evaluate {params.action} --checkpoint {input.model}"
        " --out {params.out} {params.flags} > {log} 2>&1"


use rule evaluate_prediction as evaluate_equivariance with:
    output:
        f"{RUN}/eval/equivariance.csv",
    log:
        f"{RUN}/eval/equivariance.log",
    benchmark:
        f"{RUN}/eval/equivariance.benchmark.tsv"
    params:
        action="equivariance",
        out=lambda w, output: output[0],
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
        out=lambda w, output: output[0],
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
        flags=eval_flags("sbd"),


rule gather:
    input:
        lambda w: eval_files(w.kind, w.dataset),
    output:
        f"{RESULTS}/{{dataset}}/{{kind}}_runs.csv",
    log:
        f"{RESULTS}/logs/gather/{{dataset}}_{{kind}}.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report gather --kind {wildcards.kind} --dataset {wildcards.dataset}"
        " --inputs {input:q} --out {output} > {log} 2>&1"
