"""From the workflow config (configs/config.yaml) to the list of runs and their run configs.

The workflow config describes the paper as a grid: datasets x models x seeds, with
per-dataset hyper-parameters (docs/method.md, 'Training') and per-model defaults that a dataset may
override. This module expands that grid. `run_config` returns the dict that
`msp train --config RUN.yaml` reads (docs/interfaces.md, "Run config"); `check_config` does the
checks a JSON schema cannot express (cross references, iteration counts, model fields).
Everything here is pure Python on plain dicts so that Snakemake can call it while it parses
the workflow, before any job runs.
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

from msp import registry

EVALUATIONS = ("prediction", "equivariance", "sbd", "samples")
# The paper's workflow config shipped inside the package (a copy of configs/config.yaml,
# tests/test_packaging.py checks they are equal), so an installed `msp` needs no checkout.
PAPER_CONFIG = Path(__file__).with_name("paper_config.yaml")
# Trivial predictors (msp/trivial_baselines.py), evaluated once per dataset (no training, no
# seed) next to the models, for these evaluations; names and display labels.
BASELINES = ("baseline_copy_last", "baseline_mean_frame")
BASELINE_LABELS = {"baseline_copy_last": "copy last frame", "baseline_mean_frame": "mean training frame"}
BASELINE_EVALUATIONS = ("prediction", "equivariance")


def is_baseline(model) -> bool:
    return str(model) in BASELINES


@dataclass(frozen=True)
class Run:
    dataset: str
    model: str
    seed: int

    results: str = "results"

    @property
    def dir(self) -> str:
        """The training output directory DIR of docs/interfaces.md."""
        return run_dir(self.results, self.dataset, self.model, self.seed)


def run_dir(results, dataset, model, seed) -> str:
    return f"{results}/{dataset}/{model}/seed{seed}"


def model_settings(config: dict, dataset: str, model: str) -> dict:
    """The model's workflow settings on one dataset: the top-level `models` entry updated by
    the dataset's override (its `options` merged key by key)."""
    base = dict(config["models"][model])
    override = config["datasets"][dataset]["models"].get(model) or {}
    options = {**base.get("options", {}), **override.get("options", {})}
    return {**base, **override, "options": options}


def runs(config: dict) -> list[Run]:
    """Every training run, in config order: dataset x its models x seeds."""
    return [
        Run(dataset, model, int(seed), config["results"])
        for dataset, dcfg in config["datasets"].items()
        for model in dcfg["models"]
        for seed in config["seeds"]
    ]


def evaluations(config: dict, dataset: str, model: str) -> list[str]:
    return list(model_settings(config, dataset, model)["evaluations"])


def evaluated_runs(config: dict, kind: str, dataset: str | None = None) -> list[Run]:
    """Runs that get evaluation `kind`. Generated-sequence pictures ("samples") come from the
    first seed only: one picture per dataset x model."""
    first_seed = int(config["seeds"][0])
    return [
        run
        for run in runs(config)
        if (dataset is None or run.dataset == dataset)
        and kind in evaluations(config, run.dataset, run.model)
        and (kind != "samples" or run.seed == first_seed)
    ]


def baseline_dir(results, dataset, baseline) -> str:
    """Output folder of a trivial baseline: RESULTS/DATASET/BASELINE (no seed level)."""
    return f"{results}/{dataset}/{baseline}"


def baselines_for(config: dict, kind: str, dataset: str) -> list[str]:
    """The trivial baselines evaluated with `kind` on `dataset`: both, whenever a model of the
    dataset gets that prediction or equivariance evaluation."""
    if kind not in BASELINE_EVALUATIONS or not evaluated_runs(config, kind, dataset):
        return []
    return list(BASELINES)


def sbd_model(config: dict, dataset: str) -> str | None:
    """The model whose SBD maps make the dataset's sbd/disentangle figures (first listed)."""
    models = [run.model for run in evaluated_runs(config, "sbd", dataset)]
    return models[0] if models else None


def run_config(config: dict, dataset: str, model: str, seed: int) -> dict:
    """The run config of docs/interfaces.md for one (dataset, model, seed)."""
    dcfg = config["datasets"][dataset]
    settings = model_settings(config, dataset, model)
    train = config["train"]
    iterations = int(dcfg["iterations"])
    return {
        "dataset": {
            "name": dataset,
            "root": config["data"]["root"],
            "source": config["data"]["source"],
            "options": dict(dcfg.get("options", {})),
        },
        "model": {
            "name": model,
            "T_cond": int(settings["T_cond"]),
            "T_pred": int(settings["T_pred"]),
            **dcfg.get("network", {}),
            **settings["options"],
        },
        "train": {
            "iterations": iterations,
            "batch_size": int(settings.get("batch_size", dcfg.get("batch_size", train["batch_size"]))),
            "lr": float(train["lr"]),
            "lr_decay_iter": int(dcfg["lr_decay_iter"]),
            # "always" reconstructs the conditioning frames for the whole run (docs/method.md, 'Training')
            "reconst_iter": iterations if settings["reconst"] else 0,
            "seed": int(seed),
            "checkpoint_every": int(min(train["checkpoint_every"], iterations)),
            "log_every": int(train["log_every"]),
            "device": train["device"],
            **train.get("speed", {}),
        },
    }


