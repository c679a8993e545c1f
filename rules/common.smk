# Config validation, the list of runs and the path builders shared by every rule file.
# The grid logic lives in msp/runs.py (plain Python, unit-tested); this file only wires it in.
import json
import os
import re
import shlex

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from msp import registry as msp_registry
from msp import runs as msp_runs

# Jobs run this workflow's own package (`python -m msp`), also inside the conda env of
# `--sdm conda`, which holds only the dependencies (envs/msp.yaml): the workflow folder goes
# first on the PYTHONPATH that every job inherits from this process (re-parsed on cluster
# nodes). Set here, not in params, so that moving the checkout does not re-trigger jobs.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [
            workflow.basedir,
            *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
        ]
    )
)

# Jobs on a cluster parse this workflow again. Snakemake 9 forwards a `--configfile` to them
# but not `--replace-workflow-config`, so a demo job would see the demo merged into the paper
# config. The main process hands its final config to its jobs through the environment they
# inherit (like PYTHONPATH above), and a job adopts it whole.
_CONFIG_ENV = "MSP_WORKFLOW_CONFIG"
if workflow.remote_exec and _CONFIG_ENV in os.environ:
    config.clear()
    config.update(json.loads(os.environ[_CONFIG_ENV]))
else:
    os.environ[_CONFIG_ENV] = json.dumps(config)

# A typo or a wrong type stops the run here, before any job, with the key named.
try:
    validate(config, "../configs/schema.yaml")
except WorkflowError:
    with open(workflow.source_path("../configs/schema.yaml")) as schema_file:
        schema = yaml.safe_load(schema_file)
    raise WorkflowError(
        "invalid workflow config (see configs/config.yaml for a commented example):\n"
        + msp_runs.describe_schema_errors(config, schema)
    ) from None
try:
    # the dry build of each model (msp.runs.check_runnable) once, not again in every cluster job
    msp_runs.check_config(config, dry_build=not workflow.remote_exec)
except ValueError as err:
    raise WorkflowError(f"invalid workflow config: {err}") from None

# A finished model is never replaced by a changed experiment (rules/train.smk): say so
# before any job runs, whoever runs Snakemake (protected() does not stop root).
_changed = msp_runs.changed_finished_runs(config)
if _changed:
    raise WorkflowError(
        "these finished runs were trained with another experiment than the config now asks for:\n  "
        + "\n  ".join(_changed)
        + f"\nA new experiment belongs in a new 'results' folder (now {config['results']!r}); to retrain "
        "in place instead, delete those run folders (model.pt, checkpoints/) first."
    )

# Counted resources, defaulted here rather than in profiles/default (a workflow profile's
# `resources` would override a cluster profile's): one Google Drive download at a time, and
# when jobs run on this machine, one GPU. `--resources gpu=N gdrive=M` changes them.
if "gdrive" not in workflow.global_resources:
    workflow.register_resource("gdrive", 1)
if workflow.local_exec and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", 1)

RESULTS = config["results"]
DATA_ROOT = config["data"]["root"]
SOURCE = config["data"]["source"]
DATASETS = list(config["datasets"])
RUNS = msp_runs.runs(config)
FAMILIES = sorted({msp_registry.dataset(d).family for d in DATASETS})
TRAIN_RES = config["train"]["resources"]
# Execution details, used in shell commands as globals rather than params so that changing
# them never reruns a job (rules/train.smk, "Experiment vs execution").
TRAIN_EXECUTION = msp_runs.execution_flags(config)
DATA_ROOT_ARG = shlex.quote(DATA_ROOT)
EVAL_RES = config["evaluation"]["resources"]


def one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=one_of(config["models"]),
    family=one_of(FAMILIES),
    seed=r"\d+",
    kind="prediction|equivariance|sbd",
    baseline=one_of(msp_runs.BASELINES),


# ---- path builders -------------------------------------------------------------------
RUN = f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}"


def prepared_marker(dataset):
    family = msp_registry.dataset(dataset).family
    return f"{DATA_ROOT}/prepared/{SOURCE}/{family}/prepared.json"


def data_used(dataset):
    """RESULTS/data_used/SOURCE/FAMILY.json, a copy of the prepared.json the runs use. Jobs
    depend on it rather than on DATA_ROOT/..., so that moving the data (a new data.root)
    changes no job's set of input files and retrains nothing (rules/train.smk)."""
    family = msp_registry.dataset(dataset).family
    return f"{RESULTS}/data_used/{SOURCE}/{family}.json"


