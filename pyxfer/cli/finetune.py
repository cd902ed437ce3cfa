"""``pyxfer finetune``: train a classifier on few labels from a pretrained (or random) backbone.

Settings come from the flags and/or a TOML file (``--config ft.toml``) whose keys mirror the
flags (``labels-per-class = 10``, ``backbone-opt = {img_size = 8}``); flags override the file.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

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

# flag dest -> finetune() argument where the names differ
_FIELD = {"backbone_opt": "backbone_opts"}
# finetune() arguments (the rest goes to TrainConfig)
_OWN = (
    "source",
    "data",
    "strategy",
    "backbone",
    "backbone_opts",
    "weights",
    "from_scratch",
    "keep_head",
    "labels_per_class",
    "test_data",
    "test_fraction",
    "val_fraction",
    "freeze_groups",
    "layer_decay",
    "lr",
    "head_lr",
    "bn",
    "probe_fraction",
    "eval_every",
    "patience",
    "label_smoothing",
    "balance",
    "fast_probe",
    "out",
    "seed",
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    a("--config", metavar="FILE.toml", help="TOML file whose keys mirror these flags")
    a("--data", metavar="SPEC", help="labelled training images (digits, folder:DIR, ...)")
    a("--backbone", metavar="NAME", help="registered backbone (weight files, --from-scratch)")
    a("--backbone-opt", action="append", metavar="K=V", help="backbone option (repeatable)")
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
    a("--lr", type=float, help="backbone learning rate (default 1e-3)")
    a("--head-lr", type=float, help="head learning rate (default --lr; probes 10x --lr)")
    a("--bn", choices=("train", "eval", "frozen"), help="BatchNorm mode (default train)")
    a("--probe-fraction", type=float, metavar="F", help="lp-ft: share of steps probing (0.5)")
    a("--eval-every", type=int, metavar="N", help="steps between validations")
    a("--patience", type=int, metavar="N", help="early stop after N validations w/o gain")
    a("--label-smoothing", type=float, metavar="E", help="cross-entropy label smoothing")
    a("--no-balance", dest="balance", action="store_false", help="no class-balanced batches")
    a("--fast-probe", action="store_true", help="probe phases on cached features (no aug.)")
    a("--views", metavar="PRESET", help="training augmentation (default fixmatch_weak)")
    a("--no-flip", dest="flip", action="store_false", help="no horizontal flips (digits, text)")
    a("--epochs", type=int, metavar="E", help="passes over the training labels (default 1)")
    a("--max-steps", type=int, metavar="N", help="optimiser steps (overrides --epochs)")
    a("--max-time", type=float, metavar="SECONDS", help="wall-clock budget per phase")
    a("--batch-size", type=int, metavar="B", help="images per step (default 256)")
    a("--optimizer", choices=("adamw", "sgd", "lars"), help="optimiser (default adamw)")
    a("--weight-decay", type=float, help="weight decay (default 0.05)")
    a("--warmup-steps", type=int, metavar="N", help="linear warmup steps (default 0)")
    a("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="mixed precision")
    a("--seed", type=int, help="random seed (default 0)")
    a("--threads", type=int, help="augmentation threads (default 0 = all cores)")
    a("--device", choices=("auto", "cpu", "cuda"), help="device (default auto)")
    a("--out", metavar="RUN", help="run directory")
    a("--overwrite", action="store_true", help="replace the run in RUN (only its own files)")
    return p


def read_toml_raw(path: str) -> dict[str, Any]:
    """The tables of a TOML file as a dict (keys unchanged)."""
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config: {path!r} does not exist")
    with open(p, "rb") as f:
        return tomllib.load(f)


def collect(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, Any]:
    """Defaults <- TOML file <- flags, with flag-style keys mapped to argument names."""
    from pyxfer.cli.pretrain import parse_opts

    flags = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    flags.pop("verbose", None)
    config_file = flags.pop("config", None)
    settings: dict[str, Any] = {}
    for d in (read_toml_raw(config_file) if config_file else {}, flags):
        for key, value in d.items():
            k = key.replace("-", "_")
            k = fields.get(k, k)
            if k.endswith("_opts"):
                value = parse_opts(value, f"--{key.replace('_', '-')}")
            settings[k] = value
    return settings


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.engine import NonFiniteLossError
    from pyxfer.evaluate.results import format_table
    from pyxfer.transfer import finetune

    settings = collect(args, _FIELD)
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
