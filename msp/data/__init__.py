"""msp.data: the paper's sequence datasets from real sources or an offline embedded one.

    xs = build_sequences("mnist", root="data", source="embedded", T=3, seed=1).sample(32)

Dataset names (msp.registry) and their training defaults (docs/datasets.md):
mnist (digit 4), mnist_bg (digit 4 + backgrounds), mnist_bg_full (all digits +
backgrounds), mnist_accl (digit 4, accelerations, no translation), 3dshapes, smallNORB.
"""

from __future__ import annotations

from msp import registry
from msp.data.embedded import ComposedShapesTable
from msp.data.prepare import load_prepared, prepare
from msp.data.readers import DataError, read_idx, read_norb_mat
from msp.data.sequences import (ArrayTable, FactorGridSequences, SequenceGenerator,
                                SequentialMNIST)
from msp.data.sources import SOURCES, download, verify_manifest
from msp.device import resolve_device

DATASETS = tuple(registry.DATASETS)  # the built-in datasets (msp.registry holds every one)

__all__ = ["DATASETS", "DataError", "SequenceGenerator", "build_sequences", "dataset_family",
           "download", "prepare", "load_prepared", "verify_manifest", "read_idx",
           "read_norb_mat"]


def dataset_family(name: str) -> str:
    """Dataset name -> family of prepared files (mnist | mnist_bg | 3dshapes | smallNORB)."""
    if name not in registry.DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {registry.dataset_names()}")
    return registry.DATASETS[name].family


def build_sequences(name: str, *, root="data", source: str = "embedded", split: str = "train",
                    T: int = 3, device="cpu", seed: int = 0, **options) -> SequenceGenerator:
    """A generator of (N, T, C, H, W) float32 batches in [0, 1] on `device`.

    options override the dataset's training defaults (DatasetSpec.options, msp.registry): see
    sequences.MnistOptions for the MNIST variants; for 3dshapes / smallNORB:
    active_actions, shared_transition, force_moving and (3dshapes) shapes, the allowed
    object shapes (default [0] for split "train", [1, 2, 3] for "test").
    """
    dataset_family(name)
    spec = registry.DATASETS[name]
    if split not in ("train", "test"):
        raise DataError(f"split {split!r}: use 'train' or 'test'")
    if source not in SOURCES:
        raise DataError(f"source {source!r}: use one of {SOURCES}")
    return spec.build_sequences(root=root, source=source, split=split, T=T, device=resolve_device(device),
                                seed=seed, **{**spec.options, **options})


def mnist_sequences(spec, *, root, source, split, T, device, seed, **opts) -> SequentialMNIST:
    """The MNIST variants (digits moved by rotation, hue, translation; optional backgrounds)."""
    _, arrays = load_prepared(spec.family, root, source)
    backgrounds = arrays.get(f"{split}_backgrounds")
    return SequentialMNIST(arrays[f"{split}_images"], arrays[f"{split}_labels"], backgrounds,
                           T=T, device=device, seed=seed, **opts)


def factor_grid_sequences(spec, *, root, source, split, T, device, seed, **opts) -> FactorGridSequences:
    """3dshapes / smallNORB: walks on the grid of factor values, one image per grid point."""
    family = spec.family
    meta, arrays = load_prepared(family, root, source)
    grid = dict(active_actions=opts.pop("active_actions", None),
                shared_transition=opts.pop("shared_transition", False),
                force_moving=opts.pop("force_moving", False))
    if family == "3dshapes":
        shapes = opts.pop("shapes", None)
        shapes = ([0] if split == "train" else [1, 2, 3]) if shapes is None else list(shapes)
        table = (ComposedShapesTable(arrays, device) if meta["table"] == "composed_shapes"
                 else ArrayTable(arrays["images"]))
        movable = [0, 1, 2, 3, 5]
        choices = {4: shapes}
    else:
        images = arrays[f"{split}_images"]  # (categories, instances, 6, 9, 18, 96, 96)
        table = ArrayTable(images.reshape(-1, *images.shape[-2:]))
        movable = [3, 4]
        choices = {f: list(range(images.shape[f])) for f in (0, 1, 2)}
    if opts:
        raise DataError(f"unknown option(s) {sorted(opts)} for {spec.name}; known: active_actions, "
                        "shared_transition, force_moving" + (", shapes" if family == "3dshapes" else ""))
    return FactorGridSequences(table, meta["factor_names"], meta["factor_sizes"], movable, movable,
                               choices, T=T, max_T=spec.max_T, device=device, seed=seed, **grid)
