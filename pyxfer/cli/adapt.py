"""``pyxfer adapt``: unsupervised domain adaptation (labelled source -> unlabelled target)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLES = """\
Both domains are converted to the backbone's channels and resized to its input size.
Model selection uses no target labels: source_accuracy (held-out source images),
target_entropy and snd (unlabelled target images) are reported beside every result; the
checkpoint chosen by target test accuracy is marked * (oracle, uses target labels).

examples:
  pyxfer adapt --source-data idx:mnist-test --target-data digits:mnist --objective dann \\
      --backbone lenet --backbone-opt img_size=28 --no-flip --max-steps 2000 --out runs/dann
  pyxfer adapt --source-data folder:a/ --target-data folder:b/ --target-test-data folder:b_test/ \\
      --objective fixmatch --backbone resnet18 --from runs/ssl --out runs/fm
"""

_FIELD = {"backbone_opt": "backbone_opts", "objective_opt": "objective_opts", "from": "from_run"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "adapt",
        help="domain adaptation: DANN, CDAN, FixMatch, ... with label-free model selection",
        description="Train a classifier on a labelled source and an unlabelled target with a "
        "registered adaptation objective; writes RUN/model (task classifier), config.json, "
        "metrics.jsonl, results.json (target test accuracy per selection criterion).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    a = p.add_argument
    a("--config", metavar="FILE.toml", help="TOML file whose keys mirror these flags")
    a("--source-data", metavar="SPEC", help="labelled source images")
    a("--target-data", metavar="SPEC", help="target images (labels only used for testing)")
    a("--target-test-data", metavar="SPEC", help="labelled target test images")
    a("--target-test-fraction", type=float, metavar="F", help="else hold out F of the target")
    a("--source-val-fraction", type=float, metavar="F", help="held-out source share (0.1)")
    a("--objective", metavar="NAME", help="dann, cdan, fixmatch, mmd, coral, mcc, ...")
    a("--objective-opt", action="append", metavar="K=V", help="objective option (repeatable)")
    a("--backbone", metavar="NAME", help="registered backbone (default lenet)")
    a("--backbone-opt", action="append", metavar="K=V", help="backbone option (repeatable)")
    a("--weights", metavar="FILE", help="weight file for --backbone")
    a("--from", metavar="RUN", help="start from a pyxfer run or model directory")
    a("--validators", metavar="A,B", help="label-free validators (source_accuracy,...)")
    a("--select", metavar="VALIDATOR", help="whose checkpoint is saved (source_accuracy)")
    a("--no-oracle", dest="oracle", action="store_false", help="skip the oracle selection")
    a("--eval-every", type=int, metavar="N", help="steps between validations")
    a("--epochs", type=int, metavar="E", help="passes over the source (default 1)")
    a("--max-steps", type=int, metavar="N", help="optimiser steps")
    a("--max-time", type=float, metavar="SECONDS", help="wall-clock budget")
    a("--batch-size", type=int, metavar="B", help="images per domain per step (default 256)")
    a("--lr", type=float, help="learning rate (default 1e-3)")
    a("--optimizer", choices=("adamw", "sgd", "lars"), help="optimiser (default adamw)")
    a("--weight-decay", type=float, help="weight decay (default 0.05)")
    a("--warmup-steps", type=int, metavar="N", help="linear warmup steps")
    a("--seed", type=int, help="random seed (default 0)")
    a("--threads", type=int, help="augmentation threads (0 = all cores)")
    a("--no-flip", dest="flip", action="store_false", help="no horizontal flips (digits, text)")
    a("--device", choices=("auto", "cpu", "cuda"), help="device (default auto)")
    a("--out", metavar="RUN", help="run directory")
    a("--overwrite", action="store_true", help="replace the run in RUN (only its own files)")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.cli.finetune import collect
    from pyxfer.engine import NonFiniteLossError
    from pyxfer.transfer.adapt import adapt, format_selections

    settings: dict[str, Any] = collect(args, _FIELD)
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
