# Download and prepare each dataset family once (CONTRACTS.md, "Data API"). The marker
# files (manifest.json, prepared.json) are written last by `msp data`, so their presence
# means the step completed.


rule download:
    output:
        f"{DATA_ROOT}/raw/{SOURCE}/{{family}}/manifest.json",
    log:
        "results/logs/data/{family}_download.log",
    params:
        root=DATA_ROOT,
        source=SOURCE,
    localrule: True
    retries: 3
    resources:
        gdrive=1,
    conda:
        "../envs/msp.yaml"
    shell:
        "msp data download --dataset {wildcards.family} --root {params.root:q}"
        " --source {params.source} > {log} 2>&1"


rule prepare:
    input:
        rules.download.output,
    output:
        f"{DATA_ROOT}/prepared/{SOURCE}/{{family}}/prepared.json",
    log:
        "results/logs/data/{family}_prepare.log",
    params:
        root=DATA_ROOT,
        source=SOURCE,
    localrule: True
    retries: 1
    conda:
        "../envs/msp.yaml"
    shell:
        "msp data prepare --dataset {wildcards.family} --root {params.root:q}"
        " --source {params.source} > {log} 2>&1"
