"""Result tables: mean +- std over seeds, with the authors' reference numbers alongside.

Inputs are the gathered evaluation files of the workflow (one long CSV per dataset and
evaluation kind, one row per run x horizon; see `gather_runs`). Everything is turned into
one long "summary" frame with the columns of SUMMARY_COLUMNS, the same layout as the
reference file msp/reference/reference_results.csv, so that tables, claims and figures
read ours and the authors' numbers the same way.
"""

import json
import math
import re
from pathlib import Path

import pandas as pd

from msp import io
from msp.table_format import CAPTIONS, display_frame, fmt_number, to_latex
from msp.runs import BASELINES, is_baseline

REFERENCE_CSV = Path(__file__).parent / "reference" / "reference_results.csv"
# std: over seeds with ddof = 1 (the sample std); std_ddof0: ddof = 0, numpy's np.std, the
# convention of the authors' published std, shown next to their numbers
SUMMARY_COLUMNS = ["evaluation", "dataset", "model", "horizon", "metric", "mean", "std", "std_ddof0", "n_seeds"]
AUTHORS_SEEDS = 3
METRICS = {"prediction": ["mse"], "equivariance": ["Lp", "Lp_equiv"]}
SBD_METRICS = ["offblock_energy_before", "offblock_energy_after", "offblock_energy_chance", "log10_gap", "n_shared_blocks",
               "static_dims"]
# results/{dataset}/{model}/seed{seed}/eval/..., results/{dataset}/{baseline}/eval/... (rules/common.smk)
RUN_PATH = re.compile(r"(?:^|/)(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?:seed(?P<seed>\d+)/)?eval/")


def run_of(path) -> dict:
    """Dataset, model and seed of an evaluation file, from the workflow's path layout (the
    trivial baselines have no seed: None)."""
    match = RUN_PATH.search(Path(path).as_posix())
    if not match or (match["seed"] is None) != is_baseline(match["model"]):
        raise ValueError(f"{path}: expected a path like results/DATASET/MODEL/seedN/eval/FILE "
                         f"(a trivial baseline: results/DATASET/BASELINE/eval/FILE, BASELINE in {BASELINES})")
    seed = None if match["seed"] is None else int(match["seed"])
    return {"dataset": match["dataset"], "model": match["model"], "seed": seed}


def gather_runs(kind: str, paths) -> pd.DataFrame:
    """One long frame from the per-run evaluation files of one kind.

    prediction/equivariance: the per-horizon CSVs of `msp evaluate`; sbd: the sbd.json files
    (scalars kept; block sizes, factor -> owned blocks and the finest / disjoint verdicts of
    msp.sbd.score_blocks). Adds evaluation, dataset, model, seed columns in front.
    """
    frames = []
    for path in paths:
        run = run_of(path)
        if kind == "sbd":
            frame = pd.DataFrame([_sbd_row(json.loads(Path(path).read_text()), path)])
        else:
            frame = pd.read_csv(path)
            missing = {"horizon", *METRICS[kind]} - set(frame.columns)
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)} of a {kind} evaluation")
            for column in METRICS[kind]:
                values = pd.to_numeric(frame[column], errors="coerce")
                if values.isna().any():  # msp evaluate writes a diverged roll-out as inf
                    rows = frame.loc[values.isna(), "horizon"].tolist()
                    raise ValueError(f"{path}: column {column} is empty, NaN or not a number at horizon(s) "
                                     f"{rows[:5]}; msp evaluate never writes that (a diverged roll-out is "
                                     "'inf'): the file was edited or is corrupt. Delete it and rerun the "
                                     "workflow to recompute it")
        frames.append(frame.assign(evaluation=kind, **run))
    if not frames:
        raise ValueError(f"no {kind} evaluation files given")
    out = pd.concat(frames, ignore_index=True)
    front = ["evaluation", "dataset", "model", "seed"]
    return out[front + [c for c in out.columns if c not in front]]


