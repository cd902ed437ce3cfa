"""``pyxfer semisup``: semi-supervised classification (K labels per class + unlabelled images)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLES = """\
The labelled images are --labels-per-class K of each class of --data (seeded), after the test
split (--test-data, or --test-fraction of --data) is held out; the unlabelled images are
--unlabelled-data or the rest of --data without labels. FixMatch's settings are the defaults
(SGD nesterov lr 0.03 wd 5e-4, B 64, mu 7, cos(7 pi p / 16), threshold 0.95, EMA 0.999);
--objective source_only trains on the labelled images alone (the supervised baseline).

examples:
  pyxfer semisup --data packed:cifar10 --labels-per-class 4 --backbone resnet18 \\
      -o stem=small -o width=0.25 --max-steps 2000 --out runs/fixmatch
  pyxfer semisup --data folder:labelled/ --unlabelled-data folder:unlabelled/ \\
      --labels-per-class 25 --objective source_only --from runs/ssl --out runs/baseline
"""

#: TrainConfig fields that are no flags of semisup
NOT_FLAGS = ("data",)


def _objectives() -> list[str]:
    from pyxfer.objectives.base import list_objectives

    return list_objectives(consumes="source_target")


def _shown_defaults() -> dict[str, str]:
    from pyxfer.engine.config import FIXMATCH_SETTINGS

    def text(name: str, value: Any) -> str:
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            return flag if value else "--no-" + flag[2:]
        return str(value)

    shown = {k: text(k, v) for k, v in FIXMATCH_SETTINGS.items()}
    shown["backbone"] = "resnet18"
    shown["objective"] = "fixmatch"
    return shown


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import (
        PRETRAIN_ONLY,
        TRAINING,
        add_config,
        add_help,
        add_train_flags,
        train_fields,
    )

    p = sub.add_parser(
        "semisup",
        help="semi-supervised: K labels per class + unlabelled images (FixMatch, ...)",
        description="Train a classifier on K labelled images per class and unlabelled images "
        "with a registered adaptation objective (FixMatch by default); writes RUN/model (task "
        "classifier, EMA weights), config.json, metrics.jsonl, results.json (test accuracy).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
        add_help=False,
    )
    listings = [("objectives", "objectives", _objectives)]
    add_help(p, listings, EXAMPLES)
    a = p.add_argument
    a("--data", metavar="SPEC", help="labelled images (test split and labelled set)")
    a("--labels-per-class", type=int, metavar="K", help="K labelled images per class (required)")
    a("--unlabelled-data", metavar="SPEC", help="unlabelled images (default: the rest of --data)")
    a("--test-data", metavar="SPEC", help="labelled test images")
    a("--test-fraction", type=float, metavar="F", help="else hold out F of --data (0.2)")
    a("--weights", metavar="FILE", help="weight file for --backbone")
    a("--from", dest="from_run", metavar="RUN", help="start from a pyxfer run or model directory")
    a("--eval-every", type=int, metavar="N", help="steps between logged test evaluations")
    add_train_flags(
        p, train_fields(without=PRETRAIN_ONLY + NOT_FLAGS), TRAINING, defaults=_shown_defaults()
    )
    add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import collect
    from pyxfer.engine import NonFiniteLossError
    from pyxfer.transfer.semisup import format_result, semisup

    settings: dict[str, Any] = collect(args)
    for name in ("data", "labels_per_class", "out"):
        if settings.get(name) is None:
            flag = name.replace("_", "-")
            raise ValueError(f"--{flag}: required (on the command line or in --config)")
    try:
        result = semisup(**settings)
    except NonFiniteLossError as exc:
        raise CLIError(str(exc)) from None
    print(format_result(result), file=sys.stdout)
    print(f"model: {result.model_dir}", file=sys.stdout)
    return 0
