# msp-pipeline: the paper's datasets, trainings, evaluations, tables and figures.
#   snakemake --cores 4 --resources gpu=1                          the paper (configs/config.yaml)
#   snakemake --cores 2 --configfile configs/demo.yaml             the offline demo
#   snakemake --report report.html                                 one HTML report afterwards


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


report: "rules/report/workflow.rst"


rule all:
    default_target: True
    input:
        table_files(),
        rules.claims.output,
        all_figures(),
        rules.summary.output,
