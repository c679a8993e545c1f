"""Does bf16 autocast change what MSP learns? The same runs (seed, data stream) trained in
float32 and in bf16 autocast, compared with the seed-to-seed spread of float32.

    python bench/numerics.py --seeds 1 2 3 --iterations 300 --out numerics/      # ~20 min, 1 thread
    python bench/numerics.py --quick                                             # smoke test, a minute

CPU bf16 autocast (avx512_bf16 / AMX) runs the networks' convolutions and linear layers in
bf16 as CUDA autocast does; the latent dynamics stay float32 in both (msp.dynamics). Each
run is Sequential MNIST (embedded source, offline) with MSP (lstsq) at a reduced scale
(k = 0.5: 16-128 channels, dim_m 64, dim_a 16; batch 16, lr 1e-3), evaluated in float32 on the same held-out
sequences: prediction error per horizon (the protocol's 18 horizons) and the equivariance
errors L^p / L^p_equiv at T_p = 1. The two precisions of a seed run back to back, so a
disturbance of the machine (other jobs) hits both alike; timings are printed, never decided on.

Decision rule (docs: README 'Numerics'): bf16 is inside the spread when, for every
compared number, |mean over seeds of (bf16 - float32)| <= the std over seeds (ddof = 1) of
the float32 runs.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from msp import eval_protocols as ep
from msp.checkpoint import load_checkpoint
from msp.train import train


def run_config(seed: int, amp: str, iterations: int, quick: bool) -> dict:
    return {
        "dataset": {"name": "mnist", "source": "embedded"},
        "model": {"name": "lstsq", "T_cond": 2, "T_pred": 1, "k": 0.25 if quick else 0.5,
                  "dim_m": 16 if quick else 64, "dim_a": 16},
        "train": {"iterations": iterations, "batch_size": 16, "lr": 1e-3, "lr_decay_iter": int(0.8 * iterations),
                  "seed": seed, "device": "cpu", "amp": amp, "log_every": max(iterations // 20, 1),
                  "checkpoint_every": iterations, "keep_checkpoints": 1},
    }


def evaluate(model_path: Path, n_batches: int, batch_size: int = 32) -> dict:
    """Float32 evaluation on the protocol's fixed sequences (same for every run)."""
    model, cfg = load_checkpoint(model_path)
    model.eval()
    protocol = ep.protocol_for("mnist")
    torch.manual_seed(0)
    gen = ep.make_generator(cfg, split="test", T=protocol.prediction_T, seed=1, device=torch.device("cpu"))
    pred = ep.prediction_errors(model, gen, protocol.T_cond, batch_size, n_batches).mean(axis=0)
    gen = ep.make_generator(cfg, split="test", T=protocol.equivariance_T, seed=1, device=torch.device("cpu"),
                            shared_transition=True)
    Lp, Lp_equiv = ep.equivariance_errors(model, gen, protocol.T_cond, batch_size, n_batches)
    return {"pred_T1": float(pred[0]), "pred_T5": float(pred[4]), "pred_last": float(pred[-1]),
            "Lp_T1": float(Lp.mean(axis=0)[0]), "Lp_equiv_T1": float(Lp_equiv.mean(axis=0)[0])}


