"""`msp data ACTION`: download, prepare, verify and inspect datasets.

    msp data download --dataset NAME --root ROOT --source SRC   -> ROOT/raw/SRC/FAMILY/manifest.json
    msp data prepare  --dataset NAME --root ROOT --source SRC   -> ROOT/prepared/SRC/FAMILY/prepared.json
    msp data verify   --dataset NAME --root ROOT --source SRC   (sha256 of raw files, prepared shapes)
    msp data info     --dataset NAME --root ROOT --source SRC   (status and sample shapes, as JSON)
NAME: mnist mnist_bg mnist_bg_full mnist_accl 3dshapes smallNORB; SRC: drive official embedded.
"""

from __future__ import annotations

import argparse
import json
import sys

from msp import registry
from msp.data import DataError, build_sequences, dataset_family
from msp.data.prepare import load_prepared, prepare, prepared_dir, verify_prepared
from msp.data.sources import (DRIVE_URL_ENV, OFFICIAL_URL_ENV, SOURCES, check_source, download, raw_dir,
                              verify_manifest)
from msp.data.transfer import DEADLINE, READ_TIMEOUT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    helps = {"download": "fetch (or verify) the raw files; writes the manifest last",
             "prepare": "convert raw files into memory-mappable .npy arrays",
             "verify": "check raw files against the manifest and the prepared arrays' sha256",
             "info": "print the status of a dataset and the shape of its sequences"}
    for action, help_text in helps.items():
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--dataset", required=True, choices=registry.dataset_names())
        sub.add_argument("--root", default="data", help="data root directory (default: data)")
        sub.add_argument("--source", default="embedded", choices=SOURCES,
                         help="drive: the authors' archive (the paper's data); official: the "
                              "original distributions; embedded: procedural, offline (default)")
        if action == "download":
            sub.add_argument("--base-url", default=None,
                             help=f"fetch files by name from this base URL instead (defaults: "
                                  f"${DRIVE_URL_ENV} for drive, ${OFFICIAL_URL_ENV} for official)")
            sub.add_argument("--quiet", action="store_true", help="no download progress bars")
            sub.add_argument("--timeout", type=float, default=READ_TIMEOUT,
                             help=f"seconds the server may stay silent before the download "
                                  f"fails (default {READ_TIMEOUT:g})")
            sub.add_argument("--deadline", type=float, default=DEADLINE,
                             help=f"seconds allowed per file, whatever the server does "
                                  f"(default {DEADLINE:g})")
        if action == "prepare":
            sub.add_argument("--force", action="store_true", help="prepare again even if done")


def main(args) -> int:
    family = dataset_family(args.dataset)
    try:
        check_source(family, args.source)
        if args.action == "download":
            path = download(family, args.root, args.source, base_url=args.base_url,
                            quiet=args.quiet, timeout=args.timeout, deadline=args.deadline)
            print(f"{args.dataset}: raw files verified, manifest {path}")
        elif args.action == "prepare":
            path = prepare(family, args.root, args.source, force=args.force)
            print(f"{args.dataset}: prepared arrays in {path.parent}")
        elif args.action == "verify":
            if args.source != "embedded":
                verify_manifest(raw_dir(args.root, args.source, family), deep=True)
            verify_prepared(family, args.root, args.source)  # sha256 of every array
            meta, arrays = load_prepared(family, args.root, args.source)
            print(f"{args.dataset}: OK ({', '.join(f'{k} {tuple(v.shape)}' for k, v in arrays.items())})")
        else:
            meta, _ = load_prepared(family, args.root, args.source)
            gen = build_sequences(args.dataset, root=args.root, source=args.source, T=3, seed=0)
            info = {"dataset": args.dataset, "family": family, "source": args.source,
                    "raw": str(raw_dir(args.root, args.source, family)),
                    "prepared": str(prepared_dir(args.root, args.source, family)),
                    "arrays": meta["arrays"], "image_shape": list(gen.image_shape),
                    "factor_names": gen.factor_names,
                    "default_active_actions": gen.default_active_actions}
            print(json.dumps(info, indent=2))
    except DataError as error:
        print(f"msp data {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
