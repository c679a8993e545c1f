# Download and prepare each dataset family once (docs/interfaces.md, "Data API"). The marker
# files (manifest.json, prepared.json) are written last by `msp data`, so their presence
# means the step completed.


rule download:
    output:
        f"{DATA_ROOT}/raw/{SOURCE}/{{family}}/manifest.json",
    log:
        f"{RESULTS}/logs/data/{{family}}_download.log",
    retries: 3
    localrule: True
    conda:
        "../envs/msp.yaml"
    resources:
        gdrive=1,
    params:
        root=data_root_of,
        source=SOURCE,
    shell:
        "python -m msp data download --dataset {wildcards.family} --root {params.root:q}"
        " --source {params.source} > {log} 2>&1"


rule prepare:
    input:
        rules.download.output,
    output:
        f"{DATA_ROOT}/prepared/{SOURCE}/{{family}}/prepared.json",
    log:
        f"{RESULTS}/logs/data/{{family}}_prepare.log",
    retries: 1
    localrule: True
    conda:
        "../envs/msp.yaml"
    params:
        root=data_root_of,
        source=SOURCE,
    shell:
        "python -m msp data prepare --dataset {wildcards.family} --root {params.root:q}"
        " --source {params.source} > {log} 2>&1"


# What the runs depend on (rules/common.smk, data_used): a copy of prepared.json under RESULTS,
# so that a new data.root (the data moved) changes no training or evaluation job's inputs.
rule data_used:
    input:
        ancient(rules.prepare.output),
    output:
        f"{RESULTS}/data_used/{SOURCE}/{{family}}.json",
    log:
        f"{RESULTS}/logs/data/{{family}}_data_used.log",
    localrule: True
    conda:
        "../envs/msp.yaml"
    shell:
        "cp {input:q} {output:q} 2> {log:q}"
