"""`msp evaluate ACTION`: the paper's evaluations of one trained checkpoint (docs/evaluation.md).

    msp evaluate prediction   --checkpoint RUN/model.pt --out prediction.csv
    msp evaluate equivariance --checkpoint RUN/model.pt --out equivariance.csv
    msp evaluate sbd          --checkpoint RUN/model.pt --out sbd_dir/
    msp evaluate samples      --checkpoint RUN/model.pt --out samples.npz

The data (dataset, root, source, training options) come from the checkpoint's run config;
--root / --source override where the data lie. Every default follows docs/evaluation.md per dataset
(msp.eval_protocols.PROTOCOLS); --n-batches defaults to the authors' full evaluation loader
(ceil(eval_size / batch_size): e.g. 62 batches of 16 on mnist, 313 on 3dshapes), which is
what the paper's numbers average over. Every set uses a fixed seed, so each model sees the
same sequences. Outputs are written atomically (temporary file, then rename).
"""

import argparse
from pathlib import Path

import torch

from msp import eval_protocols as ep
from msp import io, sbd
from msp.device import DEVICE_HELP, resolve_device


def load_checkpoint(path, device):
    """(model in eval mode on `device`, run config dict). Patched by the tests' fakes."""
    from msp.checkpoint import load_checkpoint as load

    model, config = load(path, map_location="cpu")
    return model.to(device).eval(), config


def _common(p, *, batch_size, seed, T_help):
    p.add_argument("--checkpoint", required=True, help="model.pt (or a checkpoint) written by msp train")
    p.add_argument("--out", required=True)
    p.add_argument("--root", default=None, help="data root (default: the run config's)")
    p.add_argument("--source", default=None, help="drive | official | embedded (default: the run config's)")
    p.add_argument("--split", default=None, help="train | test (default per dataset: test; 3dshapes: train, as the authors)")
    p.add_argument("--T", type=int, default=None, help=T_help)
    p.add_argument("--T-cond", type=int, default=None, help="conditioning frames (default per dataset: 2; mnist_accl: 5)")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=seed, help="seed of the evaluation set (same for every model)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_arguments(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("prediction", help="extrapolation error per horizon -> CSV horizon,mse,mse_sem,n_sequences")
    _common(p, batch_size=16, seed=1, T_help="sequence length (default: mnist family 20, 3dshapes 8, smallNORB 6)")
    p.add_argument("--n-batches", type=int, default=None, help="default: the authors' loader, ceil(eval_size / batch)")
    p = sub.add_parser("equivariance", help="L^p and L^p_equiv per horizon -> CSV horizon,Lp,Lp_equiv,n_sequences")
    _common(p, batch_size=32, seed=1, T_help="sequence length (default: mnist 10, mnist_accl 20, 3dshapes 8, smallNORB 6)")
    p.add_argument("--n-batches", type=int, default=None, help="default: the authors' loader, ceil(eval_size / batch)")
    p = sub.add_parser("sbd", help="simultaneous block diagonalization -> DIR/sbd.json, DIR/sbd_maps.npz")
    _common(p, batch_size=32, seed=1234, T_help="length of the sequences whose M* are collected (mnist 10, 3dshapes 8, smallNORB 6)")
    p.add_argument("--n-batches", type=int, default=100, help="batches of all-factor sequences for M*")
    p.add_argument("--component-batches", type=int, default=10, help="batches per single-factor map")
    p.add_argument("--component-batch-size", type=int, default=10)
    p.add_argument("--epochs", type=int, default=50, help="epochs of learning U")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate of U")
    p.add_argument("--restarts", type=int, default=1, help="orthogonal inits of U; the lowest final loss wins")
    p.add_argument("--max-blocks", type=int, default=None, help="upper bound of the eigengap's block count")
    p = sub.add_parser("samples", help="a few generated sequences -> NPZ cond,target,pred[,pred_equiv]")
    _common(p, batch_size=8, seed=1, T_help="sequence length (default: as prediction)")


def _setup(args):
    device = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint, device)
    name = config["dataset"]["name"]
    protocol = ep.protocol_for(name)
    T_cond = args.T_cond or protocol.T_cond
    split = args.split or protocol.eval_split

    def make_generator(*, split=split, T, seed=args.seed, **options):
        return ep.make_generator(config, split=split, T=T, seed=seed, device=device,
                                 root=args.root, source=args.source, **options)
    return model, name, protocol, T_cond, split, make_generator


def main(args):
    model, name, protocol, T_cond, split, make_generator = _setup(args)
    with torch.no_grad():
        if args.action == "prediction":
            n_batches = args.n_batches or ep.default_n_batches(name, args.batch_size)
            gen = make_generator(T=args.T or protocol.prediction_T)
            errors = ep.prediction_errors(model, gen, T_cond, args.batch_size, n_batches)
            io.write_csv(args.out, ep.summarize_prediction(errors))
        elif args.action == "equivariance":
            ep.require_transition(model, "the equivariance evaluation")
            n_batches = args.n_batches or ep.default_n_batches(name, args.batch_size)
            gen = make_generator(T=args.T or protocol.equivariance_T, shared_transition=True)
            Lp, Lp_equiv = ep.equivariance_errors(model, gen, T_cond, args.batch_size, n_batches)
            io.write_csv(args.out, ep.summarize_equivariance(Lp, Lp_equiv))
        elif args.action == "samples":
            # shared transformations, so that the swapped-M row shows the same motion
            gen = make_generator(T=args.T or protocol.prediction_T, shared_transition=True)
            io.save_npz(args.out, ep.generate_samples(model, gen.sample(args.batch_size), T_cond))
    if args.action == "sbd":  # learning U needs gradients; run_sbd disables them elsewhere
        T = args.T or protocol.sbd_T
        settings = sbd.SBDSettings(T=T, T_cond=T_cond, batch_size=args.batch_size, n_batches=args.n_batches,
                                   component_batch_size=args.component_batch_size,
                                   component_batches=args.component_batches, epochs=args.epochs, lr=args.lr,
                                   restarts=args.restarts, max_blocks=args.max_blocks, seed=args.seed)

        def make_sbd_generator(*, split, T, seed, **options):
            return make_generator(split=split, T=T, seed=seed, **{**ep.sbd_data_options(name, T), **options})

        summary, arrays = sbd.run_sbd(model, make_sbd_generator, settings, disentangle_split=split)
        summary.update(checkpoint=str(args.checkpoint), dataset=name, model=model.name)
        out = Path(args.out)
        io.save_npz(out / "sbd_maps.npz", arrays)
        io.write_json(out / "sbd.json", summary)  # last: its presence marks a complete output
    return 0