def trivial_baselines(cfg: dict, n_batches: int, batch_size: int = 32) -> dict:
    """Trivial baselines on the same sequences: repeat the last conditioning frame, or predict
    the mean frame of 2048 training sequences. -> {name: {quantity: error}}."""
    protocol = ep.protocol_for("mnist")
    train_gen = ep.make_generator(cfg, split="train", T=protocol.prediction_T, seed=2, device=torch.device("cpu"))
    mean_frame = torch.cat([train_gen.sample(256) for _ in range(8)]).mean(dim=(0, 1))  # (C, H, W)
    gen = ep.make_generator(cfg, split="test", T=protocol.prediction_T, seed=1, device=torch.device("cpu"))
    copy, mean = [], []
    for _ in range(n_batches):
        xs = gen.sample(batch_size)
        future = xs[:, protocol.T_cond :]
        last = xs[:, protocol.T_cond - 1 : protocol.T_cond]
        copy.append(ep.per_frame_sse(last.expand_as(future), future))
        mean.append(ep.per_frame_sse(mean_frame.expand_as(future), future))
    out = {}
    for name, errors in (("copy last frame", copy), ("mean training frame", mean)):
        e = torch.cat(errors).mean(dim=0)
        out[name] = {"pred_T1": float(e[0]), "pred_T5": float(e[4]), "pred_last": float(e[-1])}
    return out


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--eval-batches", type=int, default=8, help="evaluation batches of 32 sequences")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("numerics"))
    parser.add_argument("--quick", action="store_true", help="tiny model, 30 steps: a smoke test")
    parser.add_argument("--table-only", action="store_true", help="print the table of the runs already in --out")
    args = parser.parse_args(argv)
    if args.table_only:
        results = {}
        for seed in args.seeds:
            for amp in ("off", "bf16"):
                saved = json.loads((args.out / f"seed{seed}_{amp}" / "numerics.json").read_text())
                results[(seed, amp)] = {**saved["result"], "curve": [loss for _, loss in saved["loss_curve"]]}
        print_table(results, args.seeds)
        return
    if args.quick:
        args.iterations, args.eval_batches, args.seeds = 30, 1, args.seeds[:2]
    torch.set_num_threads(args.threads)

    results = {}
    for seed in args.seeds:
        for amp in ("off", "bf16"):  # alternate: both precisions of a seed see the same machine load
            run_dir = args.out / f"seed{seed}_{amp}"
            t0 = time.perf_counter()
            path = train(run_config(seed, amp, args.iterations, args.quick), run_dir, progress=False)
            seconds = time.perf_counter() - t0
            res = evaluate(path, args.eval_batches)
            curve = loss_curve(run_dir)
            res["final_loss"] = float(np.mean([loss for _, loss in curve[-3:]]))  # last 3 log intervals
            res["seconds"] = seconds
            (run_dir / "numerics.json").write_text(json.dumps({"result": res, "loss_curve": curve}))
            results[(seed, amp)] = {**res, "curve": [loss for _, loss in curve]}
            print(f"seed {seed} {amp:>4}: " + " ".join(f"{k} {v:.4g}" for k, v in res.items()), flush=True)

    for name, values in trivial_baselines(run_config(args.seeds[0], "off", args.iterations, args.quick),
                                          args.eval_batches).items():
        print(f"{name} baseline: " + " ".join(f"{k} {v:.4g}" for k, v in values.items()))
    print_table(results, args.seeds)


def print_table(results, seeds):
    keys = ["final_loss", "pred_T1", "pred_T5", "pred_last", "Lp_T1", "Lp_equiv_T1"]
    print("\n| quantity | float32 mean ± std (seeds) | bf16 mean ± std | mean paired diff (bf16 - fp32) "
          "| max paired abs diff | inside spread |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for key in keys:
        fp = np.array([results[(s, "off")][key] for s in seeds])
        bf = np.array([results[(s, "bf16")][key] for s in seeds])
        spread = fp.std(ddof=1) if len(seeds) > 1 else float("nan")
        diff = (bf - fp).mean()
        inside = bool(abs(diff) <= spread)
        verdicts.append(inside)
        print(f"| {key} | {fp.mean():.3f} ± {spread:.3f} | {bf.mean():.3f} ± {bf.std(ddof=1) if len(seeds) > 1 else float('nan'):.3f} "
              f"| {diff:+.3f} | {np.abs(bf - fp).max():.3f} | {'yes' if inside else 'NO'} |")
    print("(std over seeds with ddof = 1)")
    fp_curves = np.array([results[(s, "off")]["curve"] for s in seeds])  # (seeds, logged steps)
    bf_curves = np.array([results[(s, "bf16")]["curve"] for s in seeds])
    if len(seeds) > 1:
        print(f"loss curves, averaged over the {fp_curves.shape[1]} logged steps: |mean paired diff| "
              f"{np.abs((bf_curves - fp_curves).mean(axis=0)).mean():.3f}, float32 seed std "
              f"{fp_curves.std(axis=0, ddof=1).mean():.3f}")
    t_fp = np.median([results[(s, "off")]["seconds"] for s in seeds])
    t_bf = np.median([results[(s, "bf16")]["seconds"] for s in seeds])
    print(f"\nmedian training seconds (disturbed by other jobs): float32 {t_fp:.0f}, bf16 {t_bf:.0f}")
    print("decision: bf16 is", "inside" if all(verdicts) else "OUTSIDE", "the float32 seed spread")


if __name__ == "__main__":
    main()
