"""Claim 2 at the paper's width in a fixed wall-clock budget: the prepared device check.

    python bench/claim2_gpu.py --out results/claim2_gpu --device cuda --threads 4   # a GPU, 5 minutes of training
    python bench/claim2_gpu.py --out /tmp/claim2_quick --quick --device cpu          # CPU smoke test, ~1 minute

Where the project is not installed, run it from the repository root with PYTHONPATH=. (it needs
torch, pandas, pyyaml and matplotlib; not Snakemake). The whole run takes the training budget
plus about two minutes (data, step timing, evaluation of five predictors on the whole test set).

Claim 2 (docs/evaluation.md, 'Claims') is the one claim no CPU-scale run here made hold
(docs/cpu_scale.md): does it hold at the paper's width (k 2, dim_m 256, batch 32) after as
many steps as one short GPU session buys? Without Snakemake (the GPU machines lent here
have none), this runs the workflow's own commands for the four models claim 2 compares
(MSP, MSP with fixed blocks, Neural M*, Neural transition) on one seed:
1. prepares the embedded Sequential-MNIST data (no network needed);
2. times one training step of each model (`msp bench`) and sizes the iterations so that the
   four trainings, run at once on the one device, fit the budget (the budget over the sum of
   the step times: a bound that holds even if the device runs the steps one after another);
3. trains them concurrently (`msp train`, the run configs of the paper's mnist settings with
   those iterations, lr / 3 at 80%) and evaluates each on the paper's protocol (`msp evaluate
   prediction --per-sequence`, the whole test set), with the mean training frame;
4. prints T_p = 1 and T_p = 18, the claim checker's verdict on claim 2 (msp.claims, unchanged)
   and the paired differences at T_p = 18 (docs/evaluation.md, 'Paired comparison of two
   models'), and writes them to OUT/claim2.json.
--quick shrinks everything (width, batch, budget, test sequences) to check the script on a CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from msp import claims, eval_protocols as ep, io, runs, tables
from msp.device import describe_machine, machine_facts, resolve_device
from msp.evaluate import load_per_sequence

CLAIM2_MODELS = ("lstsq", "lstsq_multi", "neuralM", "neural_trans")
REPO = Path(__file__).resolve().parents[1]


def plan_iterations(step_seconds: dict, budget_s: float, round_to: int = 100) -> int:
    """{model: s/step} and a wall budget -> iterations each model trains when all run at once,
    rounded down to round_to (at least round_to): budget / sum of the step times."""
    per_round = sum(step_seconds.values())
    return max(round_to, int(budget_s / per_round) // round_to * round_to)


def claim2_config(paper: dict, *, data_root: str, iterations: int, device: str, quick: bool) -> dict:
    """The paper's workflow config reduced to mnist's claim-2 models on the embedded digits,
    with `iterations` steps (lr / 3 at 80%, as the paper)."""
    config = json.loads(json.dumps(paper))  # a deep copy
    config["data"].update(root=data_root, source="embedded")
    config["train"].update(device=device, log_every=max(1, iterations // 50))
    config["train"]["checkpoint_every"] = iterations
    mnist = config["datasets"]["mnist"]
    mnist.update(iterations=iterations, lr_decay_iter=int(0.8 * iterations))
    mnist["models"] = {m: {} for m in CLAIM2_MODELS}
    if quick:  # tiny networks: a smoke test of the script, not of the science
        mnist["network"] = {**mnist["network"], "k": 0.125, "dim_m": 8, "dim_a": 8}
        config["train"]["batch_size"] = 4
    config["datasets"] = {"mnist": mnist}
    return config


def run_msp(*args, log: Path, background: bool = False, threads: int | None = None):
    """Run `python -m msp ARGS` from the repository, as the workflow's rules do, output to log."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-m", "msp", *map(str, args)]
    with open(log, "w") as stream:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT)
    if not background and process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed: see {log}")
    return process


