"""``pyxfer pretrain``: self-supervised pretraining of a backbone with an objective.

Settings come from the flags and/or a TOML file (``--config run.toml``) whose keys mirror the
flags (``max-steps = 100`` or ``max_steps = 100``; ``backbone-opt = {img_size = 8}`` or
``["img_size=8"]``); flags given on the command line override the file. ``--resume RUN``
continues the run in ``RUN`` from its last checkpoint with the settings in ``RUN/config.json``
(flags given again override them, e.g. a larger ``--max-time``).

Multi-process training uses ``torchrun``, which starts one process per device and sets the
rank variables that the engine reads (gloo on CPU, nccl on CUDA; ``--batch-size`` is per
process)::

    torchrun --nproc-per-node 2 -m pyxfer pretrain --data digits --backbone lenet \\
        --backbone-opt img_size=8 --objective simclr --epochs 10 --out runs/ssl
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLES = """\
examples:
  pyxfer pretrain --data digits --backbone lenet --backbone-opt img_size=8 \\
      --objective simclr --max-steps 200 --knn-holdout 0.1 --knn-every 50 --out runs/ssl
  pyxfer pretrain --config run.toml --max-time 1200
  pyxfer pretrain --resume runs/ssl --max-time 600
  torchrun --nproc-per-node 2 -m pyxfer pretrain --config run.toml
"""


def _objectives() -> list[str]:
    from pyxfer.objectives.base import list_objectives

    return list_objectives(consumes="views")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import TRAIN_FIELDS, TRAINING, add_config, add_help, add_train_flags

    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining (SimCLR, BYOL, ...) of a backbone",
        description="Pretrain a backbone on unlabelled images with a registered objective.\n"
        "Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/ and the final model in\n"
        "RUN/model/. Every setting is a field of pyxfer.engine.TrainConfig.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    listings = [("objectives", "objectives", _objectives), ("backbones", "backbones", None)]
    add_help(p, listings, EXAMPLES)
    add_train_flags(p, TRAIN_FIELDS, TRAINING)
    add_config(p)
    return p


def build_config(args: argparse.Namespace) -> Any:
    """TrainConfig from defaults <- TOML file (or the resumed run) <- flags."""
    from pyxfer.cli.options import collect
    from pyxfer.engine import TrainConfig, resume_config

    settings = collect(args)
    resume = settings.pop("resume", None)
    if resume:
        return resume_config(resume, **settings)
    return TrainConfig.from_dict(settings)


def run(args: argparse.Namespace) -> int:
    from pyxfer.engine import pretrain

    config = build_config(args)
    for name in ("data", "backbone", "objective"):
        if not getattr(config, name):
            raise ValueError(f"--{name}: required (on the command line or in --config)")
    if not config.out:
        raise ValueError("--out: required (the run directory)")
    from pyxfer.cli import CLIError
    from pyxfer.engine import NonFiniteLossError

    try:
        result = pretrain(config=config)
    except NonFiniteLossError as exc:
        raise CLIError(str(exc)) from None
    from pyxfer.engine.dist import env_rank

    if env_rank() == 0:  # under torchrun only rank 0 reports
        knn = "" if result.knn_top1 is None else f", kNN top-1 {100 * result.knn_top1:.2f} %"
        loss = result.last_metrics.get("loss")
        loss_text = "" if loss is None else f", loss {loss:.4g}"
        print(
            f"stopped ({result.stop_reason}) at step {result.step}{loss_text}{knn}; "
            f"model: {result.model_dir}",
            file=sys.stdout,
        )
    return 0
