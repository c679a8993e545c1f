"""The paper's five qualitative claims (docs/evaluation.md, 'Claims'), checked on numbers.

Each check reads a summary frame (msp.tables.SUMMARY_COLUMNS: evaluation, dataset, model,
horizon, metric, mean, std, n_seeds), the same layout for our results and for the authors'
reference file, and returns a verdict with the numbers behind it:
- "held": the test passes on every dataset where it applies;
- "not held": it fails on at least one (the details say where);
- "not checked": the grid lacks the models or datasets the claim needs.
The tests are stated in each function's docstring; they pass on the authors' numbers
(tests/test_workflow_report.py checks that), so a "not held" on ours is a real difference.
"""

import json
import math
import numbers
from dataclasses import dataclass, field

import pandas as pd

from msp import registry
from msp.runs import is_baseline
from msp.table_format import fmt_number
from msp.tables import lookup, summarize

HELD, NOT_HELD, NOT_CHECKED = "held", "not held", "not checked"
MSP_MODELS = registry.models_in_group("msp")  # MSP and its variants
NEURAL_MODELS = registry.models_in_group("neural")
CLEARLY_WORSE = 1.25  # claim 3: "clearly worse" = mean error at least 25% above MSP's


# Short names of the claims for the one-line-per-claim table at the top of the report.
TITLES = {1: "Equivariance: MSP's L^p_equiv stays near its L^p",
          2: "Long horizons: MSP lowest; neural models best at T_p = 1",
          3: "The reconstruction model is clearly worse than MSP",
          4: "Accelerated sequences: 2nd order extrapolates better",
          5: "SBD: each factor acts on its own block"}


@dataclass
class Claim:
    number: int
    statement: str
    verdict: str = NOT_CHECKED
    details: list[str] = field(default_factory=list)
    # per dataset: (passed, the deciding numbers in a few words, margin: > 1 passes, larger is safer)
    keys: dict = field(default_factory=dict)

    @property
    def evidence(self) -> str:
        return "; ".join(self.details) if self.details else "no dataset has the models this claim needs"

    def record(self, dataset: str, ok: bool, detail: str, key: str, margin: float) -> None:
        self.details.append(detail)
        self.keys[dataset] = (bool(ok), key, float(margin))

    def deciding_dataset(self) -> str | None:
        """The dataset that decides the verdict: the first that fails, else the closest call."""
        failing = [d for d, (ok, _, _) in self.keys.items() if not ok]
        if failing:
            return failing[0]
        return min(self.keys, key=lambda d: self.keys[d][2], default=None)

    def deciding(self, dataset: str | None = None) -> str:
        """'dataset: numbers' of `dataset` (default: the deciding one); claims that record no
        keys give their first failing detail, else their first detail."""
        dataset = dataset or self.deciding_dataset()
        if dataset in self.keys:
            return f"{dataset}: {self.keys[dataset][1]}"
        if dataset is not None or not self.details:
            return "–"
        return next((d for d in self.details if "FAILS" in d), self.details[0])


def _verdict(results: list[bool]) -> str:
    if not results:
        return NOT_CHECKED
    return HELD if all(results) else NOT_HELD


def _curve(summary, evaluation, dataset, model, metric) -> pd.Series:
    """mean per horizon of one model (index = horizon)."""
    rows = summary[
        (summary.evaluation == evaluation)
        & (summary.dataset == dataset)
        & (summary.model == model)
        & (summary.metric == metric)
    ]
    return rows.set_index("horizon")["mean"].sort_index()


def _present(summary, evaluation, dataset, models) -> list[str]:
    have = set(summary[(summary.evaluation == evaluation) & (summary.dataset == dataset)].model)
    return [m for m in models if m in have]


def _mark(ok: bool) -> str:
    return "ok" if ok else "FAILS"


