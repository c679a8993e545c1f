"""Import a `snapshot_model_iter_N` file of the authors' code into one of our models: the
model settings (the paper's, or the authors' run config.yml translated), the weights
(msp.authors_weights: how their keys map onto ours) and a checkpoint in our format.

CLI: `msp import-authors --snapshot FILE --model NAME --dataset NAME --out model.pt` writes a
checkpoint in our format (docs/interfaces.md), loadable by msp.checkpoint.load_checkpoint.
"""

import re
import sys
from pathlib import Path

import torch
import yaml

from msp import registry
from msp.authors_weights import AuthorsCheckpointError, fold_change_of_basis, load_authors_state_dict
from msp.config import normalize_run_config
from msp.models import build_model

# Authors' model class -> our registry name (ModelSpec.authors_class; SeqAELSTSQ with
# predictive: False is lstsq_rec).
def authors_classes() -> dict[str, str]:
    return {spec.authors_class: name for name, spec in registry.MODELS.items() if spec.authors_class}


# Authors' model arguments -> our model field (None: checked or ignored, see _model_from_authors_config).
AUTHORS_MODEL_ARGS = {
    "dim_m": "dim_m", "dim_a": "dim_a", "k": "k", "n_blocks": "n_blocks", "bottom_width": "bottom_width",
    "kernel_size": "kernel_size", "alignment": "alignment", "K": "K", "n_order": "n_order",
    "loss_reconst_coeff": "loss_reconst_coeff", "loss_pred_coeff": "loss_pred_coeff",
    "loss_latent_coeff": "loss_latent_coeff", "normalize": "normalize", "dim_mlp": "dim_mlp",
    "dim_head": "dim_head", "temp": "temperature", "T_cond": "T_cond",
    "ch_x": None, "predictive": None, "change_of_basis": None, "loss_type": None,
}



# -- run config for the imported model --
def paper_model_settings(dataset: str, model: str, workflow_config=None) -> dict:
    """The paper's model section for (dataset, model) from the workflow config (default: the
    paper's, msp.runs.PAPER_CONFIG);
    for a pair the workflow does not run, the dataset's network with the model's defaults."""
    from msp import runs

    config = runs.load_workflow_config(workflow_config)
    if dataset not in config["datasets"]:
        return {"name": model}
    if model in config["datasets"][dataset]["models"] and model in config["models"]:
        return runs.run_config(config, dataset, model, 1)["model"]
    return {"name": model, **config["datasets"][dataset].get("network", {})}


def _model_from_authors_config(cfg: dict, dataset: str) -> tuple[dict, dict]:
    """An authors' run YAML -> (our model fields, our train fields)."""
    model_sec = cfg.get("model") or {}
    cls = model_sec.get("name")
    classes = authors_classes()
    if cls not in classes:
        raise ValueError(f"--authors-config: model.name {cls!r} is not one of the authors' classes "
                         f"{sorted(classes)}")
    args = dict(model_sec.get("args") or {})
    name = classes[cls]
    if name == "lstsq" and args.get("predictive", True) is False:
        name = "lstsq_rec"
    unknown = sorted(set(args) - set(AUTHORS_MODEL_ARGS))
    if unknown:
        raise ValueError(f"--authors-config: model.args {unknown} have no counterpart in our models")
    channels = registry.dataset(dataset).image_shape[0]
    if "ch_x" in args and args["ch_x"] != channels:
        raise ValueError(f"--authors-config: ch_x = {args['ch_x']} but dataset {dataset} has "
                         f"{channels} channel(s): is --dataset right?")
    if args.get("loss_type", "cossim") != "cossim":
        raise ValueError(f"--authors-config: loss_type {args['loss_type']!r}: our contrastive models use cossim only")
    fields = {"name": name, **{AUTHORS_MODEL_ARGS[k]: v for k, v in args.items() if AUTHORS_MODEL_ARGS[k]}}
    for key in ("T_cond", "T_pred"):
        if key in cfg:
            fields[key] = cfg[key]
    data_file = str((cfg.get("train_data") or {}).get("fn", ""))  # e.g. ./datasets/seq_mnist.py
    stems = {spec.authors_data for spec in registry.DATASETS.values() if spec.authors_data}
    found = next((stem for stem in stems if stem in data_file), None)
    if found is not None and found != registry.dataset(dataset).authors_data:
        raise ValueError(f"--authors-config trains on the authors' {found} data but --dataset is {dataset}")
    loop = (cfg.get("training_loop") or {}).get("args") or {}
    train = {k: v for k, v in {
        "iterations": cfg.get("max_iteration"), "batch_size": cfg.get("batchsize"), "lr": cfg.get("lr"),
        "seed": cfg.get("seed"), "lr_decay_iter": loop.get("lr_decay_iter"), "reconst_iter": loop.get("reconst_iter"),
    }.items() if v is not None}
    return fields, train


FLAG_FIELDS = ("k", "dim_m", "dim_a", "n_blocks", "bottom_width", "T_cond", "T_pred", "hidden", "K")


