"""Time simultaneous block diagonalization on the planted family of docs/sbd.md, one CPU thread.

    python bench/bench_sbd.py                    # algebraic (median of 5) vs the authors' optimiser
    python bench/bench_sbd.py --a 32 --skip-authors

The family: M = P B P^-1, B = seven 2x2 rotations at distinct frequencies + 2 identity dims
(16x16; --a 32 adds blocks up to 32x32), three factors, 3,200 matrices + 320 per factor, hidden
P with condition number --cond. Prints the time, the block sizes found, whether they are the
finest, and the factor score (dims owned per factor, shared blocks) of each method.
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sbd_planted import ISSUE_SPEC, planted_family  # noqa: E402

from msp import sbd  # noqa: E402

SPEC_32 = ISSUE_SPEC[:7] + [("rot", 1, 2.0), ("rot", 2, 1.6), ("rot", 0, 0.8), ("rot", 1, 2.6),
                            ("scale", 0, 0.4), ("scale", 2, 0.9), ("rot", 2, 1.1), ("rot", 0, 0.3),
                            ("id", None, 0), ("id", None, 0)]


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def report(name, M, factors, bd, times):
    summary, _ = sbd.score_blocks(M, bd, factors, ["f0", "f1", "f2"])
    print(f"{name:9s} median {statistics.median(times):7.3f} s (runs: {', '.join(f'{t:.3f}' for t in times)})"
          f"  blocks {summary['block_sizes']} finest {summary['finest']}  dims owned {summary['factor_dims']}"
          f"  shared {len(summary['shared_blocks'])}  static dims {summary['static_dims']}"
          f"  off-block after {summary['offblock_energy_after']:.2e}  commutant dim {summary['commutant_dim']}"
          f"  gap {summary['gap']:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=int, choices=[16, 32], default=16)
    parser.add_argument("--n", type=int, default=3200, help="all-factor matrices")
    parser.add_argument("--cond", type=float, default=10.0, help="condition number of the hidden basis")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-authors", action="store_true")
    parser.add_argument("--restarts", type=int, default=1, help="authors' method: restarts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fam = planted_family(ISSUE_SPEC if args.a == 16 else SPEC_32, n_all=args.n, n_factor=320, cond=args.cond, seed=0)
    M = torch.from_numpy(fam["M"])
    factors = [torch.from_numpy(f) for f in fam["factors"]]
    truth = sorted(len(b) for b in fam["blocks"])
    print(f"{args.n} matrices {args.a}x{args.a}, cond(P) {args.cond:g}, true block sizes {truth}, one thread")
    bd, times = timed(lambda: sbd.block_diagonalize(M), args.repeats)
    report("algebraic", M, factors, bd, times)
    if not args.skip_authors:
        bd, times = timed(lambda: sbd.block_diagonalize(M, method="authors", restarts=args.restarts), 1)
        report("authors", M, factors, bd, times)


if __name__ == "__main__":
    main()