def claim_equivariance(summary, labels) -> Claim:
    """1. MSP's equivariance error stays close to its prediction error; Neural M* and the
    reconstruction model have a large gap. Test per dataset at T_p = 1: MSP's L^p_equiv is the
    lowest of the models evaluated, and MSP's relative gap (L^p_equiv - L^p) / L^p is smaller
    than Neural M*'s (the reconstruction model's gap is small in relative terms because its
    L^p itself is large, as in the authors' numbers, so its L^p_equiv carries the test)."""
    claim = Claim(1, "MSP's equivariance error is close to its prediction error; Neural M* and "
                     "the reconstruction model have a large gap.")
    results = []
    for dataset in summary[summary.evaluation == "equivariance"].dataset.unique():
        others = _present(summary, "equivariance", dataset, ("neuralM", "lstsq_rec"))
        if "lstsq" not in _present(summary, "equivariance", dataset, ("lstsq",)) or not others:
            continue
        lp, le = (lookup(summary, "equivariance", dataset, "lstsq", m, 1)[0] for m in ("Lp", "Lp_equiv"))
        gap = (le - lp) / lp
        ok = True
        parts = [f"MSP {fmt_number(lp)}/{fmt_number(le)} (gap {gap:+.0%})"]
        for model in others:
            olp, ole = (lookup(summary, "equivariance", dataset, model, m, 1)[0] for m in ("Lp", "Lp_equiv"))
            ogap = (ole - olp) / olp
            ok &= le < ole and (model != "neuralM" or gap < ogap)
            parts.append(f"{labels.get(model, model)} {fmt_number(olp)}/{fmt_number(ole)} (gap {ogap:+.0%})")
        results.append(ok)
        closest = min(others, key=lambda m: lookup(summary, "equivariance", dataset, m, "Lp_equiv", 1)[0])
        ole = lookup(summary, "equivariance", dataset, closest, "Lp_equiv", 1)[0]
        claim.record(dataset, ok, f"{dataset}: L^p/L^p_equiv at T_p=1 " + ", ".join(parts) + f" -> {_mark(ok)}",
                     f"L^p_equiv at T_p=1: MSP {fmt_number(le)} vs {labels.get(closest, closest)} {fmt_number(ole)}",
                     ole / le if le > 0 else math.inf)
    claim.verdict = _verdict(results)
    return claim


def claim_long_horizon(summary, labels) -> Claim:
    """2. Neural M* / Neural transition win at T_p = 1 but degrade fast; at long horizons MSP
    (or a variant) has the lowest error on every dataset. Test per dataset with both kinds of
    model: at the longest horizon every model has, the best MSP-family error is the lowest of
    all models, and at T_p = 1 the best neural model beats the best MSP-family model."""
    claim = Claim(2, "Neural M* and Neural transition win at T_p = 1 but degrade fast; at long "
                     "horizons MSP (or MSP with fixed blocks) has the lowest error.")
    results = []
    for dataset in summary[summary.evaluation == "prediction"].dataset.unique():
        msp = _present(summary, "prediction", dataset, MSP_MODELS)
        neural = _present(summary, "prediction", dataset, NEURAL_MODELS)
        if not msp or not neural:
            continue
        models = sorted(set(summary[(summary.evaluation == "prediction") & (summary.dataset == dataset)].model))
        curves = {m: _curve(summary, "prediction", dataset, m, "mse") for m in models}
        last = int(min(c.index.max() for c in curves.values()))
        at_last = {m: c.get(last, math.nan) for m, c in curves.items()}
        first = {m: c.get(1, math.nan) for m, c in curves.items()}
        best_msp = min(msp, key=lambda m: at_last[m])
        best_other = min((m for m in models if m not in MSP_MODELS), key=lambda m: at_last[m], default=None)
        long_ok = best_other is None or at_last[best_msp] < at_last[best_other]
        short_ok = min(first[m] for m in neural) < min(first[m] for m in msp)
        results.append(long_ok and short_ok)
        best_neural_1 = min(neural, key=lambda m: first[m])
        best_msp_1 = min(msp, key=lambda m: first[m])
        margin = min(at_last[best_other] / at_last[best_msp] if best_other else math.inf,
                     first[best_msp_1] / first[best_neural_1])
        key = (f"T_p={last}: {labels.get(best_msp, best_msp)} {fmt_number(at_last[best_msp])}"
               + (f" vs {labels.get(best_other, best_other)} {fmt_number(at_last[best_other])}" if best_other else "")
               + f"; T_p=1: {labels.get(best_neural_1, best_neural_1)} {fmt_number(first[best_neural_1])} vs "
               f"{labels.get(best_msp_1, best_msp_1)} {fmt_number(first[best_msp_1])}")
        claim.record(
            dataset, long_ok and short_ok,
            f"{dataset}: T_p={last} best MSP-family {labels.get(best_msp, best_msp)} {fmt_number(at_last[best_msp])}"
            + (f" vs best other {labels.get(best_other, best_other)} {fmt_number(at_last[best_other])}"
               if best_other else "")
            + f" ({_mark(long_ok)}); T_p=1 {labels.get(best_neural_1, best_neural_1)} "
            f"{fmt_number(first[best_neural_1])} vs {labels.get(best_msp_1, best_msp_1)} "
            f"{fmt_number(first[best_msp_1])} ({_mark(short_ok)})",
            key, margin,
        )
    claim.verdict = _verdict(results)
    return claim