def import_snapshot(snapshot, dataset: str, model: str | None = None, overrides: dict | None = None,
                    authors_config=None, root="data", source="drive", step: int | None = None,
                    workflow_config=None):
    """Read a snapshot file -> (our model with its weights, our checkpoint dict)."""
    if dataset not in registry.DATASETS:
        raise ValueError(f"unknown --dataset {dataset!r}: choose one of {registry.dataset_names()}")
    snapshot = Path(snapshot)
    if not snapshot.is_file():
        raise FileNotFoundError(f"snapshot {snapshot} does not exist")
    fields, train = {}, {}
    if authors_config is not None:
        if not Path(authors_config).is_file():
            raise FileNotFoundError(f"--authors-config {authors_config} does not exist: pass the config.yml "
                                    "of the authors' run (in its log directory), or leave the option out")
        fields, train = _model_from_authors_config(yaml.safe_load(Path(authors_config).read_text()), dataset)
        if model is not None and model != fields["name"]:
            raise ValueError(f"--model {model} disagrees with --authors-config, which trains {fields['name']}")
    name = model or fields.get("name")
    if name not in registry.MODELS:
        raise ValueError(f"unknown --model {name!r}: choose one of {registry.model_names()}")
    explicit = {**fields, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    model_cfg = {**paper_model_settings(dataset, name, workflow_config), **explicit, "name": name}
    if "n_blocks" in explicit and "bottom_width" not in explicit:
        model_cfg["bottom_width"] = None  # derive it from the image size and the new n_blocks
    image_shape = registry.dataset(dataset).image_shape
    net = build_model(model_cfg, image_shape)
    try:
        raw = torch.load(snapshot, map_location="cpu", weights_only=True)
    except Exception as err:
        raise AuthorsCheckpointError(f"cannot read snapshot {snapshot}: {err}") from None
    load_authors_state_dict(net, raw)
    if net.change_of_basis is not None:
        fold_change_of_basis(net)  # our checkpoints carry no U: fold it (identical outputs)
    if step is None:
        found = re.search(r"iter_(\d+)", snapshot.name)
        step = int(found.group(1)) if found else 0
    model_cfg["image_shape"] = list(image_shape)
    model_cfg["bottom_width"] = net.cfg.bottom_width
    cfg = normalize_run_config({
        "dataset": {"name": dataset, "root": str(root), "source": source},
        "model": model_cfg, "train": train,
    })
    checkpoint = {"model": net.state_dict(), "step": step, "config": cfg, "final": True,
                  "imported_from": {"snapshot": str(snapshot.resolve()), "authors_config": str(authors_config or "")}}
    return net.eval(), checkpoint


def add_arguments(parser):
    parser.add_argument("--snapshot", required=True, help="the authors' snapshot_model_iter_N file")
    parser.add_argument("--dataset", required=True, choices=registry.dataset_names(), help="dataset it was trained on")
    parser.add_argument("--model", choices=registry.model_names(), help="our model name (default: from --authors-config)")
    parser.add_argument("--authors-config", help="the run's YAML of the authors' code (config.yml in its log dir)")
    parser.add_argument("--out", required=True, help="checkpoint to write in our format (e.g. results/.../model.pt)")
    parser.add_argument("--root", default="data", help="data root stored in the checkpoint's config (for evaluation)")
    parser.add_argument("--source", default="drive", choices=("drive", "official", "embedded"),
                        help="data source stored in the config (default: drive, the authors' data)")
    parser.add_argument("--step", type=int, help="training step (default: N of snapshot_model_iter_N)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file (never done without it)")
    parser.add_argument("--workflow-config", help="workflow config with the defaults (default: the paper's, shipped with the package)")
    for field in FLAG_FIELDS:
        kind = float if field == "k" else int
        parser.add_argument(f"--{field.replace('_', '-')}", dest=field, type=kind,
                            help=f"model.{field} (default: the paper's)")


def main(args):
    from msp.checkpoint import load_checkpoint, save_checkpoint

    out = Path(args.out)
    if out.exists() and not args.force:  # e.g. a model.pt that took days to train
        raise FileExistsError(f"{out} exists (a trained or imported model); refusing to overwrite it. "
                              "Choose another --out, or add --force to replace it")
    overrides = {field: getattr(args, field) for field in FLAG_FIELDS}
    _, checkpoint = import_snapshot(
        args.snapshot, args.dataset, args.model, overrides, args.authors_config, args.root, args.source, args.step,
        args.workflow_config)
    save_checkpoint(checkpoint, out)
    load_checkpoint(out)  # the file must load the way evaluation loads it
    m = checkpoint["config"]["model"]
    print(f"wrote {out}: {m['name']} on {args.dataset} (k={m['k']}, dim_m={m['dim_m']}, dim_a={m['dim_a']}, "
          f"n_blocks={m['n_blocks']}) at step {checkpoint['step']}", file=sys.stderr)
    return 0
