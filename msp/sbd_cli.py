"""`msp sbd`: simultaneous block diagonalization of any set of matrices (docs/sbd.md).

    msp sbd --matrices FILE.npz --key KEY [--factor NAME=KEY ...] [--method algebraic|authors]
            [--blocks JSON] --out DIR

FILE.npz[KEY] is an (N, a, a) array of transitions (M acts from the right, H' = H M); each
--factor NAME=KEY names an (N_f, a, a) array of transitions in which only that factor moves.
Writes DIR/U.npy (a, a), the change of basis whose consecutive column groups are the blocks
(V = U^-1 M U is block diagonal), and DIR/sbd.json: block_sizes (in the order of U's
columns), finest_block_sizes, finest, commutant_dim, gap, offblock_energy_before/_after,
and with factors factor_blocks (name -> block indices), factor_dims, shared_blocks,
static_blocks, disjoint and finest_and_disjoint (msp.sbd.score_blocks). The workflow's
`msp evaluate sbd` runs the same code on a model's transitions.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from msp import io, sbd
from msp.evaluate import add_sbd_method_arguments


def _factor(text):
    name, sep, key = text.partition("=")
    if not sep or not name or not key:
        raise argparse.ArgumentTypeError(f"--factor {text}: expected NAME=KEY, e.g. rotation=M_rotation")
    return name, key


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--matrices", required=True, help="an .npz file holding the transitions")
    parser.add_argument("--key", required=True, help="array of FILE.npz with all transitions, shape (N, a, a)")
    parser.add_argument("--factor", type=_factor, action="append", default=[], metavar="NAME=KEY",
                        help="array of single-factor transitions (N_f, a, a); repeat once per factor")
    parser.add_argument("--out", required=True, help="output folder: sbd.json and U.npy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random commutant elements / of U's init")
    add_sbd_method_arguments(parser)


def load_family(data, key, path):
    if key not in data.files:
        raise ValueError(f"{path}: no array {key!r} (it holds {', '.join(data.files) or 'nothing'}); "
                         "pass --key / --factor NAME=KEY with one of those")
    M = np.asarray(data[key])
    if M.ndim != 3 or M.shape[1] != M.shape[2] or len(M) == 0:
        raise ValueError(f"{path}[{key}]: expected a non-empty stack of square matrices (N, a, a), got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError(f"{path}[{key}]: holds NaN or infinite entries; drop those matrices first")
    return torch.from_numpy(M.astype(np.float64))


def main(args):
    path = Path(args.matrices)
    with np.load(path) as data:
        M = load_family(data, args.key, path)
        factor_M = [load_family(data, key, path) for _, key in args.factor]
    for (name, key), Mf in zip(args.factor, factor_M):
        if Mf.shape[1:] != M.shape[1:]:
            raise ValueError(f"--factor {name}={key}: matrices of shape {tuple(Mf.shape[1:])}, "
                             f"but {args.key} holds {tuple(M.shape[1:])}")
    start = time.perf_counter()
    bd = sbd.block_diagonalize(M, method=args.method, blocks=args.blocks, seed=args.seed, epochs=args.epochs,
                               lr=args.lr, restarts=args.restarts, max_blocks=args.max_blocks)
    seconds = time.perf_counter() - start
    summary, _ = sbd.score_blocks(M, bd, factor_M or None, [name for name, _ in args.factor])
    summary.update(seconds=seconds, matrices=str(path), key=args.key, block_rule=sbd.BLOCK_RULES[args.method],
                   commutant_eigenvalues=bd.commutant_eigenvalues, bd_loss_per_epoch=bd.bd_loss_per_epoch)
    out = Path(args.out)
    io.save_array(out / "U.npy", bd.U.numpy())
    io.write_json(out / "sbd.json", summary)  # last: its presence marks a complete output
    owners = summary.get("factor_blocks")
    print(f"blocks {bd.block_sizes} (finest: {bd.finest}), commutant dim {bd.commutant_dim}, gap {bd.gap:.3g}, "
          f"off-block energy {summary['offblock_energy_before']:.3g} -> {summary['offblock_energy_after']:.3g}"
          + (f", factors {owners}, shared {summary['shared_blocks']}" if owners else "") + f" [{seconds:.2f} s]")
    return 0