def claim_reconstruction(summary, labels) -> Claim:
    """3. The non-predictive reconstruction model is clearly worse than MSP. Test per dataset:
    its prediction error averaged over the horizons both models have is at least
    CLEARLY_WORSE times MSP's."""
    claim = Claim(3, "The non-predictive reconstruction model is clearly worse than MSP.")
    results = []
    for dataset in summary[summary.evaluation == "prediction"].dataset.unique():
        if len(_present(summary, "prediction", dataset, ("lstsq", "lstsq_rec"))) < 2:
            continue
        msp = _curve(summary, "prediction", dataset, "lstsq", "mse")
        rec = _curve(summary, "prediction", dataset, "lstsq_rec", "mse")
        common = msp.index.intersection(rec.index)
        ratio = rec[common].mean() / msp[common].mean()
        ok = bool(ratio >= CLEARLY_WORSE)
        results.append(ok)
        claim.record(
            dataset, ok,
            f"{dataset}: mean error over T_p {int(common.min())}..{int(common.max())}: "
            f"{labels.get('lstsq_rec', 'lstsq_rec')} {fmt_number(rec[common].mean())} vs "
            f"{labels.get('lstsq', 'lstsq')} {fmt_number(msp[common].mean())} (x{ratio:.2f}, "
            f"needs >= {CLEARLY_WORSE}) -> {_mark(ok)}",
            f"mean error {labels.get('lstsq_rec', 'lstsq_rec')} / {labels.get('lstsq', 'lstsq')} = x{ratio:.2f} "
            f"(needs >= {CLEARLY_WORSE})",
            ratio / CLEARLY_WORSE,
        )
    claim.verdict = _verdict(results)
    return claim


def claim_second_order(summary, labels, train_horizon=5, dataset="mnist_accl") -> Claim:
    """4. On accelerated sequences the second-order model extrapolates far better than the
    first-order one. Test: on `dataset`, holstsq's mean error over the extrapolated horizons
    (T_p > train_horizon) both models have is below lstsq's."""
    claim = Claim(4, "On accelerated sequences the second-order model extrapolates far better "
                     "than the first-order one.")
    if len(_present(summary, "prediction", dataset, ("lstsq", "holstsq"))) < 2:
        return claim
    first = _curve(summary, "prediction", dataset, "lstsq", "mse")
    second = _curve(summary, "prediction", dataset, "holstsq", "mse")
    common = [h for h in first.index.intersection(second.index) if h > train_horizon]
    if not common:
        claim.details.append(f"{dataset}: no horizon beyond the training length {train_horizon}")
        return claim
    ok = bool(second[common].mean() < first[common].mean())
    claim.verdict = HELD if ok else NOT_HELD
    claim.record(
        dataset, ok,
        f"{dataset}: mean error over extrapolated T_p {int(min(common))}..{int(max(common))}: "
        f"{labels.get('holstsq', 'holstsq')} {fmt_number(second[common].mean())} vs "
        f"{labels.get('lstsq', 'lstsq')} {fmt_number(first[common].mean())} -> {_mark(ok)}",
        f"mean error over T_p {int(min(common))}..{int(max(common))}: {labels.get('holstsq', 'holstsq')} "
        f"{fmt_number(second[common].mean())} vs {labels.get('lstsq', 'lstsq')} {fmt_number(first[common].mean())}",
        first[common].mean() / second[common].mean(),
    )
    return claim


