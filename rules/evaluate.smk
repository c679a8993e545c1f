# Evaluate each trained run (spec evaluation.md; which model gets which evaluation is the
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
    params:
        flags=eval_flags,
    threads: EVAL_RES["threads"]
    resources:
        gpu=EVAL_RES["gpu"],
        mem_mb=EVAL_RES["mem_mb"],
        runtime=EVAL_RES["runtime"],
    conda:
        "../envs/msp.yaml"
    shell:
        "OMP_NUM_THREADS={threads} msp evaluate prediction --checkpoint {input.model}"
        " --out {output} {params.flags} > {log} 2>&1"


use rule evaluate_prediction as evaluate_equivariance with:
    output:
        f"{RUN}/eval/equivariance.csv",
    log:
        f"{RUN}/eval/equivariance.log",
    benchmark:
        f"{RUN}/eval/equivariance.benchmark.tsv"
    shell:
        "OMP_NUM_THREADS={threads} msp evaluate equivariance --checkpoint {input.model}"
        " --out {output} {params.flags} > {log} 2>&1"


use rule evaluate_prediction as evaluate_samples with:
    output:
        f"{RUN}/eval/samples.npz",
    log:
        f"{RUN}/eval/samples.log",
    benchmark:
        f"{RUN}/eval/samples.benchmark.tsv"
    shell:
        "OMP_NUM_THREADS={threads} msp evaluate samples --checkpoint {input.model}"
        " --out {output} {params.flags} > {log} 2>&1"


use rule evaluate_prediction as evaluate_sbd with:
    output:
        json=f"{RUN}/eval/sbd/sbd.json",
        maps=f"{RUN}/eval/sbd/sbd_maps.npz",
    log:
        f"{RUN}/eval/sbd.log",
    benchmark:
        f"{RUN}/eval/sbd.benchmark.tsv"
    params:
        flags=eval_flags,
        dir=f"{RUN}/eval/sbd",
    shell:
        "OMP_NUM_THREADS={threads} msp evaluate sbd --checkpoint {input.model}"
        " --out {params.dir} {params.flags} > {log} 2>&1"


rule gather:
    input:
        lambda w: eval_files(w.kind, w.dataset),
    output:
        "results/{dataset}/{kind}_runs.csv",
    log:
        "results/logs/gather/{dataset}_{kind}.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "msp report gather --kind {wildcards.kind} --dataset {wildcards.dataset}"
        " --inputs {input:q} --out {output} > {log} 2>&1"
