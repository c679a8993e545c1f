"""`msp evaluate ACTION`: the paper's evaluations of one trained checkpoint (docs/evaluation.md).

    msp evaluate prediction   --checkpoint RUN/model.pt --out prediction.csv
    msp evaluate equivariance --checkpoint RUN/model.pt --out equivariance.csv
    msp evaluate sbd          --checkpoint RUN/model.pt --out sbd_dir/
    msp evaluate samples      --checkpoint RUN/model.pt --out samples.npz
    msp evaluate prediction   --baseline baseline_copy_last --dataset mnist --out prediction.csv
    msp evaluate paired       a.npz b.npz   (two `prediction --per-sequence` files, same sequences)

--baseline replaces --checkpoint with a trivial predictor (msp/trivial_baselines.py) for the
prediction and equivariance evaluations; the data then come from --dataset, --root, --source
and --dataset-options (the workflow's per-dataset options).

The data (dataset, root, source, training options) come from the checkpoint's run config;
--root / --source override where the data lie. Every default follows docs/evaluation.md per dataset
(DatasetSpec.protocol in msp.registry); --n-batches defaults to the authors' full evaluation loader
(ceil(eval_size / batch_size): e.g. 62 batches of 16 on mnist, 313 on 3dshapes), which is
what the paper's numbers average over. Every set uses a fixed seed, so each model sees the
same sequences. Outputs are written atomically (temporary file, then rename).
"""

import argparse
import json
from pathlib import Path

import torch

from msp import eval_protocols as ep
from msp import io, sbd, trivial_baselines
from msp.device import DEVICE_HELP, resolve_device


def load_checkpoint(path, device):
    """(model in eval mode on `device`, run config dict). Patched by the tests' fakes."""
    from msp.checkpoint import load_checkpoint as load

    model, config = load(path, map_location="cpu")
    return model.to(device).eval(), config


def _common(p, *, batch_size, seed, T_help, baselines=False):
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="model.pt (or a checkpoint) written by msp train")
    p.add_argument("--expect-run", metavar="DATASET/MODEL/seedN",
                   help="refuse a checkpoint trained as another run (e.g. a model.pt copied between runs)")
    if baselines:
        which.add_argument("--baseline", choices=trivial_baselines.BASELINES,
                           help="a trivial predictor instead of a trained model (needs --dataset)")
        p.add_argument("--dataset", help="with --baseline: the dataset name (mnist, 3dshapes, ...)")
        p.add_argument("--dataset-options", default="{}",
                       help="with --baseline: JSON object of the dataset's generator options")
    p.add_argument("--out", required=True)
    p.add_argument("--root", default=None, help="data root (default: the run config's)")
    p.add_argument("--source", default=None, help="drive | official | embedded (default: the run config's)")
    p.add_argument("--split", default=None, help="train | test (default per dataset: test; 3dshapes: train, as the authors)")
    p.add_argument("--T", type=int, default=None, help=T_help)
    p.add_argument("--T-cond", type=int, default=None, help="conditioning frames (default per dataset: 2; mnist_accl: 5)")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=seed, help="seed of the evaluation set (same for every model)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_sbd_method_arguments(p):
    """Flags choosing how SBD finds U and the blocks (shared with `msp sbd`)."""
    p.add_argument("--method", choices=sbd.METHODS, default="algebraic",
                   help="algebraic (default): finest blocks from the commutant, deterministic; "
                        "authors: Adam on U with their loss, blocks read off the result")
    p.add_argument("--blocks", type=parse_blocks, default=None,
                   help='hand-picked blocks overriding the ones found, JSON lists of column indices of the '
                        'method\'s U, e.g. "[[0,1],[2,3],[4]]"')
    p.add_argument("--epochs", type=int, default=50, help="authors' method: epochs of learning U")
    p.add_argument("--lr", type=float, default=0.1, help="authors' method: Adam learning rate of U")
    p.add_argument("--restarts", type=int, default=1, help="authors' method: orthogonal inits of U; the lowest final loss wins")
    p.add_argument("--max-blocks", type=int, default=None, help="authors' method: upper bound of the eigengap's block count")


def parse_blocks(text):
    """'[[0,1],[2]]' -> [[0, 1], [2]] (argparse type of --blocks)."""
    try:
        blocks = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--blocks: not JSON ({err}); write e.g. [[0,1],[2,3]]") from None
    if not (isinstance(blocks, list) and blocks and all(isinstance(b, list) and b and all(isinstance(i, int) for i in b)
                                                         for b in blocks)):
        raise argparse.ArgumentTypeError(f"--blocks: expected a list of non-empty lists of column indices, got {text}")
    return blocks