def run_together(jobs: dict, threads: int | None = None) -> None:
    """{name: (msp args, log)} started at once (they share the device), then waited for."""
    processes = {name: run_msp(*args, log=log, background=True, threads=threads) for name, (args, log) in jobs.items()}
    failed = [f"{name} (see {jobs[name][1]})" for name, process in processes.items() if process.wait() != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


def main(args) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget_s = 60 * (args.budget_minutes if args.budget_minutes is not None else (0.25 if args.quick else 5))
    paper = runs.load_workflow_config(REPO / "configs" / "config.yaml")
    data_root = str(out / "data")
    run_msp("data", "download", "--dataset", "mnist", "--root", data_root, "--source", "embedded", log=out / "data.log")
    run_msp("data", "prepare", "--dataset", "mnist", "--root", data_root, "--source", "embedded", log=out / "prepare.log")

    # 1. the step time of each model, at the settings the trainings will use
    probe = claim2_config(paper, data_root=data_root, iterations=100, device=args.device, quick=args.quick)
    io.write_yaml(out / "probe.yaml", probe)
    run_msp("bench", "--workflow-config", out / "probe.yaml", "--datasets", "mnist", "--models", *CLAIM2_MODELS,
        "--device", args.device, "--steps", 3 if args.quick else 20, "--warmup", 1 if args.quick else 5,
        "--data-root", data_root, "--json", out / "bench.json", log=out / "bench.log")
    timed = json.loads((out / "bench.json").read_text())["results"]
    step_seconds = {r["model"]: r["step_s"] for r in timed}
    iterations = plan_iterations(step_seconds, budget_s, round_to=10 if args.quick else 100)
    config = claim2_config(paper, data_root=data_root, iterations=iterations, device=args.device, quick=args.quick)
    io.write_yaml(out / "config.yaml", config)
    print(f"step times {json.dumps({m: round(s, 4) for m, s in step_seconds.items()})} s: "
          f"{iterations} iterations each in a budget of {budget_s:.0f} s", flush=True)

    # 2. the four trainings at once
    started, run_dirs = time.time(), {}
    for model in CLAIM2_MODELS:
        run_dirs[model] = run = out / "mnist" / model / f"seed{args.seed}"
        run.mkdir(parents=True, exist_ok=True)
        io.write_yaml(run / "run.yaml", runs.run_config(config, "mnist", model, args.seed))
    run_together({m: (["train", "--config", run / "run.yaml", "--out", run, "--no-progress"], run / "train.log")
                  for m, run in run_dirs.items()}, threads=args.threads)
    train_s = time.time() - started
    print(f"trained in {train_s:.0f} s", flush=True)

    # 3. the paper's prediction protocol, each sequence kept for the paired comparison
    evaluation = ["--device", args.device, "--root", data_root] + (["--n-batches", "2", "--batch-size", "8"]
                                                                    if args.quick else [])
    run_dirs["baseline_mean_frame"] = out / "mnist" / "baseline_mean_frame"
    run_dirs["baseline_mean_frame"].mkdir(parents=True, exist_ok=True)
    predictor = {m: ["--checkpoint", run / "model.pt"] for m, run in run_dirs.items()}
    predictor["baseline_mean_frame"] = ["--baseline", "baseline_mean_frame", "--dataset", "mnist", "--source", "embedded"]
    run_together({m: (["evaluate", "prediction", *predictor[m], "--out", run / "prediction.csv",
                        "--per-sequence", run / "prediction.npz", *evaluation], run / "prediction.log")
                  for m, run in run_dirs.items()}, threads=args.threads)
    per_sequence = {m: run / "prediction.npz" for m, run in run_dirs.items()}
    frames = [pd.read_csv(run / "prediction.csv").assign(model=m, seed=pd.NA if m == "baseline_mean_frame" else args.seed)
              for m, run in run_dirs.items()]

    # 4. the checker's verdict on claim 2, and how far beyond the noise its last horizon is
    prediction = pd.concat(frames, ignore_index=True).assign(dataset="mnist", evaluation="prediction")
    prediction["seed"] = prediction["seed"].astype("Int64")
    labels = {m: spec["label"] for m, spec in paper["models"].items()}
    claim = next(c for c in claims.check_claims(tables.summarize({"prediction": prediction}), None, labels)
                 if c.number == 2)  # the checker drops the baseline's rows itself
    last = int(prediction.horizon.max())
    at = prediction.pivot_table(index="model", columns="horizon", values="mse")[[1, last]]
    best_msp = min(("lstsq", "lstsq_multi"), key=lambda m: at.loc[m, last])
    paired = {}
    for other in ("neuralM", "neural_trans"):
        table = ep.paired_difference(load_per_sequence(per_sequence[best_msp])[0],
                                     load_per_sequence(per_sequence[other])[0])
        row = table.iloc[-1]
        paired[other] = {k: float(row[k]) for k in ("diff", "diff_sem", "low95", "high95", "share_a_lower")}
    machine = machine_facts(resolve_device(args.device))
    result = {"machine": machine, "quick": args.quick, "budget_s": budget_s, "iterations": iterations,
              "step_seconds": step_seconds, "train_seconds": train_s, "claim2": claim.verdict,
              "claim2_details": claim.details, "errors": {m: {1: float(at.loc[m, 1]), last: float(at.loc[m, last])}
                                                           for m in at.index},
              "paired_last_horizon": {"msp": best_msp, "vs": paired}}
    io.write_json(out / "claim2.json", result)
    print(f"{describe_machine(machine)}\n{at.round(2).to_string()}")
    print(f"claim 2: {claim.verdict}; " + "; ".join(claim.details))
    for other, p in paired.items():
        print(f"T_p = {last}, paired {other} - {best_msp}: {p['diff']:+.2f} [{p['low95']:+.2f}, {p['high95']:+.2f}], "
              f"{best_msp} lower on {p['share_a_lower']:.0%} of the sequences")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (data, runs, claim2.json)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="wall minutes for the four trainings together (default 5; --quick 0.25)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per training (OMP_NUM_THREADS)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and budget: a CPU smoke test")
    sys.exit(main(parser.parse_args()))
