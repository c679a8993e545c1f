"""Run configuration: one YAML file per training run (dataset, model, train sections).

The model section is validated by the model's own dataclass (msp.models.model_config);
this module validates the rest and fills in defaults, so a checkpoint stores the full,
explicit configuration it was trained with.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from msp import registry
from msp.data.sources import SOURCES
from msp.fields import dataclass_from_dict
from msp.models import model_config



@dataclass
class DatasetConfig:
    name: str = "mnist"
    root: str = "data"
    source: str = "embedded"
    options: dict = field(default_factory=dict)  # extra keyword arguments of the sequence generator

    def __post_init__(self):
        if self.name not in registry.DATASETS:
            raise ValueError(f"unknown dataset.name {self.name!r}: choose one of {registry.dataset_names()}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown dataset.source {self.source!r}: choose one of {list(SOURCES)}")


@dataclass
class TrainConfig:
    iterations: int = 50000
    batch_size: int = 32
    lr: float = 3e-4
    lr_decay_iter: int = 40000  # lr / 3 from this iteration on
    reconst_iter: int = 0  # also reconstruct the conditioning frames below this iteration
    seed: int = 1
    checkpoint_every: int = 10000
    keep_checkpoints: int = 2  # periodic checkpoints kept for resuming (the newest ones)
    log_every: int = 100  # metrics are read from the device only every log_every steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    faithful: bool = False  # the authors' numerics: float32, unfused layers, no TF32 / compile
    amp: str = "auto"  # auto (bf16 on CUDA unless faithful) | bf16 | off
    channels_last: str = "auto"  # auto (on CUDA unless faithful) | on | off
    compile: bool = False  # torch.compile encoder and decoder (falls back when unavailable)
    deterministic: bool = False  # deterministic GPU kernels (slower); CPU runs are deterministic anyway

    def __post_init__(self):
        for name in ("iterations", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name, allowed in (("amp", ("auto", "bf16", "off")), ("channels_last", ("auto", "on", "off"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # NaN compares False with everything
            raise ValueError(f"train.lr must be a finite number > 0, got {self.lr}")


# A run's identity is what changes its results; execution details say where and how it runs.
# Only the identity goes into RUN/run.yaml and into Snakemake's params (rules/train.smk), so
# moving the data, changing the device or the logging cadence never retrains a finished run;
# the execution details reach `msp train` as --set flags and may change on resume.
EXECUTION_KEYS = {
    "dataset": ("root",),
    "train": ("checkpoint_every", "keep_checkpoints", "log_every", "device", "faithful", "amp",
              "channels_last", "compile", "deterministic"),
}


def split_run_config(cfg: dict) -> tuple[dict, dict]:
    """A run config -> (identity: the same config without the execution keys,
    execution: {"section.key": value} of those present)."""
    identity = {section: dict(values or {}) for section, values in cfg.items()}
    execution = {}
    for section, keys in EXECUTION_KEYS.items():
        for key in keys:
            if key in identity.get(section, {}):
                execution[f"{section}.{key}"] = identity[section].pop(key)
    return identity, execution


def apply_execution(cfg: dict, settings: list[str]) -> dict:
    """Apply `section.key=value` execution settings (value read as YAML) to a run config;
    anything that would change the experiment is refused."""
    allowed = [f"{s}.{k}" for s, keys in EXECUTION_KEYS.items() for k in keys]
    for setting in settings:
        name, sep, text = setting.partition("=")
        if not sep or name not in allowed:
            raise ValueError(f"--set {setting!r}: only execution details may be set this way "
                             f"(NAME=VALUE with NAME in {allowed}); the experiment itself is the run config")
        section, key = name.split(".")
        cfg.setdefault(section, {})[key] = yaml.safe_load(text)
    return cfg


def normalize_run_config(cfg: dict) -> dict:
    """Validate a run config dict and return it with every default filled in."""
    if not isinstance(cfg, dict):
        raise ValueError(f"a run config must be a mapping with sections dataset/model/train, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - {"dataset", "model", "train"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}: a run config has only 'dataset', 'model' and 'train'")
    if "model" not in cfg or "name" not in (cfg["model"] or {}):
        raise ValueError("the run config needs model.name (e.g. lstsq)")
    dataset = dataclass_from_dict(DatasetConfig, "dataset", cfg.get("dataset"))
    train = dataclass_from_dict(TrainConfig, "train", cfg.get("train"))
    model_in = dict(cfg["model"])
    image_shape = model_in.get("image_shape")
    model = model_config(model_in)
    model_out = {"name": model_in["name"], **dataclasses.asdict(model)}
    if image_shape is not None:
        model_out["image_shape"] = list(image_shape)
    return {"dataset": dataclasses.asdict(dataset), "model": model_out, "train": dataclasses.asdict(train)}


def load_run_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run config {path} does not exist")
    with open(path) as f:
        try:
            cfg = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {err}") from None
    try:
        return normalize_run_config(cfg)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