def add_arguments(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prediction", help="extrapolation error per horizon -> CSV horizon,mse,mse_sem,n_sequences")
    _common(p, batch_size=16, seed=1, T_help="sequence length (default, the authors' figure: mnist, mnist_bg_full, mnist_accl 20; "
                                           "mnist_bg 10; 3dshapes 8; smallNORB 6; another T is labelled in the tables)",
            baselines=True)
    p.add_argument("--n-batches", type=int, default=None, help="default: the authors' loader, ceil(eval_size / batch)")
    diagnostic = p.add_mutually_exclusive_group()
    diagnostic.add_argument("--fit-frames", type=int, default=None, metavar="N",
                            help="diagnostic, not the paper's protocol: fit each sequence's M* on its first N frames "
                                 "(N > T_cond: frames it then predicts, an oracle estimate) and roll out from the last "
                                 "conditioning frame; least-squares models (docs/evaluation.md, 'Diagnostics')")
    diagnostic.add_argument("--reconstruct", action="store_true",
                            help="diagnostic: decode every future frame from its own latent (the autoencoder's floor)")
    p.add_argument("--per-sequence", metavar="PATH.npz", default=None,
                   help="also save every sequence's error per horizon with the evaluation set's description, "
                        "for a paired comparison of two models (msp evaluate paired)")
    p = sub.add_parser("paired", help="two models' --per-sequence errors on the same sequences: the paired "
                                       "difference B - A per horizon, its standard error and 95%% interval")
    p.add_argument("a", metavar="A.npz", help="per-sequence errors of model A (msp evaluate prediction --per-sequence)")
    p.add_argument("b", metavar="B.npz", help="per-sequence errors of model B, on the same evaluation set")
    p.add_argument("--out", default=None, help="also write the table as CSV")
    p = sub.add_parser("equivariance", help="L^p and L^p_equiv per horizon -> CSV horizon,Lp,Lp_equiv,n_sequences")
    _common(p, batch_size=32, seed=1, T_help="sequence length (default: mnist 10, mnist_accl 20, 3dshapes 8, smallNORB 6)",
            baselines=True)
    p.add_argument("--n-batches", type=int, default=None, help="default: the authors' loader, ceil(eval_size / batch)")
    p = sub.add_parser("sbd", help="simultaneous block diagonalization -> DIR/sbd.json, DIR/sbd_maps.npz")
    _common(p, batch_size=32, seed=1234, T_help="length of the sequences whose M* are collected (mnist 10, 3dshapes 8, smallNORB 6)")
    p.add_argument("--n-batches", type=int, default=100, help="batches of all-factor sequences for M*")
    p.add_argument("--component-batches", type=int, default=10, help="batches per single-factor map")
    p.add_argument("--component-batch-size", type=int, default=10)
    add_sbd_method_arguments(p)
    p = sub.add_parser("samples", help="a few generated sequences -> NPZ cond,target,pred[,pred_equiv]")
    _common(p, batch_size=8, seed=1, T_help="sequence length (default: as prediction)")


def baseline_config(args) -> dict:
    """The run-config stand-in of a trivial baseline: only the dataset section."""
    if not args.dataset:
        raise SystemExit(f"msp evaluate {args.action} --baseline {args.baseline}: also give --dataset NAME")
    try:
        options = json.loads(args.dataset_options)
    except ValueError as err:
        raise SystemExit(f"--dataset-options {args.dataset_options!r}: not a JSON object ({err})") from None
    if not isinstance(options, dict):
        raise SystemExit(f"--dataset-options {args.dataset_options!r}: expected a JSON object like '{{\"digits\": [4]}}'")
    return {"dataset": {"name": args.dataset, "root": args.root or "data", "source": args.source or "embedded",
                        "options": options}}


def check_expected_run(config: dict, checkpoint, expected: str | None) -> None:
    """The checkpoint's own run config must be the run it is evaluated for: a model.pt of
    mnist placed in mnist_bg's folder would otherwise fill mnist_bg's table with mnist's
    numbers."""
    if not expected:
        return
    actual = (f"{config['dataset']['name']}/{config['model']['name']}/"
              f"seed{config.get('train', {}).get('seed')}")
    if actual != expected:
        raise ValueError(f"{checkpoint} was trained as {actual} but is evaluated for {expected}: it "
                         "belongs to another run (copied or moved?). Put it back where it belongs, or "
                         "delete it and train this run")


def _setup(args):
    device = resolve_device(args.device)
    baseline = getattr(args, "baseline", None)
    if baseline:
        model, config = None, baseline_config(args)  # built in main, once the set's T is known
    else:
        model, config = load_checkpoint(args.checkpoint, device)
        check_expected_run(config, args.checkpoint, getattr(args, "expect_run", None))
    name = config["dataset"]["name"]
    protocol = ep.protocol_for(name)
    T_cond = args.T_cond or protocol.T_cond
    split = args.split or protocol.eval_split

    def make_generator(*, split=split, T, seed=args.seed, **options):
        return ep.make_generator(config, split=split, T=T, seed=seed, device=device,
                                 root=args.root, source=args.source, **options)

    if baseline:
        def make_model(T):
            # the mean frame averages training-split sequences of the evaluation length
            # (another seed than the evaluation set, so no motion is shared with it)
            return trivial_baselines.build(baseline, T_cond, lambda: make_generator(split="train", T=T,
                                                                                    seed=args.seed + 1))
    else:
        def make_model(T):
            return model
    return make_model, name, protocol, T_cond, split, make_generator, config


def load_per_sequence(path):
    """A --per-sequence file -> (errors (S, n), evaluation set dict, predictor dict)."""
    import numpy as np

    try:
        with np.load(path) as stored:
            return (stored["errors"], json.loads(str(stored["evaluation_set"])),
                    json.loads(str(stored["predictor"])))
    except (OSError, KeyError, ValueError) as error:
        raise SystemExit(f"{path}: not a per-sequence file of msp evaluate prediction --per-sequence ({error})")


def describe_predictor(predictor: dict) -> str:
    """{'checkpoint': 'RUN/model.pt', 'fit_frames': 20, ...} -> 'RUN/model.pt, fit_frames 20'."""
    parts = [predictor.get("checkpoint") or predictor.get("baseline") or "?"]
    if predictor.get("fit_frames") is not None:
        parts.append(f"fit_frames {predictor['fit_frames']}")
    if predictor.get("reconstruct"):
        parts.append("reconstruct")
    return ", ".join(parts)


def paired_main(args):
    (errors_a, set_a, model_a), (errors_b, set_b, model_b) = load_per_sequence(args.a), load_per_sequence(args.b)
    if set_a != set_b:
        differ = sorted(k for k in set_a.keys() | set_b.keys() if set_a.get(k) != set_b.get(k))
        raise SystemExit(f"{args.a} and {args.b} were evaluated on different sequences (they differ in "
                         f"{', '.join(differ)}); pairing needs the same evaluation set: rerun msp evaluate "
                         "prediction with the same --seed, --batch-size, --n-batches, --T and data")
    table = ep.paired_difference(errors_a, errors_b)
    print(f"A = {describe_predictor(model_a)}\nB = {describe_predictor(model_b)}\n"
          f"diff = B - A (> 0: A is better), on the same {len(errors_a)} sequences of {set_a['dataset']}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.out:
        io.write_csv(args.out, table)
    return 0


def main(args):
    if args.action == "paired":
        return paired_main(args)
    make_model, name, protocol, T_cond, split, make_generator, config = _setup(args)
    with torch.no_grad():
        if args.action == "prediction":
            n_batches = args.n_batches or ep.default_n_batches(name, args.batch_size)
            T = args.T or protocol.prediction_T
            if args.baseline and (args.fit_frames is not None or args.reconstruct):
                raise SystemExit("--fit-frames and --reconstruct diagnose a trained model; a --baseline has no latent")
            model, gen = make_model(T), make_generator(T=T)
            errors = ep.prediction_errors(model, gen, T_cond, args.batch_size, n_batches,
                                          fit_frames=args.fit_frames, reconstruct=args.reconstruct)
            io.write_csv(args.out, ep.summarize_prediction(errors))
            if args.per_sequence:
                described = ep.evaluation_set(config, split=split, T=T, T_cond=T_cond, seed=args.seed,
                                              batch_size=args.batch_size, n_batches=n_batches, source=args.source)
                predictor = {"checkpoint": args.checkpoint and str(args.checkpoint), "baseline": args.baseline,
                             "fit_frames": args.fit_frames, "reconstruct": args.reconstruct}
                io.save_npz(args.per_sequence, {"errors": errors, "predictor": json.dumps(predictor),
                                                "evaluation_set": json.dumps(described, sort_keys=True)})
        elif args.action == "equivariance":
            T = args.T or protocol.equivariance_T
            model = make_model(T)
            ep.require_transition(model, "the equivariance evaluation")
            n_batches = args.n_batches or ep.default_n_batches(name, args.batch_size)
            gen = make_generator(T=T, shared_transition=True)
            Lp, Lp_equiv = ep.equivariance_errors(model, gen, T_cond, args.batch_size, n_batches)
            io.write_csv(args.out, ep.summarize_equivariance(Lp, Lp_equiv))
        elif args.action == "samples":
            # shared transformations, so that the swapped-M row shows the same motion
            gen = make_generator(T=args.T or protocol.prediction_T, shared_transition=True)
            io.save_npz(args.out, ep.generate_samples(make_model(None), gen.sample(args.batch_size), T_cond))
    if args.action == "sbd":
        model = make_model(None)  # learning U needs gradients; run_sbd disables them elsewhere
        T = args.T or protocol.sbd_T
        settings = sbd.SBDSettings(T=T, T_cond=T_cond, batch_size=args.batch_size, n_batches=args.n_batches,
                                   component_batch_size=args.component_batch_size,
                                   component_batches=args.component_batches, method=args.method,
                                   blocks=args.blocks, epochs=args.epochs, lr=args.lr,
                                   restarts=args.restarts, max_blocks=args.max_blocks, seed=args.seed)

        def make_sbd_generator(*, split, T, seed, **options):
            return make_generator(split=split, T=T, seed=seed, **{**ep.sbd_data_options(name, T), **options})

        summary, arrays = sbd.run_sbd(model, make_sbd_generator, settings, disentangle_split=split)
        summary.update(checkpoint=str(args.checkpoint), dataset=name, model=model.name)
        out = Path(args.out)
        io.save_npz(out / "sbd_maps.npz", arrays)
        io.write_json(out / "sbd.json", summary)  # last: its presence marks a complete output
    return 0