def data_root_of(wildcards, output):
    """DATA_ROOT, read back from ROOT/{raw,prepared}/SOURCE/FAMILY/marker.json."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(output[0]))))


def parent_dir(wildcards, output):
    return os.path.dirname(output[0])


def eval_file(run, kind):
    """The output of evaluation `kind` for a run (sbd: the json inside its folder)."""
    name = {
        "prediction": "prediction.csv",
        "equivariance": "equivariance.csv",
        "sbd": "sbd/sbd.json",
        "samples": "samples.npz",
    }[kind]
    return f"{run.dir}/eval/{name}"


def run_outputs():
    """Every run's model.pt and evaluation files. Named as targets of `all` so that one that
    was deleted is rebuilt together with everything made from it: Snakemake otherwise treats
    a deleted intermediate as not needed and keeps the tables built from it."""
    files = [f"{run.dir}/model.pt" for run in RUNS]
    return files + [
        f
        for kind in ("prediction", "equivariance", "sbd", "samples")
        for f in eval_files(kind)
    ]


def eval_files(kind, dataset=None):
    return [
        eval_file(run, kind) for run in msp_runs.evaluated_runs(config, kind, dataset)
    ]


def baseline_files(kind, dataset):
    """The trivial baselines' evaluation files of one dataset (once per dataset, no seed)."""
    return [
        f"{msp_runs.baseline_dir(RESULTS, dataset, b)}/eval/{kind}.csv"
        for b in msp_runs.baselines_for(config, kind, dataset)
    ]


def datasets_with(kind):
    return [d for d in DATASETS if msp_runs.evaluated_runs(config, kind, d)]


def sbd_run_dir(dataset):
    """Folder of the run whose SBD maps make the dataset's sbd/disentangle figures."""
    model = msp_runs.sbd_model(config, dataset)
    return msp_runs.run_dir(RESULTS, dataset, model, config["seeds"][0])


def figure(name):
    return [f"{RESULTS}/figures/{name}.png", f"{RESULTS}/figures/{name}.pdf"]


def all_figures():
    """Every figure of the authors' set that the configured grid can make, and the training
    curves of each dataset."""
    names = [f"comp_error_{d}" for d in datasets_with("prediction")]
    names += [f"equiv_error_{d}" for d in datasets_with("equivariance")]
    names += [f"training_curves_{d}" for d in DATASETS]
    for d in datasets_with("sbd"):
        names += [f"sbd_{d}", f"sbd_{d}_components", f"disentangle_{d}"]
    names += [
        f"gen_images/{r.dataset}_{r.model}"
        for r in msp_runs.evaluated_runs(config, "samples")
    ]
    return [path for name in names for path in figure(name)]


def table_files():
    kinds = [k for k in ("prediction", "equivariance", "sbd") if datasets_with(k)]
    kinds += [f"{k}_horizons" for k in ("prediction", "equivariance") if k in kinds]
    files = [
        f"{RESULTS}/tables/{k}.{ext}" for k in kinds for ext in ("csv", "md", "tex")
    ]
    if (
        "prediction" in kinds
    ):  # which models beat the trivial baselines (msp.tables.baseline_notes)
        files.append(f"{RESULTS}/tables/baselines.md")
    return files


def model_labels():
    """NAME=LABEL words of the report CLI's --labels (the rules quote them with :q)."""
    return [f"{name}={m['label']}" for name, m in config["models"].items()]


def dataset_options_arg(wildcards):
    """The dataset's generator options as one JSON word (the baselines' --dataset-options)."""
    return json.dumps(config["datasets"][wildcards.dataset].get("options") or {})


def eval_flags(action):
    """Command-line words of `msp evaluate ACTION` from the `evaluation` config section (a
    list: the rules quote each word with :q)."""
    cfg = config["evaluation"]
    flags = ["--device", cfg["device"]]
    if cfg["seed"] is not None:
        flags += ["--seed", str(cfg["seed"])]
    # batch_size / n_batches size the prediction and equivariance sets (samples: one batch);
    # SBD keeps its own sample (its defaults, or extra_args.sbd)
    if cfg["batch_size"] is not None and action != "sbd":
        flags += ["--batch-size", str(cfg["batch_size"])]
    if cfg["n_batches"] is not None and action in ("prediction", "equivariance"):
        flags += ["--n-batches", str(cfg["n_batches"])]
    return flags + shlex.split(cfg["extra_args"][action])


def sbd_flags(wildcards):
    """Flags of `msp evaluate sbd` for one run: eval_flags plus the method and any hand-picked
    blocks of `evaluation.sbd` (keyed DATASET/MODEL/seedN)."""
    cfg = config["evaluation"].get("sbd") or {}
    flags = eval_flags("sbd") + ["--method", cfg.get("method", "algebraic")]
    blocks = (cfg.get("blocks") or {}).get(
        f"{wildcards.dataset}/{wildcards.model}/seed{wildcards.seed}"
    )
    if blocks is not None:
        flags += ["--blocks", json.dumps(blocks, separators=(",", ":"))]
    return flags


def train_runtime(wildcards):
    return config["datasets"][wildcards.dataset].get("runtime", TRAIN_RES["runtime"])
