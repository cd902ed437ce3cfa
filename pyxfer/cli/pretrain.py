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
import json
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  pyxfer pretrain --data digits --backbone lenet --backbone-opt img_size=8 \\
      --objective simclr --max-steps 200 --knn-holdout 0.1 --knn-every 50 --out runs/ssl
  pyxfer pretrain --config run.toml --max-time 1200
  pyxfer pretrain --resume runs/ssl --max-time 600
  torchrun --nproc-per-node 2 -m pyxfer pretrain --config run.toml
"""

# flag dest -> TrainConfig field where the names differ
_FIELD = {"backbone_opt": "backbone_opts", "objective_opt": "objective_opts"}


def _registered(kind: str) -> str:
    try:
        from pyxfer.pluginmanager import registry

        reg = registry(kind)
        lines = []
        for name in reg.list():
            desc = reg.get(name).description
            lines.append(f"  {name:<20} {desc}".rstrip())
        return "\n".join(lines) or "  (none registered)"
    except Exception as exc:  # help must print even when a plugin is broken
        return f"  (could not list: {exc})"


class _Help(argparse.Action):
    """``-h``: fill the epilog from the registries (loaded only when help is asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        kw["default"] = argparse.SUPPRESS
        super().__init__(option_strings, dest=dest, nargs=0, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        parser.epilog = (
            f"objectives:\n{_registered('objectives')}\n\n"
            f"backbones:\n{_registered('backbones')}\n\n{EXAMPLES}"
        )
        parser.print_help()
        parser.exit()


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining (SimCLR, BYOL, ...) of a backbone",
        description="Pretrain a backbone on unlabelled images with a registered objective.\n"
        "Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/ and the final model in\n"
        "RUN/model/. Settings not given take the defaults of pyxfer.engine.TrainConfig.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        argument_default=argparse.SUPPRESS,  # only flags given override the file / the run
    )
    p.add_argument("-h", "--help", action=_Help, help="show this help (with the registered names)")
    a = p.add_argument
    a("--config", metavar="FILE.toml", help="TOML file whose keys mirror these flags")
    a("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    a("--data", metavar="SPEC", help="training images: digits, folder:DIR, packed:DIR, ...")
    a("--backbone", metavar="NAME", help="registered backbone (listed below)")
    a("--backbone-opt", action="append", metavar="K=V", help="backbone option (repeatable)")
    a("--objective", metavar="NAME", help="registered objective (listed below)")
    a("--objective-opt", action="append", metavar="K=V", help="objective option (repeatable)")
    a("--views", metavar="PRESET", help="augmentation preset (default: the objective's)")
    a("--size", type=int, metavar="S", help="view side (default: the backbone's input size)")
    a("--no-flip", dest="flip", action="store_false", help="no horizontal flips (digits, text)")
    a("--epochs", type=int, metavar="E", help="passes over the data (default 1)")
    a("--max-steps", type=int, metavar="N", help="optimiser steps (overrides --epochs)")
    a("--max-time", type=float, metavar="SECONDS", help="wall-clock budget; stops cleanly")
    a("--batch-size", type=int, metavar="B", help="images per process per step (default 256)")
    a("--lr", type=float, help="peak learning rate (default 1e-3)")
    a("--optimizer", choices=("adamw", "sgd", "lars"), help="optimiser (default adamw)")
    a("--weight-decay", type=float, help="weight decay (default 0.05)")
    a("--warmup-steps", type=int, metavar="N", help="linear warmup steps (default 0)")
    a("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm")
    a("--ema", type=float, metavar="DECAY", help="keep an EMA of the weights (e.g. 0.999)")
    a("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="mixed precision")
    a("--seed", type=int, help="random seed (default 0)")
    a("--threads", type=int, help="augmentation threads (default 0 = all cores)")
    a("--device", choices=("auto", "cpu", "cuda"), help="device (default auto)")
    a("--knn-every", type=int, metavar="N", help="kNN top-1 every N steps (and at the end)")
    a("--knn-data", metavar="SPEC", help="labelled images to classify by kNN")
    a("--knn-holdout", type=float, metavar="FRACTION", help="hold out this fraction for kNN")
    a("--log-every", type=int, metavar="N", help="steps between metrics records (default 10)")
    a("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints (default 500)")
    a("--keep-last", type=int, metavar="N", help="checkpoints kept (default 2)")
    a("--out", metavar="RUN", help="run directory")
    a("--overwrite", action="store_true", help="replace the run in RUN (only its own files)")
    a("--allow-layout-change", action="store_true", help="resume with another batch/world size")
    return p


def parse_value(text: str) -> Any:
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], else the text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_opts(items: Any, where: str) -> dict[str, Any]:
    """``["k=v", ...]`` or a TOML table -> dict."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    if isinstance(items, str):
        items = [items]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where}: expected KEY=VALUE, received {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def _normalise(d: dict[str, Any], where: str) -> dict[str, Any]:
    """Flag-style keys -> TrainConfig fields."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        k = key.replace("-", "_")
        k = _FIELD.get(k, k)
        if k in ("backbone_opts", "objective_opts"):
            value = parse_opts(value, f"{where} {key}")
        out[k] = value
    return out


def read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config: {path!r} does not exist")
    with open(p, "rb") as f:
        return _normalise(tomllib.load(f), f"--config {path}")


def build_config(args: argparse.Namespace) -> Any:
    """TrainConfig from defaults <- TOML file (or the resumed run) <- flags."""
    from pyxfer.engine import TrainConfig, resume_config

    flags = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    flags.pop("verbose", None)
    config_file = flags.pop("config", None)
    resume = flags.pop("resume", None)
    settings: dict[str, Any] = read_toml(config_file) if config_file else {}
    if "resume" in settings:
        resume = resume or settings.pop("resume")
    settings.update(_normalise(flags, "flag"))
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
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        knn = "" if result.knn_top1 is None else f", kNN top-1 {100 * result.knn_top1:.2f} %"
        loss = result.last_metrics.get("loss")
        loss_text = "" if loss is None else f", loss {loss:.4g}"
        print(
            f"stopped ({result.stop_reason}) at step {result.step}{loss_text}{knn}; "
            f"model: {result.model_dir}",
            file=sys.stdout,
        )
    return 0
