"""The `msp` command line: one subcommand per module, each module owning its flags.

Every module listed in SUBCOMMANDS defines `add_arguments(parser)` and `main(args)`;
modules are imported only when their subcommand runs, so `msp --help` stays fast.
"""

import argparse
import importlib
import os
import sys

SUBCOMMANDS = {
    "train": ("msp.train", "train one model on one dataset (resumes automatically)"),
    "data": ("msp.data.cli", "download, verify and prepare datasets"),
    "evaluate": ("msp.evaluate", "prediction / equivariance / SBD evaluation of a checkpoint"),
    "sbd": ("msp.sbd_cli", "simultaneous block diagonalization of any set of matrices (.npz)"),
    "report": ("msp.report", "tables, figures and claim checks from evaluation outputs"),
    "import-authors": ("msp.authors_checkpoint", "convert an authors' snapshot_model_iter_N file"),
    "bench": ("msp.bench", "time training steps, data generation and evaluation"),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="msp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub_parser = argparse.ArgumentParser(prog=f"msp {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    try:
        code = module.main(args) or 0
    except (ValueError, OSError, RuntimeError) as err:
        if os.environ.get("MSP_DEBUG"):
            raise
        print(f"msp {argv[0]}: error: {err}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
