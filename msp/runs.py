"""From the workflow config (configs/config.yaml) to the list of runs and their run configs.

The workflow config describes the paper as a grid: datasets x models x seeds, with
per-dataset hyper-parameters (docs/method.md, 'Training') and per-model defaults that a dataset may
override. This module expands that grid. `run_config` returns the dict that
`msp train --config RUN.yaml` reads (docs/interfaces.md, "Run config"); `check_config` does the
checks a JSON schema cannot express (cross references, iteration counts, model fields).
Everything here is pure Python on plain dicts so that Snakemake can call it while it parses
the workflow, before any job runs.
"""

import contextlib
import json
import warnings
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


def reconst_warmup(config: dict, dataset: str, model: str) -> int:
    """Steps at the start of training that also reconstruct the conditioning frames (the
    authors' reconst_iter switch); a dataset's model override wins; 0 (the paper) if unset."""
    override = config["datasets"][dataset]["models"].get(model) or {}
    return int(override.get("reconst_warmup", config["datasets"][dataset].get("reconst_warmup", 0)))


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
    iterations = int(settings.get("iterations", dcfg["iterations"]))  # a dataset's model override wins
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
            "lr": float(settings.get("lr", train["lr"])),  # a dataset's model override wins
            "lr_decay_iter": int(settings.get("lr_decay_iter", dcfg["lr_decay_iter"])),
            # reconst: the whole run; else the first reconst_warmup steps (docs/method.md, 'Training')
            "reconst_iter": iterations if settings["reconst"] else reconst_warmup(config, dataset, model),
            "seed": int(seed),
            "checkpoint_every": int(min(train["checkpoint_every"], iterations)),
            "log_every": int(train["log_every"]),
            "device": train["device"],
            **train.get("speed", {}),
        },
    }


def run_config_yaml(config: dict, dataset: str, model: str, seed: int) -> str:
    """RUN/run.yaml: the run's identity only (msp.config.EXECUTION_KEYS are left out), so
    that only a change of the experiment makes Snakemake rewrite it and retrain."""
    from msp.config import split_run_config

    identity, _ = split_run_config(run_config(config, dataset, model, int(seed)))
    return yaml.safe_dump(identity, sort_keys=False)


def changed_finished_runs(config: dict) -> list[str]:
    """Finished runs (RUN/model.pt exists) whose run.yaml differs from the experiment the
    config now asks for, one line each naming the keys. Retraining them would replace a
    finished model (Snakemake deletes outputs before it reruns a job, protected() or not
    when it runs as root); the workflow stops before any job instead."""
    from pathlib import Path

    from msp.config import split_run_config

    lines = []
    for run in runs(config):
        path = Path(run.dir) / "run.yaml"
        if not (Path(run.dir) / "model.pt").exists() or not path.is_file():
            continue
        try:
            old = split_run_config(yaml.safe_load(path.read_text()) or {})[0]
        except (yaml.YAMLError, AttributeError, TypeError):
            continue  # unreadable: Snakemake rewrites it, and msp train checks its checkpoints
        new = split_run_config(run_config(config, run.dataset, run.model, run.seed))[0]
        diff = [f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {new[section].get(key)!r}"
                for section in new for key in sorted(set(old.get(section, {})) | set(new[section]))
                if old.get(section, {}).get(key) != new[section].get(key)]
        if diff:
            lines.append(f"{run.dir} ({'; '.join(diff)})")
    return lines


def execution_flags(config: dict) -> str:
    """`--set section.key=value ...` of msp train: the execution details of every run
    (the same for all runs of a workflow config), quoted for the shell."""
    import shlex

    from msp.config import split_run_config

    first = runs(config)[0]
    _, execution = split_run_config(run_config(config, first.dataset, first.model, first.seed))
    execution["train.checkpoint_every"] = int(config["train"]["checkpoint_every"])
    return " ".join(f"--set {shlex.quote(f'{name}={json.dumps(value)}')}" for name, value in execution.items())


def check_config(config: dict, dry_build: bool = True) -> None:
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
            override = dcfg["models"][model] or {}
            iters, warmup = override.get("iterations", dcfg["iterations"]), reconst_warmup(config, dataset, model)
            if warmup > iters:
                raise ValueError(f"{where}.models.{model}': reconst_warmup = {warmup} exceeds iterations = {iters}: "
                                 "lower reconst_warmup (0 = the paper: no reconstruction phase)")
            if "iterations" in override or "lr_decay_iter" in override:
                decay = override.get("lr_decay_iter", dcfg["lr_decay_iter"])
                if decay > iters:
                    raise ValueError(f"{where}.models.{model}': lr_decay_iter = {decay} exceeds iterations = {iters}: "
                                     "give both, lr_decay_iter <= iterations")
        if config["data"]["source"] not in registry.dataset(dataset).sources:
            raise ValueError(f"config key 'data.source' is {config['data']['source']!r} but dataset {dataset} comes "
                             f"only from {list(registry.dataset(dataset).sources)}: change data.source or drop the dataset")
    check_model_fields(config, dry_build)