def _sbd_row(info: dict, path) -> dict:
    """One row of the SBD runs frame from an sbd.json (msp.sbd.score_blocks)."""
    missing = {"block_sizes", "finest", "offblock_energy_after"} - set(info)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}; it was written by an older msp evaluate sbd, "
                         "delete it and re-run the workflow to recompute it")
    row = {k: info.get(k, math.nan) for k in SBD_METRICS}
    row["log10_gap"] = math.log10(info["gap"]) if info.get("gap", 0) > 0 else math.nan
    row["n_shared_blocks"] = len(info.get("shared_blocks", [])) if "factor_blocks" in info else math.nan
    row["method"] = info.get("method", "")
    row["n_blocks"] = len(info["block_sizes"])
    row["block_sizes"] = json.dumps([int(s) for s in info["block_sizes"]])  # a string even for one block
    row["commutant_dim"] = info.get("commutant_dim", math.nan)
    row["factor_blocks"] = json.dumps(info.get("factor_blocks", {}), sort_keys=True)
    row["factor_dims"] = json.dumps(info.get("factor_dims", {}), sort_keys=True)
    row["finest"] = bool(info["finest"])
    row["disjoint"] = info.get("disjoint")
    row["finest_and_disjoint"] = info.get("finest_and_disjoint")
    return row


def read_runs(paths) -> dict[str, pd.DataFrame]:
    """Gathered CSVs -> {evaluation kind: frame}. Kinds are concatenated apart, so that one
    kind's columns keep their types (no NaN-padding from the others); seeds are integers, <NA>
    for the trivial baselines."""
    parts: dict[str, list] = {}
    for path in paths:
        for kind, frame in pd.read_csv(path).groupby("evaluation"):
            parts.setdefault(kind, []).append(frame)
    runs = {kind: pd.concat(frames, ignore_index=True) for kind, frames in parts.items()}
    for frame in runs.values():
        frame["seed"] = frame["seed"].astype("Int64")
    return runs


