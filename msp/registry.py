"""The registries: one `DatasetSpec` per dataset and one `ModelSpec` per model.

Every other list of datasets or models in the package (CLI choices, run-config checks, data
families, evaluation protocols, the authors' names, claim groups, figure colours, the
workflow schema's enums) is derived from these two tables. Adding a dataset or a model is one
`register_dataset` / `register_model` call plus its code (README, "Adding a model or a
dataset"; tests/test_registry.py does both with toys).

This module is pure Python (no torch): Snakemake imports it while it parses the workflow.
Model classes and sequence builders are named as "module:attribute" strings and imported on
first use; a registration from user code may pass the object itself.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


def _resolve(target):
    """'package.module:attribute' -> the attribute; anything else is returned as is."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


# ----------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class EvalProtocol:
    """Per-dataset evaluation settings (docs/evaluation.md, 'Protocols per dataset')."""
    T_cond: int            # conditioning frames at evaluation, whatever the model trained with
    prediction_T: int      # sequence length of the prediction (extrapolation) set
    equivariance_T: int    # sequence length of the equivariance set
    sbd_T: int             # sequence length of the sequences whose M* are block-diagonalized
    eval_size: int         # sequences in the authors' evaluation loader (one epoch)
    eval_split: str        # split of the evaluation sets (3dshapes: the authors use train=True)
    mnist_family: bool     # MNIST variants take max_T and velocity-range options


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: what the data layer, training, evaluation and the workflow need to know.

    sequences(spec, *, root, source, split, T, device, seed, **options) -> a sequence
    generator (docs/interfaces.md, "Data API"); options are `options` updated by the caller's.
    """
    name: str
    family: str                          # folder of its files: ROOT/{raw,prepared}/SOURCE/FAMILY
    image_shape: tuple[int, int, int]    # (C, H, W)
    protocol: EvalProtocol
    sequences: str | Callable[..., Any]  # the builder of its sequence generator
    options: dict = field(default_factory=dict)  # training defaults of the generator options
    max_T: int | None = None             # longest sequence the generator supports (None: any)
    sources: tuple[str, ...] = ("drive", "official", "embedded")  # where its files may come from
    prepared: bool = True                # reads ROOT/prepared/SOURCE/FAMILY (msp data download/prepare)
    authors_data: str | None = None      # stem of the authors' dataset module (msp import-authors)
    description: str = ""

    def build_sequences(self, **kwargs):
        return _resolve(self.sequences)(self, **kwargs)


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """One model. Its behaviour (and so its capabilities) lives on its class, a
    msp.seqae.SeqAE subclass with a `Config` dataclass and the flags `has_transition` (a
    matrix M: equivariance and SBD apply) and `has_decoder` (predictions are images)."""
    name: str
    model_class: str | type                # "module:Class" or the class
    group: str = "other"                   # msp | neural | ablation | latent | contrastive (claims)
    authors_class: str | None = None       # class name in the authors' code (msp import-authors)
    fits_whole_sequence: bool = False      # SBD fits M* on all frames (least squares), else T_cond
    description: str = ""

    @property
    def cls(self):
        return _resolve(self.model_class)

    @property
    def Config(self):
        return self.cls.Config

    @property
    def has_transition(self) -> bool:
        return bool(self.cls.has_transition)

    @property
    def evaluations(self) -> tuple[str, ...]:
        """The evaluations that apply: equivariance and SBD need a transition matrix."""
        both = ("prediction", "samples")
        return ("prediction", "equivariance", "sbd", "samples") if self.has_transition else both


DATASETS: dict[str, DatasetSpec] = {}
MODELS: dict[str, ModelSpec] = {}


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    if spec.name in DATASETS and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered (pass replace=True to override it)")
    DATASETS[spec.name] = spec
    return spec


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    if spec.name in MODELS and not replace:
        raise ValueError(f"model {spec.name!r} is already registered (pass replace=True to override it)")
    MODELS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset or model registered by user code (tests)."""
    DATASETS.pop(name, None)
    MODELS.pop(name, None)


def dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {list(DATASETS)}")
    return DATASETS[name]


def model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {list(MODELS)}")
    return MODELS[name]


def dataset_names() -> list[str]:
    return list(DATASETS)


def model_names() -> list[str]:
    """In registry order, which is also the order of legends and the colour of each model."""
    return list(MODELS)


def families(prepared_only: bool = False) -> list[str]:
    """Folders of the registered datasets' files (those `msp data prepare` writes, if prepared_only)."""
    return list(dict.fromkeys(spec.family for spec in DATASETS.values() if spec.prepared or not prepared_only))


