"""Rendering of the result tables: numbers as text, the human-readable frame of each table kind,
markdown and LaTeX, and the captions. The tables themselves are built in msp.tables."""

import math

import pandas as pd

from msp.runs import is_baseline


def fmt_number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if math.isinf(x):
        return "inf"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_mean_std(mean, std) -> str:
    """'5.10 ± 0.21'; the mean alone when the std is unknown (one seed, or a mean-only source)."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std) or math.isinf(mean):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {fmt_number(std)}"


def display_frame(kind: str, table: pd.DataFrame) -> pd.DataFrame:
    """The human-readable version of a table (formatted strings, titled columns)."""
    f = lambda row, key: fmt_mean_std(row[f"{key}_mean"], row[f"{key}_std"])  # noqa: E731
    if kind.endswith("_horizons"):
        return _display_horizons(table)
    out = []
    for _, row in table.iterrows():
        shown = {"Dataset": row.dataset, "Model": row.label}
        if kind == "prediction":
            shown["T_p = 1"] = f(row, "h1")
            shown["T_p = 1 (paper)"] = f(row, "h1_ref")
            shown["T_p = H"] = f(row, "hH")
            shown["T_p = H (paper)"] = f(row, "hH_ref")
            shown["H"] = str(int(row.H)) if row.like_for_like else f"{int(row.H)} (not the paper's T)"
        elif kind == "equivariance":
            shown["L^p"] = f(row, "Lp")
            shown["L^p_equiv"] = f(row, "Lp_equiv")
            shown["L^p (paper)"] = f(row, "Lp_ref")
            shown["L^p_equiv (paper)"] = f(row, "Lp_equiv_ref")
        else:
            shown["off-block before"] = f(row, "offblock_energy_before")
            shown["off-block after"] = f(row, "offblock_energy_after")
            shown["off-block chance"] = f(row, "offblock_energy_chance")
            shown["log10 gap"] = f(row, "log10_gap")
            shown["block sizes"] = row.block_sizes
            shown["dims owned per factor"] = row.factor_dims
            shown["shared blocks"] = f(row, "n_shared_blocks")
            shown["static dims"] = f(row, "static_dims")
            shown["finest seeds"] = row.finest_seeds
            shown["finest & disjoint seeds"] = row.finest_and_disjoint_seeds
        shown["seeds"] = "–" if is_baseline(row.model) else str(int(row.n_seeds))  # no training, no seed
        out.append(shown)
    return pd.DataFrame(out)


def _display_horizons(table: pd.DataFrame) -> pd.DataFrame:
    """Wide: one row per dataset x model x metric, one column per horizon, 'ours (paper)'."""
    out = []
    for (dataset, model, metric), group in table.groupby(["dataset", "model", "metric"], sort=False):
        first = group.iloc[0]
        shown = {"Dataset": dataset if first.like_for_like else f"{dataset} (not the paper's T)",
                 "Model": first.label, "Metric": metric}
        for _, row in group.iterrows():
            ref = fmt_number(row.ref_mean)
            shown[f"T_p={int(row.horizon)}"] = fmt_number(row.ours_mean) + (f" ({ref})" if ref else "")
        shown["seeds"] = str(int(first.n_seeds))
        out.append(shown)
    return pd.DataFrame(out).fillna("")


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX text ('±' becomes $\\pm$, '–' an en dash)."""
    text = text.replace("\\", r"\textbackslash{}")
    for char in ("&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    text = text.replace(r"\textbackslash\{\}", r"\textbackslash{}")
    return text.replace("^", r"\^{}").replace("±", r"$\pm$").replace("–", "--")


def to_latex(display: pd.DataFrame, caption: str) -> str:
    """A booktabs table of a display frame."""
    cols = list(display.columns)
    head = " & ".join(latex_escape(c) for c in cols) + r" \\"
    body = [
        " & ".join(latex_escape(str(v)) for v in row) + r" \\"
        for row in display.itertuples(index=False)
    ]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(caption)}}}",
            r"\begin{tabular}{" + "l" * 2 + "r" * (len(cols) - 2) + "}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


CAPTIONS = {
    "prediction": "Prediction error (sum over pixels of the squared error per frame) at T_p = 1 and at "
    "T_p = H, mean +- std over seeds (std with ddof = 0, np.std, the authors' convention; ddof = 1 in "
    "the CSV's *_std_ddof1 columns); paper = the authors' numbers. Trivial baselines (no training, "
    "same protocol): copy last frame = the last conditioning frame at every horizon; mean training "
    "frame = one mean image of the training split.",
    "equivariance": "Equivariance error at T_p = 1: L^p with the sequence's own transition, L^p_equiv "
    "with another sequence's; mean +- std over seeds (ddof = 0 as the authors'; ddof = 1 in the CSV); "
    "paper = the authors' numbers. The trivial "
    "baselines use no transition, so their L^p_equiv = L^p: a model whose L^p_equiv is not below "
    "theirs has learned no transition that transfers.",
    "sbd": "Simultaneous block diagonalization: fraction of the transitions' energy outside the "
    "blocks before and after the change of basis and its chance level; log10 of the commutant's "
    "eigenvalue gap (confidence in the block structure); block sizes and the dims each factor "
    "owns alone (per seed); blocks moved by several factors, static dims; seeds whose blocks "
    "are the finest, and finest with each factor on its own blocks (claim 5); std over seeds with ddof = 1.",
    "prediction_horizons": "Prediction error at every horizon: ours (the authors' curve), mean over "
    "seeds; std over seeds (ddof 0 and 1) and ours / theirs in the CSV.",
    "equivariance_horizons": "Equivariance errors L^p and L^p_equiv at every horizon: ours (the authors' "
    "curve), mean over seeds; std over seeds (ddof 0 and 1) and ours / theirs in the CSV.",
}