def summarize(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-horizon metrics -> mean, std (over seeds; NaN with one seed) and n_seeds.
    Non-finite errors (diverged roll-outs) make the mean infinite, shown as "inf"."""
    parts = []
    for kind, metrics in METRICS.items():
        if kind not in runs:
            continue
        long = runs[kind].melt(
            id_vars=["evaluation", "dataset", "model", "seed", "horizon"], value_vars=metrics, var_name="metric"
        )
        # an empty/NaN error means the roll-out diverged: count it as infinite, never skip it
        long["value"] = long["value"].astype(float).fillna(math.inf)
        stats = long.groupby(["evaluation", "dataset", "model", "horizon", "metric"], sort=False)["value"]
        parts.append(stats.agg(mean="mean", std="std", std_ddof0=lambda v: v.std(ddof=0) if len(v) > 1 else math.nan,
                               n_seeds="count").reset_index())
    if not parts:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


def read_reference(path=REFERENCE_CSV) -> pd.DataFrame:
    """The authors' numbers as a summary frame. Their std is np.std over 3 seeds (ddof = 0);
    the ddof = 1 value follows exactly: std_ddof0 * sqrt(n / (n - 1))."""
    ref = pd.read_csv(path, comment="#")
    n = AUTHORS_SEEDS
    return ref.assign(n_seeds=n, std_ddof0=ref["std"], std=ref["std"] * math.sqrt(n / (n - 1)))[SUMMARY_COLUMNS]


def lookup(summary: pd.DataFrame, evaluation, dataset, model, metric, horizon, std="std") -> tuple[float, float]:
    """(mean, std) of one cell of a summary frame (std: column 'std', ddof 1, or 'std_ddof0');
    NaNs when absent."""
    row = summary[
        (summary.evaluation == evaluation)
        & (summary.dataset == dataset)
        & (summary.model == model)
        & (summary.metric == metric)
        & (summary.horizon == horizon)
    ]
    if row.empty:
        return math.nan, math.nan
    return float(row["mean"].iloc[0]), float(row[std].iloc[0])


def _models_in_order(frame: pd.DataFrame, labels: dict) -> list:
    order = {name: i for i, name in enumerate(labels)}
    return sorted(frame.model.unique(), key=lambda m: (order.get(m, len(order)), m))


def _cell(row: dict, tag: str, frame, *key):
    """row[tag_mean], row[tag_std] (ddof 0, as the authors' numbers) and row[tag_std_ddof1]."""
    row[f"{tag}_mean"], row[f"{tag}_std"] = lookup(frame, *key, std="std_ddof0")
    row[f"{tag}_std_ddof1"] = lookup(frame, *key)[1]


def horizons_match(summary, reference, evaluation, dataset) -> bool:
    """Like for like: our evaluation has exactly the horizons of the authors' curves
    (same sequence length T; on MNIST T also sets the velocities). True without a reference."""
    ours = summary[(summary.evaluation == evaluation) & (summary.dataset == dataset)]
    theirs = reference[(reference.evaluation == evaluation) & (reference.dataset == dataset)]
    return theirs.empty or int(ours.horizon.max()) == int(theirs.horizon.max())


def prediction_table(summary, reference, labels) -> pd.DataFrame:
    """One row per dataset x model: error at T_p = 1 and at the comparison horizon H (the
    authors' last reported horizon on that dataset, capped at ours), ours and theirs; std
    over seeds with ddof 0 like theirs (ddof 1 in *_std_ddof1); `like_for_like` is False
    when our horizons are not those of their figure (another sequence length T)."""
    rows = []
    ours = summary[summary.evaluation == "prediction"]
    for dataset in ours.dataset.unique():
        mine = ours[ours.dataset == dataset]
        theirs = reference[(reference.evaluation == "prediction") & (reference.dataset == dataset)]
        last = int(mine.horizon.max())
        horizon = min(int(theirs.horizon.max()), last) if not theirs.empty else last
        for model in _models_in_order(mine, labels):
            row = {"dataset": dataset, "model": model, "label": labels.get(model, model)}
            for tag, h in (("h1", 1), ("hH", horizon)):
                _cell(row, tag, mine, "prediction", dataset, model, "mse", h)
                _cell(row, f"{tag}_ref", theirs, "prediction", dataset, model, "mse", h)
            row["H"] = horizon
            row["like_for_like"] = horizons_match(summary, reference, "prediction", dataset)
            row["n_seeds"] = int(mine[mine.model == model].n_seeds.max())
            rows.append(row)
    return pd.DataFrame(rows)


def baseline_notes(table: pd.DataFrame) -> str:
    """Markdown lines that read a prediction table against its trivial baselines: per dataset,
    at T_p = 1 and T_p = H, the better baseline and which models (ours, and the authors'
    published numbers for the same models) have a lower error. Empty without baselines."""
    lines = []
    for dataset, rows in table.groupby("dataset", sort=False):
        base = rows[rows.model.map(is_baseline)]
        models = rows[~rows.model.map(is_baseline)]
        if base.empty or models.empty:
            continue
        for tag in ("h1", "hH"):
            horizon = 1 if tag == "h1" else int(rows.H.iloc[0])
            if tag == "hH" and horizon == 1:
                continue
            best = base.loc[base[f"{tag}_mean"].idxmin()]
            floor = best[f"{tag}_mean"]
            ours = [r.label for r in models.itertuples() if getattr(r, f"{tag}_mean") < floor]
            with_ref = models[models[f"{tag}_ref_mean"].notna()]
            theirs = [r.label for r in with_ref.itertuples() if getattr(r, f"{tag}_ref_mean") < floor]
            ours_text = ", ".join(ours) if ours else f"**none of {len(models)}**"
            theirs_text = (", ".join(theirs) if theirs else f"**none of {len(with_ref)}**") if len(with_ref) else "–"
            lines.append(f"- {dataset}, T_p = {horizon}: {best.label} {fmt_number(floor)}; below it: ours {ours_text}, "
                         f"the authors' published {theirs_text}")
    if not lines:
        return ""
    return ("Against the trivial baselines (the authors' numbers are on their data, ours on this run's):\n\n"
            + "\n".join(lines) + "\n")


def equivariance_table(summary, reference, labels) -> pd.DataFrame:
    """One row per dataset x model: L^p and L^p_equiv at T_p = 1, ours and theirs (std as in
    prediction_table)."""
    rows = []
    ours = summary[summary.evaluation == "equivariance"]
    for dataset in ours.dataset.unique():
        mine = ours[ours.dataset == dataset]
        for model in _models_in_order(mine, labels):
            row = {"dataset": dataset, "model": model, "label": labels.get(model, model)}
            for metric in ("Lp", "Lp_equiv"):
                _cell(row, metric, mine, "equivariance", dataset, model, metric, 1)
                _cell(row, f"{metric}_ref", reference, "equivariance", dataset, model, metric, 1)
            row["like_for_like"] = horizons_match(summary, reference, "equivariance", dataset)
            row["n_seeds"] = int(mine[mine.model == model].n_seeds.max())
            rows.append(row)
    return pd.DataFrame(rows)


def horizons_table(summary, reference, labels, evaluation) -> pd.DataFrame:
    """Every horizon, long: one row per dataset x model x metric x horizon with ours (mean,
    std ddof 0 and 1, seeds), theirs (mean, std) and ours / theirs."""
    rows = []
    ours = summary[summary.evaluation == evaluation]
    for dataset in ours.dataset.unique():
        mine = ours[ours.dataset == dataset]
        like = horizons_match(summary, reference, evaluation, dataset)
        for model in _models_in_order(mine, labels):
            for metric in METRICS[evaluation]:
                cells = mine[(mine.model == model) & (mine.metric == metric)]
                for h in sorted(int(x) for x in cells.horizon.unique()):
                    row = {"dataset": dataset, "model": model, "label": labels.get(model, model),
                           "metric": metric, "horizon": h}
                    _cell(row, "ours", mine, evaluation, dataset, model, metric, h)
                    _cell(row, "ref", reference, evaluation, dataset, model, metric, h)
                    row["ratio"] = row["ours_mean"] / row["ref_mean"] if row["ref_mean"] else math.nan
                    row["like_for_like"] = like
                    row["n_seeds"] = int(cells.n_seeds.max())
                    rows.append(row)
    return pd.DataFrame(rows)


def sbd_table(sbd_runs: pd.DataFrame, labels) -> pd.DataFrame:
    """One row per dataset x model: SBD scores, mean +- std over seeds (no reference: the
    authors publish heat maps only). The verdict columns count seeds: finest (no block can be
    split further), disjoint (every factor owns blocks, none shared) and both (claim 5)."""
    rows = []
    for (dataset, model), group in sbd_runs.groupby(["dataset", "model"], sort=False):
        row = {"dataset": dataset, "model": model, "label": labels.get(model, model)}
        for metric in SBD_METRICS:
            values = pd.to_numeric(group[metric], errors="coerce")
            row[f"{metric}_mean"], row[f"{metric}_std"] = values.mean(), values.std()
        for verdict in ("finest", "disjoint", "finest_and_disjoint"):
            flags = group[verdict].dropna().map(lambda v: str(v).lower() == "true")
            row[f"{verdict}_seeds"] = f"{int(flags.sum())}/{len(flags)}"
        row["block_sizes"] = " / ".join(str(s) for s in group["block_sizes"])
        row["factor_dims"] = " / ".join(_dims(d) for d in group["factor_dims"])
        row["method"] = "/".join(sorted(set(group["method"].astype(str))))
        row["n_seeds"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def _dims(factor_dims) -> str:
    """'{"hue": 2, "rotation": 4}' -> 'hue 2, rotation 4' (dims each factor owns alone)."""
    try:
        return ", ".join(f"{k} {v}" for k, v in json.loads(factor_dims).items())
    except (TypeError, ValueError):
        return "?"



def write_table(kind: str, table: pd.DataFrame, out_dir) -> list[Path]:
    """results/tables/{kind}.csv (numbers), .md and .tex (formatted); the prediction .md ends
    with the comparison against the trivial baselines."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{kind}.{ext}" for ext in ("csv", "md", "tex")]
    io.write_text(paths[0], table.to_csv(index=False, float_format="%.6g"))
    md = display_frame(kind, table).to_markdown(index=False, disable_numparse=True)
    notes = baseline_notes(table) if kind == "prediction" else ""
    io.write_text(paths[1], f"{CAPTIONS[kind]}\n\n{md}\n" + (f"\n{notes}" if notes else ""))
    io.write_text(paths[2], to_latex(display_frame(kind, table), CAPTIONS[kind]))
    return paths


def make_tables(runs: dict[str, pd.DataFrame], reference: pd.DataFrame, labels: dict, out_dir) -> list[Path]:
    summary = summarize(runs)
    written = []
    if "prediction" in runs:
        table = prediction_table(summary, reference, labels)
        written += write_table("prediction", table, out_dir)
        # the same reading on its own, for the top of report.md
        written.append(Path(out_dir) / "baselines.md")
        io.write_text(written[-1], baseline_notes(table) or "No trivial baselines in these results.\n")
        written += write_table("prediction_horizons", horizons_table(summary, reference, labels, "prediction"),
                               out_dir)
    if "equivariance" in runs:
        written += write_table("equivariance", equivariance_table(summary, reference, labels), out_dir)
        written += write_table("equivariance_horizons", horizons_table(summary, reference, labels, "equivariance"),
                               out_dir)
    if "sbd" in runs:
        written += write_table("sbd", sbd_table(runs["sbd"], labels), out_dir)
    return written

