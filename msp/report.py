"""`msp report ...`: gather evaluations, write tables, check the paper's claims, draw figures.

Each action is one thin step of the workflow (rules/evaluate.smk, rules/report.smk):
  gather   per-run evaluation files of one dataset -> results/{dataset}/{kind}_runs.csv
  tables   gathered CSVs + reference numbers -> results/tables/{kind}.{csv,md,tex}
  claims   gathered CSVs -> results/tables/claims.{csv,md} (ours and the authors' verdicts) and
           claims_summary.csv (claim | verdict | our deciding number | the authors' number)
  figure   one figure of the authors' set, or the training curves -> PNG and/or PDF
  summary  claims table, figures, tables, the machines, claim details -> one Markdown page
           (results/report.md)
"""

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from msp import claims as claims_mod
from msp import figures, io, tables
from msp.checkpoint import recorded_machines
from msp.device import describe_machine
from msp.runs import BASELINE_LABELS

FIGURES = ("comp_error", "equiv_error", "sbd", "sbd_components", "disentangle", "gen_images", "training_curves")


def _labels(pairs) -> dict:
    """['lstsq=MSP', ...] -> {'lstsq': 'MSP', ...}, plus the trivial baselines' labels."""
    out = dict(BASELINE_LABELS)
    for pair in pairs or []:
        name, sep, label = pair.partition("=")
        if not sep:
            raise SystemExit(f"--labels: expected NAME=LABEL, got {pair!r}")
        out[name] = label
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)

    p = sub.add_parser("gather", help="per-run evaluation files -> one long CSV")
    p.add_argument("--kind", required=True, choices=["prediction", "equivariance", "sbd"])
    p.add_argument("--dataset", help="check that every input belongs to this dataset")
    p.add_argument("--inputs", nargs="+", required=True,
                   help="files under results/DATASET/MODEL/seedN/eval/ (sbd: the sbd.json files)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("tables", help="mean +- std tables with the reference numbers")
    p.add_argument("--inputs", nargs="+", required=True, help="gathered CSVs (msp report gather)")
    p.add_argument("--reference", default=str(tables.REFERENCE_CSV))
    p.add_argument("--labels", nargs="*", default=[], help="NAME=LABEL display names of the models")
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("claims", help="check the paper's five qualitative claims")
    p.add_argument("--inputs", nargs="+", required=True, help="gathered CSVs (msp report gather)")
    p.add_argument("--reference", default=str(tables.REFERENCE_CSV))
    p.add_argument("--labels", nargs="*", default=[])
    p.add_argument("--accl-train-horizon", type=int, default=5,
                   help="frames predicted in training on mnist_accl (longer horizons extrapolate)")
    p.add_argument("--out", nargs="+", required=True, help="paths ending in .csv and/or .md")
    p.add_argument("--compact", default=None,
                   help="also write the four-column table (claim, verdict, our deciding number, the authors' number) "
                        "to this CSV")

    p = sub.add_parser("figure", help="one figure of the authors' set")
    p.add_argument("name", choices=FIGURES)
    p.add_argument("--inputs", nargs="+", required=True,
                   help="comp_error/equiv_error: gathered CSV; sbd*/disentangle: sbd_maps.npz sbd.json; "
                        "gen_images: samples.npz; training_curves: each run's metrics.jsonl (or model.pt)")
    p.add_argument("--labels", nargs="*", default=[])
    p.add_argument("--title", default="")
    p.add_argument("--reference", default=str(tables.REFERENCE_CSV),
                   help="comp_error/equiv_error: the authors' curves, drawn faded behind ours")
    p.add_argument("--no-reference", action="store_true", help="draw our curves only")
    p.add_argument("--out", nargs="+", required=True, help="paths ending in .png and/or .pdf")

    p = sub.add_parser("summary", help="one Markdown page with every table, claim and figure")
    p.add_argument("--tables", nargs="*", default=[], help="results/tables/*.md (others ignored)")
    p.add_argument("--claims", required=True, help="claims.csv (msp report claims), or a claims.md shown as it is")
    p.add_argument("--figures", nargs="*", default=[], help="figure files (PNG shown, others ignored)")
    p.add_argument("--runs", nargs="*", default=[],
                   help="the runs' model.pt (results/DATASET/MODEL/seedN/model.pt): which machine trained which")
    p.add_argument("--out", required=True)


def _gather(args) -> None:
    frame = tables.gather_runs(args.kind, args.inputs)
    if args.dataset and set(frame.dataset) != {args.dataset}:
        raise SystemExit(f"msp report gather: inputs belong to {sorted(set(frame.dataset))}, not {args.dataset!r}")
    io.write_text(args.out, frame.to_csv(index=False))
    print(f"{args.out}: {len(frame)} rows from {len(args.inputs)} runs")


def _tables(args) -> None:
    runs = tables.read_runs(args.inputs)
    for path in tables.make_tables(runs, tables.read_reference(args.reference), _labels(args.labels), args.out_dir):
        print(path)


def _claims(args) -> None:
    runs = tables.read_runs(args.inputs)
    labels = _labels(args.labels)
    ours = claims_mod.check_claims(tables.summarize(runs), runs.get("sbd"), labels, args.accl_train_horizon)
    theirs = claims_mod.check_claims(tables.read_reference(args.reference), None, labels, 5)
    per_seed = claims_mod.per_seed_verdicts(runs, labels, args.accl_train_horizon)
    frame = claims_mod.claims_frame(ours, theirs, per_seed)
    for path in args.out:
        if path.endswith(".csv"):
            io.write_text(path, frame.to_csv(index=False))
        elif path.endswith(".md"):
            io.write_text(path, claims_mod.claims_markdown(frame))
        else:
            raise SystemExit(f"msp report claims: --out {path}: use a .csv or .md file name")
    if args.compact:
        io.write_csv(args.compact, claims_mod.compact_frame(frame), index=False)
    for claim in ours:
        seeds = claims_mod.per_seed_text(per_seed.get(claim.number, {}))
        print(f"claim {claim.number}: {claim.verdict}: {claim.evidence}" + (f" [{seeds}]" if seeds else ""))


def _figure(args) -> None:
    bad = [p for p in args.out if Path(p).suffix not in (".png", ".pdf")]
    if bad:
        raise SystemExit(f"msp report figure: --out {bad}: use .png or .pdf file names")
    labels = _labels(args.labels)
    if args.name in ("comp_error", "equiv_error"):
        runs = pd.concat([pd.read_csv(p) for p in args.inputs], ignore_index=True)
        what = {"comp_error": "prediction error", "equiv_error": "equivariance error"}[args.name]
        title = args.title or f"{what}: {', '.join(sorted(runs.dataset.unique()))}"
        reference = None if args.no_reference else tables.read_reference(args.reference)
        fig = getattr(figures, args.name)(runs, labels, title, reference)
    elif args.name == "training_curves":
        logs = figures.training_logs(args.inputs)
        title = args.title or f"training loss: {', '.join(sorted(logs.dataset.unique())) or 'no runs'}"
        fig = figures.training_curves(logs, labels, title)
    elif args.name == "gen_images":
        run = tables.run_of(args.inputs[0])
        title = args.title or f"{run['dataset']}: {labels.get(run['model'], run['model'])}, seed {run['seed']}"
        fig = figures.gen_images(np.load(args.inputs[0]), title)
    else:
        maps_path = next((p for p in args.inputs if p.endswith(".npz")), None)
        info_path = next((p for p in args.inputs if p.endswith(".json")), None)
        if not maps_path or not info_path:
            raise SystemExit(f"msp report figure {args.name}: give --inputs sbd_maps.npz sbd.json")
        maps, info = figures.load_sbd(maps_path, info_path)
        run = tables.run_of(maps_path)
        what = {"sbd": "block diagonalization", "sbd_components": "per-factor transitions (after SBD)",
                "disentangle": "roll-outs with one block's transition"}[args.name]
        title = args.title or f"{what}: {run['dataset']}, {labels.get(run['model'], run['model'])}, seed {run['seed']}"
        fig = getattr(figures, args.name)(maps, info, title)
    figures.save(fig, args.out)
    print(" ".join(args.out))


def machines_markdown(model_paths) -> str:
    """A table: each machine that trained runs (msp.device.describe_machine) and those runs.
    A run resumed on another machine is listed under each of them."""
    by_machine = {}
    for path in model_paths:
        run = "/".join(Path(path).parts[-4:-1])  # DATASET/MODEL/seedN
        names = [describe_machine(m) for m in recorded_machines(path)] or ["not recorded (an older or imported model)"]
        for name in dict.fromkeys(names):
            by_machine.setdefault(name, []).append(run)
    rows = [f"| {name} | {len(runs)} | {', '.join(runs)} |" for name, runs in by_machine.items()]
    return "\n".join(["The last digits depend on the machine: on the CPU, oneDNN picks its convolution kernels by "
                      "the instruction set (docs/cpu_scale.md, 'The same runs on another CPU').", "",
                      "| machine | runs | which |", "|---|---|---|", *rows])


def _summary(args) -> None:
    """report.md: one compact claims table, the figures, the tables, the machines (--runs), then
    the claims' details.
    --claims is claims.csv (msp report claims); a claims.md is placed at the top as it is."""
    out_dir = Path(args.out).parent
    parts = ["# msp-pipeline results", ""]
    details = None
    if args.claims.endswith(".csv"):
        frame = pd.read_csv(args.claims, keep_default_na=False)
        parts += ["## The paper's claims", "", claims_mod.compact_markdown(frame), ""]
        details = claims_mod.claims_details_markdown(frame)
    else:
        parts += [Path(args.claims).read_text(), ""]
    baselines = [path for path in args.tables if Path(path).name == "baselines.md"]
    if baselines:
        parts += ["## Read every error against the trivial baselines", "", Path(baselines[0]).read_text(), ""]
    parts += ["## Figures", ""]
    for path in args.figures:
        if path.endswith(".png"):
            rel = os.path.relpath(path, out_dir)
            parts += [f"### {Path(path).stem}", "", f"![{Path(path).stem}]({rel})", ""]
    parts += ["## Tables", ""]
    for path in args.tables:
        if path.endswith(".md") and path not in baselines:
            parts += [f"### {Path(path).stem}", "", Path(path).read_text(), ""]
    if args.runs:
        parts += ["## Where the runs were trained", "", machines_markdown(args.runs), ""]
    if details:
        parts += ["## The claims in detail", "", details]
    io.write_text(args.out, "\n".join(parts))
    print(args.out)


def main(args) -> int:
    {"gather": _gather, "tables": _tables, "claims": _claims, "figure": _figure, "summary": _summary}[args.action](args)
    return 0