def claim_sbd(sbd_runs: pd.DataFrame | None, labels) -> Claim:
    """5. SBD finds a block structure in which each factor acts on its own block. Test per
    dataset (every seed): the change of basis lowers the off-block energy of the transitions,
    the blocks are the finest the transitions allow (none can be split further), and each
    factor owns blocks that no other factor moves (msp.sbd.score_blocks: finest_and_disjoint).
    Merged blocks fail both the finest test and, when two factors share them, the disjoint one."""
    claim = Claim(5, "SBD finds a block structure in which each factor of variation acts on its "
                     "own block.")
    if sbd_runs is None or sbd_runs.empty:
        return claim
    truth = lambda v: str(v).lower() == "true"  # noqa: E731 (CSV round trips give strings)
    results = []
    for (dataset, model), group in sbd_runs.groupby(["dataset", "model"], sort=False):
        lowered = group.offblock_energy_after < group.offblock_energy_before
        ok = bool(lowered.all() and group.finest_and_disjoint.map(truth).all())
        results.append(ok)
        seeds = ", ".join(
            f"seed {r.seed}: off-block {fmt_number(r.offblock_energy_before)} -> "
            f"{fmt_number(r.offblock_energy_after)}, blocks {r.block_sizes}"
            f"{'' if truth(r.finest) else ' (not finest)'}, factor->blocks {_short(r.factor_blocks)}"
            f"{'' if truth(r.disjoint) else f' ({_shared(r)} shared, not disjoint)'}"
            for r in group.itertuples()
        )
        bad = [r for r in group.itertuples()
               if not (r.offblock_energy_after < r.offblock_energy_before and truth(r.finest_and_disjoint))]
        r = (bad or list(group.itertuples()))[0]  # the deciding seed: the first that fails
        key = (f"{labels.get(model, model)} seed {r.seed}: off-block {fmt_number(r.offblock_energy_before)} -> "
               f"{fmt_number(r.offblock_energy_after)}, blocks {r.block_sizes}, "
               f"{'finest' if truth(r.finest) else 'not finest'}, {'disjoint' if truth(r.disjoint) else 'shared'}")
        margin = float((group.offblock_energy_before / group.offblock_energy_after).min())
        claim.record(dataset, ok, f"{dataset} ({labels.get(model, model)}): {seeds} -> {_mark(ok)}", key, margin)
    claim.verdict = _verdict(results)
    return claim


def _shared(row) -> str:
    n = row.n_shared_blocks
    return "?" if n != n else str(int(n))  # NaN: no single-factor transitions


def _short(factor_blocks) -> str:
    try:
        mapping = json.loads(factor_blocks)
    except (TypeError, ValueError):
        return "?"
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"


def check_claims(summary, sbd_runs, labels, accl_train_horizon=5) -> list[Claim]:
    """The five claims on the models' rows; the trivial baselines' rows are left out (the
    claims compare models; the baselines are the floor the tables and figures show)."""
    summary = summary[~summary.model.map(is_baseline)]
    return [
        claim_equivariance(summary, labels),
        claim_long_horizon(summary, labels),
        claim_reconstruction(summary, labels),
        claim_second_order(summary, labels, accl_train_horizon),
        claim_sbd(sbd_runs, labels),
    ]


def per_seed_verdicts(runs: dict[str, pd.DataFrame], labels, accl_train_horizon=5) -> dict[int, dict[int, str]]:
    """The same five tests on each training seed's runs alone: claim -> {seed: verdict}.
    The verdict of check_claims is on the mean over seeds, which can hide that the seeds
    disagree (one seed far on one side, another just across). runs: msp.tables.read_runs."""
    seeds = sorted({int(s) for frame in runs.values() for s in frame["seed"].dropna()})
    verdicts: dict[int, dict[int, str]] = {}
    for seed in seeds:
        alone = {kind: frame[frame["seed"] == seed] for kind, frame in runs.items()}
        sbd_runs = alone.pop("sbd", None)
        for claim in check_claims(summarize(alone), sbd_runs, labels, accl_train_horizon):
            verdicts.setdefault(claim.number, {})[seed] = claim.verdict
    return verdicts


def per_seed_text(verdicts: dict[int, str]) -> str:
    """{1: 'held', 2: 'not held'} -> 'seed 1: held; seed 2: not held' ('' for one seed or none)."""
    if len(verdicts) < 2:
        return ""
    return "; ".join(f"seed {seed}: {verdict}" for seed, verdict in sorted(verdicts.items()))


