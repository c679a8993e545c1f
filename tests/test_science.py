"""The science test: a small MSP (k 0.5, dim_m 64, batch 16, 1,500 steps, the first 500 with a
reconstruction warm-up; the demo's MSP recipe) trained on procedural rotating and recolouring
digits (the embedded Sequential-MNIST stand-in with translation switched off) predicts far
better than both trivial baselines (copy the last frame, the mean training frame;
msp.trivial_baselines) at every horizon 1..8. Training, evaluation and SBD take about 140 s
on an idle 2-core machine (`pytest tests/test_science.py --durations=3`).

What it has learned: the colour AND the rotation. Its predictions (looked at) are blurry digits
that turn and change hue with the truth for several frames. The T_p = 1 margin (below half the
better baseline) is what tells this from the hue-only plateau where MSP sits without the
warm-up (a rotation-symmetric disc of the right hue: 37-40 at T_p = 1, 0.58-0.62 of the better
baseline, docs/cpu_scale.md), so the test fails if the rotation is no longer learned.

Whether its fitted transitions split into blocks is asserted too, as a strict xfail on the
seed the test trains: SBD finds one block on seeds 1, 2 and 3 (eigengaps 1.3, 5.9, 5.7 against
the threshold 10). Before the generator fix of 2026-12 changed the random streams, seed 3 split
(12 blocks, gap 11.8), seeds 1 and 2 did not. The xfail fails the day seed 1 splits: then turn
it into a plain assertion. The structure is weak at this scale, not hidden from the block
finder: the transitions, even the rotation-only ones, do not commute cleanly (no clear step in
the commutator spectrum, with more transitions or any weighting; dim_a 8 and T_pred 2 did not
help; docs/cpu_scale.md, "The science test"). Nor does training four times longer (6,000 steps:
still one block, gaps below 5), and the authors' SBD procedure finds blocks at 1,500 steps on seed 3
only (with shared blocks), without shared blocks on seed 3 from 3,000 steps and on seed 1 from
4,500, on seed 2 at no step up to 6,000.

Margins come from measured runs (seeds 1-3; numbers in MARGIN_* below and docs/cpu_scale.md,
"The science test"), well inside the spread of those runs: the test is seeded but not knife-edge.
The sweep behind them: `python tests/test_science.py OUT_DIR 1 2 3`.
The digits depend on the CPU (oneDNN's kernels), by less than a change of seed: on a second
CPU, with its default and with AVX2 kernels (six runs), T_p = 1 gave 16.7-17.4 (0.26-0.27 of the
better baseline), the largest ratio 0.64-0.71, and one block (eigengaps 1.4-9.1; docs/cpu_scale.md,
"The same runs on another CPU").
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from msp import eval_protocols as ep
from msp import sbd
from msp import trivial_baselines as tb
from msp.checkpoint import load_checkpoint
from msp.train import train

ROTATE_RECOLOUR = {"max_pos": [0.0, 0.0]}  # digit 4 rotating and changing hue in place; no translation
ITERATIONS = 1500  # the demo's MSP recipe (configs/demo.yaml): lr 3e-4, decay at 80%
WARMUP = 500  # reconstruction warm-up steps (docs/method.md, 'Training'); without it: the hue-only plateau
DIM_A = 16  # latent transition size a (M is a x a); 8 tried: docs/cpu_scale.md, "The science test"
T_PRED = 1  # predicted frames per training sequence; 2 tried: docs/cpu_scale.md, "The science test"
EVAL_T = 10  # 2 conditioning frames, horizons 1..8
EVAL_BATCHES, EVAL_BATCH = 8, 16  # 128 test sequences

# Assertions, each from the seed sweep in the module docstring (numbers: docs/cpu_scale.md, "The science test").
MARGIN_T1 = 0.5  # at T_p = 1 MSP is below half the better baseline (measured 0.26 on seeds 1-3; hue only: 0.58-0.62)
MARGIN_ALL = 0.85  # at every horizon 1..8 below 85% of it (measured at most 0.64-0.71, at T_p = 8)
MIN_BLOCKS = 2  # SBD (msp.sbd.run_sbd, the project's block finder) finds at least two blocks


def run_config(seed: int, data_root, iterations: int = ITERATIONS, checkpoint_every: int | None = None) -> dict:
    """The test's recipe; the sweep may train longer (decay still at 80%) and keep every checkpoint."""
    every = checkpoint_every or iterations
    return {
        "dataset": {"name": "mnist", "root": str(data_root), "source": "embedded", "options": dict(ROTATE_RECOLOUR)},
        "model": {"name": "lstsq", "T_cond": 2, "T_pred": T_PRED, "k": 0.5, "dim_m": 64, "dim_a": DIM_A,
                  "n_blocks": 3, "bottom_width": 4},
        "train": {"iterations": iterations, "batch_size": 16, "lr": 3e-4, "lr_decay_iter": int(0.8 * iterations),
                  "reconst_iter": WARMUP, "seed": seed, "checkpoint_every": every,
                  "keep_checkpoints": max(2, -(-iterations // every)), "log_every": 50, "device": "cpu"},
    }


def measure(seed: int, out_dir) -> dict:
    """Train one seed; -> per-horizon errors of MSP and both baselines, and the SBD summary."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return measure_checkpoint(train(run_config(seed, Path(out_dir) / "data"), Path(out_dir) / "run", progress=False))


def measure_checkpoint(path, sbd_methods=("algebraic",)) -> dict:
    """One trained model -> errors per horizon (MSP, copy last, mean frame), the commutant's gap and,
    per SBD method, its blocks and scores (keys of the first method plain, of the others 'METHOD_...')."""
    model, config = load_checkpoint(path, map_location="cpu")
    model.eval()

    def make_generator(*, split="test", T=EVAL_T, seed=1, **options):
        return ep.make_generator(config, split=split, T=T, seed=seed, device="cpu", **options)

    def errors(predictor):
        return ep.prediction_errors(predictor, make_generator(), 2, EVAL_BATCH, EVAL_BATCHES).mean(axis=0)

    mean = tb.mean_frame(make_generator(split="train", seed=2), n_sequences=256)
    result = {"msp": errors(model), "copy_last": errors(tb.CopyLast(2)), "mean_frame": errors(tb.MeanFrame(2, mean))}
    for i, method in enumerate(sbd_methods):
        summary, _ = sbd.run_sbd(model, make_generator, sbd.SBDSettings(T=EVAL_T, batch_size=32, n_batches=8,
                                                                        component_batches=3, method=method))
        prefix = "" if i == 0 else f"{method}_"
        result["gap"] = float(summary["gap"])  # the commutant's, the same whatever the method
        result.update({prefix + "n_blocks": int(summary["n_blocks"]), prefix + "blocks": summary["blocks"],
                       prefix + "factor_blocks": summary["factor_blocks"],
                       prefix + "shared_blocks": summary["shared_blocks"],
                       prefix + "offblock_energy_after": float(summary["offblock_energy_after"]),
                       prefix + "offblock_energy_chance": float(summary["offblock_energy_chance"])})
    return result


@pytest.fixture(scope="module")
def seed1(tmp_path_factory):
    return measure(1, tmp_path_factory.mktemp("science"))


@pytest.mark.slow
def test_msp_beats_both_trivial_baselines(seed1):
    r = seed1
    best = np.minimum(r["copy_last"], r["mean_frame"])  # (horizons,) the better baseline per horizon
    assert r["msp"][0] < MARGIN_T1 * best[0], (r["msp"][0], r["copy_last"][0], r["mean_frame"][0])
    ratio = r["msp"] / best
    assert (ratio < MARGIN_ALL).all(), f"MSP / better baseline per horizon: {np.round(ratio, 2)}"


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: at this scale SBD finds one block on seeds 1, 2 and 3 "
                                       "(eigengaps 1.3, 5.9, 5.7 < 10); docs/cpu_scale.md, 'The science test'")
def test_fitted_transitions_split_into_blocks(seed1):
    assert seed1["n_blocks"] >= MIN_BLOCKS, seed1["blocks"]


if __name__ == "__main__":
    # The seed sweep behind the margins: python tests/test_science.py OUT_DIR SEED...
    # Trained longer, every checkpoint measured, with the authors' SBD too (docs/cpu_scale.md, "The science
    # test"): python tests/test_science.py OUT_DIR 1 2 3 --iterations 6000 --checkpoint-every 1500 --authors-sbd --threads 1
    import argparse
    import time

    parser = argparse.ArgumentParser(description="seed sweep of the science test's recipe")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("seeds", type=int, nargs="*", default=[1])
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--checkpoint-every", type=int, default=None, help="measure every checkpoint, not only the last")
    parser.add_argument("--authors-sbd", action="store_true", help="also the authors' SBD procedure (--method authors)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the test's, at most 2; the thread count changes the numbers)")
    args = parser.parse_args()
    methods = ("algebraic", "authors") if args.authors_sbd else ("algebraic",)

    def blocks(r, prefix=""):
        return (f"{r[prefix + 'n_blocks']} (sizes {[len(b) for b in r[prefix + 'blocks']]}, "
                f"owned {r[prefix + 'factor_blocks']}, shared {r[prefix + 'shared_blocks']}, off-block "
                f"{r[prefix + 'offblock_energy_after']:.3f} vs chance {r[prefix + 'offblock_energy_chance']:.3f})")

    torch.set_num_threads(args.threads or max(1, min(2, torch.get_num_threads())))
    for seed in args.seeds:
        start, out = time.time(), args.out_dir / f"seed{seed}"
        final = train(run_config(seed, out / "data", args.iterations, args.checkpoint_every), out / "run", progress=False)
        paths = sorted((out / "run" / "checkpoints").glob("step_*.pt")) if args.checkpoint_every else [final]
        for path in paths:
            r = measure_checkpoint(path, methods)
            best = np.minimum(r["copy_last"], r["mean_frame"])
            row = " ".join(f"T{h}: {r['msp'][h - 1]:.1f}/{r['copy_last'][h - 1]:.1f}/{r['mean_frame'][h - 1]:.1f}"
                           for h in range(1, EVAL_T - 1))
            print(f"seed {seed} {path.name} ({time.time() - start:.0f}s) msp/copy/mean {row} | MSP/better baseline "
                  f"T1 {r['msp'][0] / best[0]:.2f}, max {(r['msp'] / best).max():.2f} | gap {r['gap']:.1f}, blocks {blocks(r)}"
                  + (f" | authors' SBD: blocks {blocks(r, 'authors_')}" if args.authors_sbd else ""), flush=True)
