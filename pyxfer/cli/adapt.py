"""``pyxfer adapt``: unsupervised domain adaptation (labelled source -> unlabelled target)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLES = """\
Both domains are converted to the backbone's channels and resized to its input size.
Model selection uses no target labels: source_accuracy (held-out source images),
target_entropy and snd (unlabelled target images) are reported beside every result; the
checkpoint chosen by target test accuracy is marked * (oracle, uses target labels). model/
holds the last step's weights (--select last, default) or a validator's best checkpoint.

examples:
  pyxfer adapt --source-data idx:mnist-test --target-data digits:mnist --objective dann \\
      --backbone lenet --backbone-opt img_size=28 --no-flip --max-steps 2000 --out runs/dann
  pyxfer adapt --source-data folder:a/ --target-data folder:b/ --target-test-data folder:b_test/ \\
      --objective fixmatch --backbone resnet18 --from runs/ssl --out runs/fm
"""

#: TrainConfig fields that are no flags of adapt (the data are --source-data, --target-data)
NOT_FLAGS = ("data",)


def _objectives() -> list[str]:
    from pyxfer.objectives.base import list_objectives

    return list_objectives(consumes="source_target")


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
        "adapt",
        help="domain adaptation: DANN, CDAN, FixMatch, ... with label-free model selection",
        description="Train a classifier on a labelled source and an unlabelled target with a "
        "registered adaptation objective; writes RUN/model (task classifier), config.json, "
        "metrics.jsonl, results.json (target test accuracy per selection criterion).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
        add_help=False,
    )
    listings = [("adaptation objectives", "objectives", _objectives)]
    add_help(p, listings, EXAMPLES)
    a = p.add_argument
    a("--source-data", metavar="SPEC", help="labelled source images")
    a("--target-data", metavar="SPEC", help="target images (labels only used for testing)")
    a("--target-test-data", metavar="SPEC", help="labelled target test images")
    a("--target-test-fraction", type=float, metavar="F", help="else hold out F of the target")
    a("--source-val-fraction", type=float, metavar="F", help="held-out source share (0.1)")
    a("--weights", metavar="FILE", help="weight file for --backbone")
    a("--from", dest="from_run", metavar="RUN", help="start from a pyxfer run or model directory")
    a("--validators", metavar="A,B", help="label-free validators (source_accuracy,...)")
    a("--select", metavar="NAME", help="whose checkpoint is saved: last (default) or a validator")
    a("--no-oracle", dest="oracle", action="store_false", help="skip the oracle selection")
    a("--eval-every", type=int, metavar="N", help="steps between validations")
    add_train_flags(p, train_fields(without=PRETRAIN_ONLY + NOT_FLAGS), TRAINING)
    add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import collect
    from pyxfer.engine import NonFiniteLossError
    from pyxfer.transfer.adapt import adapt, format_selections

    settings: dict[str, Any] = collect(args)
    for name in ("source_data", "target_data", "objective", "out"):
        if not settings.get(name):
            flag = name.replace("_", "-")
            raise ValueError(f"--{flag}: required (on the command line or in --config)")
    if isinstance(settings.get("validators"), str):
        settings["validators"] = tuple(v.strip() for v in settings["validators"].split(","))
    try:
        result = adapt(**settings)
    except NonFiniteLossError as exc:
        raise CLIError(str(exc)) from None
    print(format_selections(result.selections), file=sys.stdout)
    print(f"model ({result.select}): {result.model_dir}", file=sys.stdout)
    return 0
