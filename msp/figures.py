"""The figure set of the authors' repository (docs/evaluation.md, 'Tables and figures'), from the
workflow's evaluation files. Every function returns a matplotlib Figure; `save` writes it
to each requested path (the extension picks the format: .png, .pdf).

- comp_error_{dataset}: prediction error vs horizon, one line per model (mean, +- std band),
  the trivial baselines in grey, the authors' curve of each model dashed and faded behind
  (msp/reference/reference_results.csv)
- equiv_error_{dataset}: L^p (dashed) and L^p_equiv (solid) per model, baselines in grey, the
  authors' curves dotted behind
- sbd_{dataset}: mean |I - M| before and |I - V| after block diagonalization
- sbd_{dataset}_components: one |I - V| map per moving factor
- disentangle_{dataset}: one roll-out per block, only that block's transition active
- gen_images/{dataset}_{model}: conditioning + true future, and the predicted future
- training_curves_{dataset}: training loss vs step per model (thin: seeds, thick: their mean)
"""

import json
import re
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from msp import io, registry  # noqa: E402
from msp.runs import BASELINE_LABELS, is_baseline  # noqa: E402

BASELINE_STYLE = {"baseline_copy_last": "--", "baseline_mean_frame": ":"}


def _rank(model: str) -> int:
    """Position in the model registry (legend order); unregistered names after, by a stable hash."""
    names = registry.model_names()
    return names.index(model) if model in names else len(names) + zlib.crc32(model.encode()) % 5


def model_color(model: str):
    """One colour per model across every figure and every process (registry order)."""
    return plt.get_cmap("tab10")(_rank(model) % 10)