def run_config_yaml(config: dict, dataset: str, model: str, seed: int) -> str:
    return yaml.safe_dump(run_config(config, dataset, model, int(seed)), sort_keys=False)


def check_config(config: dict) -> None:
    """Checks beyond the JSON schema. Raises ValueError naming the key and the fix."""
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise ValueError(f"config key 'seeds': seeds must be distinct, got {config['seeds']}")
    for dataset, dcfg in config["datasets"].items():
        where = f"config key 'datasets.{dataset}"
        if not dcfg["models"]:
            raise ValueError(f"{where}.models' is empty: list at least one model or remove the dataset")
        if dcfg["lr_decay_iter"] > dcfg["iterations"]:
            raise ValueError(
                f"{where}.lr_decay_iter' = {dcfg['lr_decay_iter']} exceeds iterations = {dcfg['iterations']}: "
                "lower it (the paper decays at 80% of the run)"
            )
        for model in dcfg["models"]:
            if model not in config["models"]:
                raise ValueError(
                    f"{where}.models.{model}' has no defaults: add a 'models.{model}' entry "
                    f"(known: {sorted(config['models'])})"
                )
        if config["data"]["source"] not in registry.dataset(dataset).sources:
            raise ValueError(f"config key 'data.source' is {config['data']['source']!r} but dataset {dataset} comes "
                             f"only from {list(registry.dataset(dataset).sources)}: change data.source or drop the dataset")
    check_model_fields(config)


def check_model_fields(config: dict) -> None:
    """Validate each distinct run config with the core's own checks (msp.config) so that a
    misspelled network or model option stops the workflow at parse time, not in a job."""
    from msp.config import normalize_run_config  # imports torch: only when the workflow starts

    seen = set()
    for run in runs(config):
        if (run.dataset, run.model) in seen:
            continue
        seen.add((run.dataset, run.model))
        applicable = registry.model(run.model).evaluations
        wrong = [kind for kind in evaluations(config, run.dataset, run.model) if kind not in applicable]
        if wrong:
            raise ValueError(f"model {run.model!r} has no transition matrix, so {wrong} do not apply: remove them from "
                             f"'models.{run.model}.evaluations' (or the dataset's override); it allows {list(applicable)}")
        try:
            normalize_run_config(run_config(config, run.dataset, run.model, run.seed))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"dataset {run.dataset!r}, model {run.model!r}: {err} (set in 'datasets.{run.dataset}.network', "
                f"'models.{run.model}.options' or 'datasets.{run.dataset}.models.{run.model}.options')"
            ) from None


def describe_schema_errors(config: dict, schema: dict) -> str:
    """All schema violations of `config`, one line each, as 'key: problem (fix)'.

    jsonschema's own message prints the whole sub-schema; users need the key path and what
    is allowed there.
    """
    from jsonschema import Draft202012Validator

    lines = []
    for err in sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(map(str, err.absolute_path)) or "(top level)"
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            lines.append(f"{key}: unknown key(s) {extra}; allowed keys here: {allowed}")
        elif err.validator == "enum":
            lines.append(f"{key}: {err.instance!r} is not one of {err.validator_value}")
        elif err.validator == "type":
            hint = ""
            if isinstance(err.instance, str) and _parses_as(err.instance, err.validator_value):
                hint = (" (snakemake --config passes nested values as text: put the change in a YAML file "
                        "and run with --configfile configs/config.yaml YOUR.yaml)")
            lines.append(f"{key}: expected {err.validator_value}, got {err.instance!r}{hint}")
        elif err.validator == "required":
            lines.append(f"{key}: {err.message} (add it; see configs/config.yaml for an example)")
        else:
            lines.append(f"{key}: {err.message}")
    return "\n".join(f"  - {line}" for line in lines)


def training_horizon(config: dict, dataset: str, default: int = 5) -> int:
    """Frames predicted in training on `dataset` (largest T_pred of its models): longer
    horizons are extrapolation. `default` (the paper's mnist_accl value) when absent."""
    if dataset not in config["datasets"]:
        return default
    return max(int(model_settings(config, dataset, m)["T_pred"]) for m in config["datasets"][dataset]["models"])


def _parses_as(text: str, types) -> bool:
    """Would YAML read `text` as one of the JSON-schema `types`?"""
    value = yaml.safe_load(text)
    python = {"integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}
    types = [types] if isinstance(types, str) else types
    return any(isinstance(value, python[t]) for t in types if t in python)


def load_workflow_config(path=None) -> dict:
    """A workflow config YAML -> dict; None: the paper's (PAPER_CONFIG). A path that does
    not exist is an error, never a silent fallback."""
    path = Path(path) if path is not None else PAPER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"workflow config {path} does not exist: pass an existing file "
                                "(e.g. configs/config.yaml) or leave the option out for the paper's")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("datasets"), dict):
        raise ValueError(f"workflow config {path} has no 'datasets' mapping: is it a workflow config "
                         "(like configs/config.yaml), not a run config?")
    return config