def claims_frame(ours: list[Claim], reference: list[Claim], per_seed: dict | None = None) -> pd.DataFrame:
    """One row per claim. `deciding`: our numbers on the dataset that decides our verdict;
    `reference_deciding`: the authors' numbers on that same dataset when they have it (else
    on the dataset that decides theirs); `per_seed`: each seed's verdict (per_seed_verdicts),
    empty with one seed; `seeds_checked` / `seeds_held`: how many seeds the claim could be
    checked on alone, and on how many of them it held."""
    rows = []
    for c, r in zip(ours, reference):
        seeds = (per_seed or {}).get(c.number, {})
        checked = [v for v in seeds.values() if v != NOT_CHECKED]  # a seed without the claim's runs says nothing
        dataset = c.deciding_dataset()
        rows.append({
            "claim": c.number,
            "title": TITLES.get(c.number, c.statement),
            "statement": c.statement,
            "verdict": c.verdict,
            "deciding": c.deciding(),
            "reference_deciding": r.deciding(dataset if dataset in r.keys else None),
            "evidence": c.evidence,
            "reference_verdict": r.verdict,
            "reference_evidence": r.evidence,
            "per_seed": per_seed_text(seeds),
            "seeds_checked": len(checked),
            "seeds_held": checked.count(HELD),
        })
    return pd.DataFrame(rows)


def _compact_verdict(row) -> str:
    """The verdict on the mean over seeds, with 'held on k of n seeds' when the seeds do not
    all agree with it (a verdict that one seed carries is not the same as one every seed gives)."""
    checked, held = getattr(row, "seeds_checked", ""), getattr(row, "seeds_held", "")
    if not isinstance(checked, numbers.Integral) or not isinstance(held, numbers.Integral):  # absent: an older claims.csv
        return row.verdict
    agree = held == checked if row.verdict == HELD else held == 0
    if checked == 0 or row.verdict == NOT_CHECKED or agree:
        return row.verdict
    return f"{row.verdict} (held on {held} of {checked} seeds)"


COMPACT_COLUMNS = {"claim": "Claim", "verdict": "Verdict", "deciding": "Our deciding number",
                   "reference_deciding": "The authors' number"}


def compact_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The four columns a reader needs first: claim | verdict | our deciding number | the
    authors' number (with their verdict in brackets)."""
    return pd.DataFrame({
        "Claim": [f"{row.claim}: {row.title}" for row in frame.itertuples()],
        "Verdict": [_compact_verdict(row) for row in frame.itertuples()],
        "Our deciding number": frame.deciding,
        "The authors' number": [f"{row.reference_deciding} ({row.reference_verdict})" for row in frame.itertuples()],
    })


def compact_markdown(frame: pd.DataFrame) -> str:
    table = compact_frame(frame).to_markdown(index=False, disable_numparse=True)
    return (table + "\n\nVerdict: held / not held / not checked (the grid lacks the models or datasets). "
            "The deciding number is the dataset that fails first, or the closest call when every "
            "dataset passes; the authors' column applies the same test to their published numbers. "
            "With several seeds the verdict is on their mean; \"held on k of n seeds\" follows it when "
            "the seeds, each checked alone, do not all agree with it.\n")


def claims_details_markdown(frame: pd.DataFrame, level: str = "###") -> str:
    """Every claim's statement and the numbers behind both verdicts, dataset by dataset."""
    lines = []
    for row in frame.itertuples():
        lines += [
            f"{level} Claim {row.claim}: **{row.verdict}**",
            "",
            row.statement,
            "",
            f"- ours: {row.evidence}",
            *([f"- ours, each seed alone: {row.per_seed}"] if isinstance(getattr(row, "per_seed", ""), str)
              and row.per_seed else []),
            f"- the authors' numbers: {row.reference_verdict} ({row.reference_evidence})",
            "",
        ]
    return "\n".join(lines)


def claims_markdown(frame: pd.DataFrame) -> str:
    """claims.md: the compact table first, then the details."""
    return "\n".join(["# The paper's claims, checked", "", compact_markdown(frame), "## Details", "",
                      claims_details_markdown(frame)])