def models_in_group(group: str) -> tuple[str, ...]:
    return tuple(name for name, spec in MODELS.items() if spec.group == group)


# ----------------------------------------------------------------------------- the paper's
# docs/datasets.md (generators, options), docs/evaluation.md (protocols). eval_size: MNIST test
# digit-4 images (982), all MNIST test images, or the 5000-sequence epoch the authors give
# 3dshapes / smallNORB.
_MNIST = "msp.data:mnist_sequences"
_GRID = "msp.data:factor_grid_sequences"
_MNIST_PROTOCOL = EvalProtocol(2, 20, 10, 10, 982, "test", True)
for _spec in (
    DatasetSpec("mnist", "mnist", (3, 32, 32), _MNIST_PROTOCOL, _MNIST, {"digits": [4]},
                authors_data="seq_mnist", description="Sequential MNIST, digit 4"),
    # prediction T = 10: the horizons of the authors' published figure (figs/comp_error_mnist_bg.pdf
    # has 8; the other MNIST variants' 18, mnist_accl's 15). Another length (`msp evaluate
    # prediction --T N`) is labelled "not the paper's T" in the tables; on MNIST T also sets the
    # velocities (max_T = T), so horizons of different T are not comparable.
    DatasetSpec("mnist_bg", "mnist_bg", (3, 32, 32), EvalProtocol(2, 10, 10, 10, 982, "test", True), _MNIST,
                {"digits": [4], "backgrounds": True}, sources=("drive", "embedded"),
                authors_data="seq_mnist", description="MNIST-bg, digit 4 on background images"),
    DatasetSpec("mnist_bg_full", "mnist_bg", (3, 32, 32), EvalProtocol(2, 20, 10, 10, 10000, "test", True), _MNIST,
                {"digits": None, "backgrounds": True}, sources=("drive", "embedded"),
                authors_data="seq_mnist", description="MNIST-bg, all digits"),
    DatasetSpec("mnist_accl", "mnist", (3, 32, 32), EvalProtocol(5, 20, 20, 10, 982, "test", True), _MNIST,
                {"digits": [4], "max_T": 10, "range_a": (-0.2, 0.2), "range_h": (-0.2, 0.2),
                 "accl_a": (-0.025, 0.025), "accl_h": (-0.025, 0.025),
                 "max_pos": (0.0, 0.0), "max_trans_accl": (0.0, 0.0)},
                authors_data="seq_mnist", description="Sequential MNIST with accelerations, no translation"),
    DatasetSpec("3dshapes", "3dshapes", (3, 64, 64), EvalProtocol(2, 8, 8, 8, 5000, "train", False), _GRID,
                max_T=8, authors_data="three_dim_shapes", description="3DShapes factor grid"),
    DatasetSpec("smallNORB", "smallNORB", (1, 96, 96), EvalProtocol(2, 6, 6, 6, 5000, "test", False), _GRID,
                max_T=6, authors_data="small_norb", description="smallNORB factor grid"),
):
    register_dataset(_spec)

# Registry order = legend order and colour of each model in every figure.
for _spec in (
    ModelSpec("neural_trans", "msp.baselines:NeuralTrans", "neural", "SeqAENeuralTransition",
              description="Neural transition: 1x1-conv latent predictor"),
    ModelSpec("neuralM", "msp.baselines:NeuralM", "neural", "SeqAENeuralM",
              description="Neural M*: the transition predicted by a CNN"),
    ModelSpec("lstsq_rec", "msp.models:LstsqRec", "ablation", None, fits_whole_sequence=True,
              description="reconstruction (non-predictive) ablation; the authors' SeqAELSTSQ, predictive: false"),
    ModelSpec("lstsq_multi", "msp.models:LstsqMulti", "msp", "SeqAEMultiLSTSQ", fits_whole_sequence=True,
              description="MSP with K fixed blocks"),
    ModelSpec("lstsq", "msp.models:Lstsq", "msp", "SeqAELSTSQ", fits_whole_sequence=True,
              description="MSP: least-squares transition"),
    ModelSpec("holstsq", "msp.models:HOLstsq", "msp", "SeqAEHOLSTSQ", fits_whole_sequence=True,
              description="second-order MSP"),
    ModelSpec("neuralM_latentpred", "msp.baselines:NeuralMLatentPred", "latent", "SeqAENeuralMLatentPredict",
              description="Neural M* with a latent prediction loss"),
    ModelSpec("simclr", "msp.baselines:SimCLR", "contrastive", "ResNetwProjHead", description="SimCLR"),
    ModelSpec("cpc", "msp.baselines:CPC", "contrastive", "CPC", description="CPC"),
):
    register_model(_spec)