def save(fig, paths) -> None:
    """Write `fig` to every path (format from the extension), atomically."""
    try:
        for path in paths:
            io.save_figure(fig, path, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def _ordered(models) -> list:
    return sorted(models, key=lambda m: (_rank(m), m))


def _mean_std(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """runs: one row per model x seed x horizon -> mean and std over seeds per model x horizon."""
    return runs.groupby(["model", "horizon"])[metric].agg(["mean", "std", "count"]).reset_index()


def _baseline_lines(ax, stats: pd.DataFrame, labels: dict, metric_label: str = ""):
    """The trivial baselines as grey lines (dashed: copy last frame, dotted: mean frame)."""
    for model, style in BASELINE_STYLE.items():
        s = stats[stats.model == model]
        if not s.empty:
            ax.plot(s.horizon, s["mean"], style, color="0.55", lw=1.2,
                    label=labels.get(model, BASELINE_LABELS[model]) + metric_label)


def _authors_curve(ax, reference, evaluation, datasets, model, metric, color, linestyle) -> bool:
    """Draw the authors' curve of one model behind ours (faded, thin); True if there is one."""
    if reference is None:
        return False
    ref = reference[(reference.evaluation == evaluation) & reference.dataset.isin(datasets)
                    & (reference.model == model) & (reference.metric == metric)].sort_values("horizon")
    if ref.empty:
        return False
    ax.plot(ref.horizon, ref["mean"], linestyle, lw=1.0, color=color, alpha=0.55, zorder=1)
    return True


def _authors_legend(ax, linestyle):
    ax.plot([], [], linestyle, lw=1.0, color="0.4", alpha=0.7, label="the authors' (published)")


def comp_error(runs: pd.DataFrame, labels: dict, title: str = "", reference: pd.DataFrame | None = None):
    """Prediction error vs T_p. runs: gathered prediction CSV (model, seed, horizon, mse);
    the trivial baselines' rows become grey lines; reference: the authors' numbers as a summary
    frame (msp.tables.read_reference), drawn dashed and faded behind ours."""
    stats = _mean_std(runs, "mse")
    datasets = list(runs.dataset.unique()) if "dataset" in runs else []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    drawn = False
    _baseline_lines(ax, stats, labels)
    for model in _ordered(m for m in stats.model.unique() if not is_baseline(m)):
        s = stats[stats.model == model]
        color = model_color(model)
        drawn |= _authors_curve(ax, reference, "prediction", datasets, model, "mse", color, "--")
        ax.plot(s.horizon, s["mean"], "o-", ms=3, color=color, label=labels.get(model, model), zorder=3)
        _std_band(ax, s, color, alpha=0.2)
    if drawn:
        _authors_legend(ax, "--")
    _horizon_axes(ax, title or "prediction error")
    ax.legend(fontsize=8)
    return fig


def _std_band(ax, stats: pd.DataFrame, color, alpha: float):
    """Shade mean +- std over seeds (only when there are several seeds)."""
    if (stats["count"] > 1).any():
        ax.fill_between(stats.horizon, (stats["mean"] - stats["std"]).clip(lower=1e-6),
                        stats["mean"] + stats["std"], color=color, alpha=alpha, lw=0)


def _horizon_axes(ax, title: str):
    ax.set(xlabel="prediction horizon $T_p$", ylabel="squared error per frame", yscale="log", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")


def equiv_error(runs: pd.DataFrame, labels: dict, title: str = "", reference: pd.DataFrame | None = None):
    """L^p (dashed) and L^p_equiv (solid) vs T_p. runs: gathered equivariance CSV. The
    trivial baselines use no transition (L^p_equiv = L^p): one grey line each. The authors'
    curves (both metrics) dotted behind ours (dashed already means L^p here)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lp, le = _mean_std(runs, "Lp"), _mean_std(runs, "Lp_equiv")
    datasets = list(runs.dataset.unique()) if "dataset" in runs else []
    drawn = False
    _baseline_lines(ax, le, labels, ": $L^p = L^p_{equiv}$")
    for model in _ordered(m for m in lp.model.unique() if not is_baseline(m)):
        color, name = model_color(model), labels.get(model, model)
        a, b = lp[lp.model == model], le[le.model == model]
        for metric in ("Lp", "Lp_equiv"):
            drawn |= _authors_curve(ax, reference, "equivariance", datasets, model, metric, color, ":")
        ax.plot(a.horizon, a["mean"], "--", color=color, label=f"{name}: $L^p$", zorder=3)
        ax.plot(b.horizon, b["mean"], "-", color=color, label=f"{name}: $L^p_{{equiv}}$", zorder=3)
        _std_band(ax, b, color, alpha=0.15)
    if drawn:
        _authors_legend(ax, ":")
    _horizon_axes(ax, title or "equivariance error")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _block_edges(blocks) -> list:
    """Boundaries between contiguous blocks, in the permuted axes of the 'after' maps."""
    sizes = [len(b) for b in blocks]
    return list(np.cumsum(sizes)[:-1] - 0.5)


def _heat(ax, image, title, edges=()):
    im = ax.imshow(image, cmap="viridis", interpolation="nearest")
    for e in edges:
        ax.axhline(e, color="w", lw=0.8)
        ax.axvline(e, color="w", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def load_sbd(maps_path, info_path):
    maps = np.load(maps_path)
    info = json.loads(Path(info_path).read_text())
    return maps, info


def sbd(maps, info, title: str = ""):
    """Heat maps of mean |I - M| before and |I - V| after the change of basis."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    im0 = _heat(axes[0], maps["before"], "before: mean $|I - M|$")
    im1 = _heat(axes[1], maps["after"], "after: mean $|I - U^{-1}MU|$", _block_edges(info.get("blocks", [])))
    fig.colorbar(im0, ax=axes[0], fraction=0.046)
    fig.colorbar(im1, ax=axes[1], fraction=0.046)
    fig.suptitle(title or "simultaneous block diagonalization", fontsize=10)
    return fig


def sbd_components(maps, info, title: str = ""):
    """One |I - V| map per moving factor (only that factor moves in its sequences)."""
    comps = maps["components"]  # (F, a, a)
    names = info.get("factor_names") or [f"factor {i}" for i in range(len(comps))]
    edges = _block_edges(info.get("blocks", []))
    fig, axes = plt.subplots(1, len(comps), figsize=(2.3 * len(comps), 2.6), squeeze=False)
    for ax, comp, name in zip(axes[0], comps, names):
        _heat(ax, comp, name, edges)
    fig.suptitle(title or "per-factor transitions after block diagonalization", fontsize=10)
    return fig


def _to_hwc(frames: np.ndarray) -> np.ndarray:
    """(..., C, H, W) in [0, 1] -> (..., H, W, 3) for imshow (grey images repeated)."""
    frames = np.clip(np.asarray(frames, dtype=np.float32), 0, 1)
    frames = np.moveaxis(frames, -3, -1)
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _grid(rows: list, pad: int = 2, group: int = 1) -> tuple[np.ndarray, list]:
    """rows: list of (S, H, W, 3) arrays (None entries = blank cells) -> (one image, the y
    centre of each row). Every `group` rows get an extra gap, to separate examples."""
    H, W = next(f for row in rows for f in row if f is not None).shape[:2]
    S = max(len(row) for row in rows)
    gap = H // 3 if group > 1 else 0
    tops = [pad + i * (H + pad) + (i // group) * gap for i in range(len(rows))]
    canvas = np.ones((tops[-1] + H + pad, S * (W + pad) + pad, 3), dtype=np.float32)
    for top, row in zip(tops, rows):
        for j, frame in enumerate(row):
            if frame is not None:
                x = pad + j * (W + pad)
                canvas[top:top + H, x:x + W] = frame
    return canvas, [t + H / 2 for t in tops]


def disentangle(maps, info, title: str = ""):
    """Rows = blocks: the roll-out with the transition solved on that block only (identity on
    the others), under the true sequence and the roll-out with every block active.

    maps["disentangle"]: (B, S, C, H, W), or (n_sequences, B, S, C, H, W) of which the first
    sequence is shown; optional "disentangle_cond" (Tc, C, H, W), "disentangle_target" and
    "disentangle_all" (S, C, H, W) (each with the same optional leading axis) add the true
    sequence and the roll-out with every block active.
    """
    def first(key, ndim):  # drop the leading sequence axis when there is one
        a = np.asarray(maps[key])
        return a[0] if a.ndim == ndim + 1 else a

    blocks = _to_hwc(first("disentangle", 5))  # (B, S, H, W, 3)
    Tc = first("disentangle_cond", 4).shape[0] if "disentangle_cond" in maps else 0
    rows, names = [], []
    if "disentangle_target" in maps:
        cond = list(_to_hwc(first("disentangle_cond", 4))) if Tc else []
        rows.append(cond + list(_to_hwc(first("disentangle_target", 4))))
        names.append("truth")
    if "disentangle_all" in maps:
        rows.append([None] * Tc + list(_to_hwc(first("disentangle_all", 4))))
        names.append("all blocks")
    owner = {}
    for factor, owned in (info.get("factor_blocks") or {}).items():  # msp.sbd.score_blocks
        for block in owned:
            owner.setdefault(int(block), []).append(factor)
    for block in info.get("shared_blocks") or []:
        owner.setdefault(int(block), []).append("shared")
    for b, row in enumerate(blocks):
        rows.append([None] * Tc + list(row))
        names.append(f"block {b}" + (f" ({', '.join(owner[b])})" if b in owner else ""))
    image, centres = _grid(rows)
    S = max(len(r) for r in rows)
    fig, ax = plt.subplots(figsize=(0.7 * S + 2.0, 0.7 * len(rows) + 0.7))
    ax.imshow(image, interpolation="nearest")
    ax.set_yticks(centres)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xticks([])
    ax.set_title(title or "roll-outs with one block's transition", fontsize=10)
    return fig


def gen_images(samples, title: str = "", n_examples: int = 4):
    """Per example: predicted future above (blank under the conditioning frames), then the
    conditioning frames + the true future, then (if present) the prediction with another
    sequence's transition."""
    cond, target, pred = (_to_hwc(samples[k]) for k in ("cond", "target", "pred"))
    equiv = _to_hwc(samples["pred_equiv"]) if "pred_equiv" in samples else None
    Tc = cond.shape[1]
    rows, names = [], []
    per_example = 2 if equiv is None else 3
    for i in range(min(n_examples, len(cond))):
        rows.append([None] * Tc + list(pred[i]))
        names.append("predicted")
        rows.append(list(cond[i]) + list(target[i]))
        names.append("truth")
        if equiv is not None:
            rows.append([None] * Tc + list(equiv[i]))
            names.append("swapped M")
    image, centres = _grid(rows, group=per_example)
    S = Tc + target.shape[1]
    fig, ax = plt.subplots(figsize=(0.8 * S + 1.2, 0.8 * len(rows) + 0.6))
    ax.imshow(image, interpolation="nearest")
    ax.set_yticks(centres)
    ax.set_yticklabels(names, fontsize=7)
    col = image.shape[1] / S
    ax.set_xticks([col * (j + 0.5) for j in range(S)])
    ax.set_xticklabels([f"c{j + 1}" if j < Tc else f"{j - Tc + 1}" for j in range(S)], fontsize=7)
    ax.set_title(title or "generated sequences", fontsize=10)
    return fig


# results/{dataset}/{model}/seed{seed}/FILE (rules/common.smk)
RUN_DIR = re.compile(r"(?:^|/)(?P<dataset>[^/]+)/(?P<model>[^/]+)/seed(?P<seed>\d+)$")


def training_logs(paths) -> pd.DataFrame:
    """Each run's DIR/metrics.jsonl (paths: the metrics files or any file in DIR, e.g. model.pt)
    -> one long frame dataset, model, seed, step, loss. Runs without a log (imported
    checkpoints) are left out."""
    frames = []
    for path in map(Path, paths):
        log = path if path.name == "metrics.jsonl" else path.parent / "metrics.jsonl"
        match = RUN_DIR.search(log.parent.as_posix())
        if not match:
            raise ValueError(f"{path}: expected a file of a run folder results/DATASET/MODEL/seedN/")
        if not log.is_file():
            continue
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        frame = pd.DataFrame(rows, columns=None if rows else ["step", "loss"])[["step", "loss"]]
        frames.append(frame.assign(dataset=match["dataset"], model=match["model"], seed=int(match["seed"])))
    if not frames:
        return pd.DataFrame(columns=["step", "loss", "dataset", "model", "seed"])
    return pd.concat(frames, ignore_index=True)


def training_curves(logs: pd.DataFrame, labels: dict, title: str = ""):
    """Training loss vs step, one colour per model: a thin line per seed and a thick one for
    the mean over seeds (at the steps every seed logged). Each model's own objective, so
    levels are comparable across seeds and steps, not across models of different losses."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if logs.empty:
        ax.text(0.5, 0.5, "no training logs (metrics.jsonl)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for model in _ordered(logs.model.unique()):
        runs, color = logs[logs.model == model], model_color(model)
        for _, run in runs.groupby("seed"):
            ax.plot(run.step, run.loss, "-", color=color, lw=0.7, alpha=0.45)
        n_seeds = runs.seed.nunique()
        mean = runs.groupby("step").loss.agg(["mean", "count"])
        mean = mean[mean["count"] == n_seeds]
        ax.plot(mean.index, mean["mean"], "o-" if len(mean) <= 30 else "-", ms=3, color=color, lw=1.8,
                label=f"{labels.get(model, model)} ({n_seeds} seed{'s' if n_seeds > 1 else ''})")
    finite = logs.loss[np.isfinite(logs.loss)]
    ax.set(xlabel="training step", ylabel="training loss", title=title or "training loss",
           yscale="log" if len(finite) and (finite > 0).all() else "linear")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
