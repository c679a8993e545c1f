# msp-pipeline: the paper's datasets, trainings, evaluations, tables and figures.
#   snakemake --cores 4 --resources gpu=1                          the paper (configs/config.yaml)
#   snakemake --cores 4 --configfile my_changes.yaml               the paper with some keys changed
#   snakemake --cores 2 --configfile configs/demo.yaml --replace-workflow-config
#                                                                  the offline demo (a whole config)
#   snakemake --report report.html                                 one HTML report afterwards
import os

from snakemake.utils import min_version

min_version("9.0")  # --replace-workflow-config


# The paper; a --configfile is merged over it key by key, unless --replace-workflow-config.
configfile: os.path.join(workflow.basedir, "configs", "config.yaml")


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
        run_outputs(),
