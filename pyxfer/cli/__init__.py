"""The ``pyxfer`` command line. Each subcommand lives in its own module with ``add_parser`` and
``run``; modules import heavy dependencies (torch) inside ``run`` so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pyxfer import __version__

# subcommand -> module under pyxfer.cli (order is the order of `pyxfer --help`)
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "info": "info",
    "plugins": "plugins",
    "data": "data",
    "pack": "pack",
    "pretrain": "pretrain",
    "eval": "eval",
    "finetune": "finetune",
    "zeroshot": "zeroshot",
    "report": "report",
    "export": "export",
    "predict": "predict",
    "adapt": "adapt",
    "semisup": "semisup",
}


class CLIError(Exception):
    """An error to print as one line (no traceback) with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyxfer",
        description=(
            "pyxfer: learn image models when labels are scarce or missing "
            "(transfer, self-supervised, domain adaptation, zero-shot, ONNX deployment)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pyxfer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        mod = importlib.import_module(f"pyxfer.cli.{module}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # pyxfer's own progress at INFO (DEBUG with -v); other libraries only warn
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pyxfer").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError, KeyError, OSError) as exc:  # OSError: a full disk, ...
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"pyxfer {args.command}: error: {msg}", file=sys.stderr)
        return 2