def check_model_fields(config: dict, dry_build: bool = True) -> None:
    """Validate each distinct run config with the core's own checks (msp.config) so that a
    misspelled network or model option stops the workflow at parse time, not in a job; then
    (dry_build) what a job would reject: see check_runnable."""
    from msp.config import normalize_run_config  # imports torch: only when the workflow starts

    check_finite_numbers(config)
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
            cfg = normalize_run_config(run_config(config, run.dataset, run.model, run.seed))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"dataset {run.dataset!r}, model {run.model!r}: {err} (set in 'datasets.{run.dataset}.network', "
                f"'models.{run.model}.options' or 'datasets.{run.dataset}.models.{run.model}.options')"
            ) from None
        if dry_build:
            try:
                check_runnable(cfg, evaluations(config, run.dataset, run.model))
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"dataset {run.dataset!r}, model {run.model!r}: {err} (set in 'models.{run.model}', "
                    f"'datasets.{run.dataset}.network' or 'datasets.{run.dataset}.models.{run.model}')"
                ) from None


# Evaluation -> the model capability it needs (msp.seqae.SeqAE flags; msp.evaluate).
EVALUATION_NEEDS = {"prediction": "has_decoder", "samples": "has_decoder",
                    "equivariance": "has_transition", "sbd": "has_transition"}


def check_runnable(cfg: dict, evaluations_wanted) -> None:
    """What a training or evaluation job would reject, found before any job runs: the
    sequence length the dataset can make, a predictive model with nothing to predict, the
    evaluations the model cannot do, and a model that cannot be built or run at these
    widths on this dataset's images (one training step's loss followed with fake tensors).
    Raises ValueError naming the problem."""
    import torch

    from msp.models import build_model

    d, m, t = cfg["dataset"], cfg["model"], cfg["train"]
    T = m["T_cond"] + m["T_pred"]
    spec = registry.dataset(d["name"])
    max_T = spec.max_T or d.get("options", {}).get("max_T")
    if max_T is not None and T > max_T:
        raise ValueError(f"T_cond + T_pred = {T} frames, but {d['name']} sequences have at most {max_T}")
    if m.get("predictive", True) and m["T_pred"] < 1 and m["name"] not in ("simclr", "cpc"):
        raise ValueError(f"T_pred = {m['T_pred']}: model {m['name']} learns by predicting frames and needs "
                         "T_pred >= 1 (only lstsq_rec trains without predicted frames)")
    shape = tuple(spec.image_shape)
    try:  # fake tensors: shapes and dtypes are followed, nothing is computed or allocated
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # a torch without it: the capability checks still run
        FakeTensorMode = contextlib.nullcontext
    try:
        with FakeTensorMode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "zero-element tensors": reported below
            model = build_model(m, shape)
            for evaluation in evaluations_wanted:
                need = EVALUATION_NEEDS.get(evaluation)
                if need and not getattr(model, need, False):
                    raise ValueError(f"evaluation {evaluation!r} needs a model with "
                                     f"{'a decoder' if need == 'has_decoder' else 'a transition M'}; "
                                     f"{m['name']} has none: remove it from its 'evaluations'")
            if any(p.numel() == 0 for p in model.parameters()):
                raise ValueError("a layer of width 0: the widths (k, dim_m, dim_a, ...) are too small")
            if FakeTensorMode is not contextlib.nullcontext:
                with torch.no_grad():
                    model.loss(torch.empty(2, T, *shape), reconst=t["reconst_iter"] > 0)
    except (ValueError, TypeError):
        raise
    except Exception as err:  # a shape mismatch, a zero width, ...: what the job would hit
        raise ValueError(f"the model cannot run on {d['name']} images {shape} with these settings "
                         f"({type(err).__name__}: {err})") from None


def check_finite_numbers(config: dict, path: str = "") -> None:
    """NaN or infinity anywhere in the workflow config (YAML's .nan / .inf pass the schema's
    minimum checks, since NaN compares False with everything)."""
    import math

    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"config key '{where}' is {value}; it must be a finite number")
        check_finite_numbers(value, where)


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
        elif err.validator == "pattern":
            lines.append(f"{key}: {err.instance!r} is not allowed here: {err.schema.get('description', err.message)}")
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
