"""``pyxfer finetune``: train a classifier on few labels from a pretrained (or random) backbone.

Settings come from the flags and/or a TOML file (``--config ft.toml``) whose keys mirror the
flags (``labels-per-class = 10``, ``backbone-opt = {img_size = 8}``); flags override the file.
"""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
strategies:
  linear    linear probe: backbone frozen (eval mode), only the head is trained
  full      every parameter is trained
  partial   the first --freeze-groups parameter groups (stem first) are frozen
  lp-ft     linear probe, then full fine-tuning from the probed head (Kumar et al. 2022)

The validation split (--val-fraction of the training labels) picks the model and drives
early stopping (--patience); the test split (--test-data or --test-fraction) is only
evaluated once, at the end: RUN/results.json, RUN/predictions.npz, RUN/features.npz.

examples:
  pyxfer finetune runs/ssl --data digits --labels-per-class 10 --strategy lp-ft \\
      --max-steps 300 --out runs/ft
  pyxfer finetune --from-scratch --backbone lenet --backbone-opt img_size=8 --data digits \\
      --labels-per-class 10 --strategy full --out runs/scratch
  pyxfer finetune --weights resnet18.pth --backbone resnet18 --data folder:train/ \\
      --test-data folder:val/ --strategy full --layer-decay 0.65 --head-lr 1e-2 --out runs/ft
"""

#: TrainConfig fields that are no flags of finetune (its objective is the classifier)
NOT_FLAGS = ("objective", "objective_opts")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import (
        PRETRAIN_ONLY,
        TRAINING,
        add_config,
        add_train_flags,
        train_fields,
    )

    p = sub.add_parser(
        "finetune",
        help="fine-tune a backbone on (few) labels: linear, full, partial, LP-FT",
        description="Train a classifier from a pyxfer run or model directory, a weight file "
        "or random init (--from-scratch) with a label budget; writes RUN/model (task "
        "classifier), config.json, metrics.jsonl and the test results.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    a = p.add_argument
    a("source", nargs="?", metavar="RUN|MODEL_DIR|WEIGHTS", help="the starting backbone")
    a("--weights", metavar="FILE", help="safetensors or torchvision-format weight file")
    a("--from-scratch", action="store_true", help="random initialisation (the baseline)")
    a("--keep-head", action="store_true", help="keep the source model's classifier head")
    a("--strategy", choices=("linear", "full", "partial", "lp-ft"), help="default lp-ft")
    a("--labels-per-class", type=int, metavar="K", help="K labels per class (default: all)")
    a("--test-data", metavar="SPEC", help="separate labelled test set")
    a("--test-fraction", type=float, metavar="F", help="else hold out F of --data (0.2)")
    a("--val-fraction", type=float, metavar="F", help="validation share of the labels (0.2)")
    a("--freeze-groups", type=int, metavar="K", help="partial: freeze the first K groups")
    a("--layer-decay", type=float, metavar="D", help="layer-wise lr decay (e.g. 0.65)")
    a("--head-lr", type=float, help="head learning rate (default --lr; probes 10x --lr)")
    a("--bn", choices=("train", "eval", "frozen"), help="BatchNorm mode (default train)")
    a("--probe-fraction", type=float, metavar="F", help="lp-ft: share of steps probing (0.5)")
    a("--eval-every", type=int, metavar="N", help="steps between validations")
    a("--patience", type=int, metavar="N", help="early stop after N validations w/o gain")
    a("--label-smoothing", type=float, metavar="E", help="cross-entropy label smoothing")
    a("--no-balance", dest="balance", action="store_false", help="no class-balanced batches")
    a("--fast-probe", action="store_true", help="probe phases on cached features (no aug.)")
    add_train_flags(p, train_fields(without=PRETRAIN_ONLY + NOT_FLAGS), TRAINING)
    add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import collect
    from pyxfer.engine import NonFiniteLossError
    from pyxfer.evaluate.results import format_table
    from pyxfer.transfer import finetune

    settings = collect(args)
    if not settings.get("data"):
        raise ValueError("--data: required (on the command line or in --config)")
    if not settings.get("out"):
        raise ValueError("--out: required (the run directory)")
    try:
        result = finetune(**settings)
    except NonFiniteLossError as exc:
        raise CLIError(str(exc)) from None
    if result.results:
        print(format_table(result.results), file=sys.stdout)
    print(f"model: {result.model_dir}", file=sys.stdout)
    return 0
