"""``pyxfer eval``: measure a representation with kNN, linear and few-shot probes.

The work is :func:`pyxfer.evaluate.evaluate`; this module turns flags into its arguments."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EPILOG = """\
protocols (comma-separated, default all):
  knn       weighted kNN vote on L2-normalised features (k=200, T=0.07): top-1, top-5,
            per-class mean accuracy
  linear    logistic regression on standardised features, C chosen on a validation split
            of the training features (never the test split), refitted on train+val
  fewshot   K images per class (--shots), --draws seeded draws: mean ± std; nearest
            centroid for 1 shot, the linear probe otherwise

The model is a directory written by pyxfer (model.json + model.safetensors, or a run
directory holding model/), or --backbone NAME with optional --weights FILE and
-o/--backbone-opt K=V (random initialisation with --seed otherwise). Images are resized
(shorter side) to --resize (default: --size, i.e. no crop margin) and centre-cropped to
--size (default: the backbone's input size); --crop-pct 0.875 gives the torchvision ImageNet
protocol (resize 256, crop 224).

examples:
  pyxfer eval runs/ssl --data packed:cifar32 --test-fraction 0.2 --out runs/ssl/eval
  pyxfer eval --backbone lenet -o img_size=8 --data digits --protocol knn,linear --json
  pyxfer eval --backbone resnet18 --weights resnet18.pth --data folder:train/ \\
      --test-data folder:val/ --crop-pct 0.875 --cache-dir ~/.cache/pyxfer
"""


def _defaults() -> dict[str, Any]:
    """The defaults of evaluate(), as flag values (lists comma-separated)."""
    import inspect

    from pyxfer.evaluate import evaluate

    d = {n: p.default for n, p in inspect.signature(evaluate).parameters.items()}
    for name in ("protocols", "shots", "Cs"):
        d[name] = ",".join(map(str, d[name]))
    return d


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import add_backbone_opt
    from pyxfer.evaluate.pipeline import FEATURE_MAPS

    p = sub.add_parser(
        "eval",
        help="evaluate frozen features: kNN, linear probe, few-shot",
        description="Extract features of a labelled data set with a trained model or a "
        "backbone and measure them with the kNN, linear-probe and few-shot protocols. Every "
        "number is reported with the protocol that produced it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", metavar="MODEL_DIR", help="a pyxfer model or run directory")
    p.add_argument("--backbone", metavar="NAME", help="evaluate a registered backbone instead")
    p.add_argument("--weights", metavar="FILE", help="local weight file for --backbone")
    add_backbone_opt(p)
    p.add_argument("--data", required=True, metavar="SPEC", help="labelled data set (train)")
    d = _defaults()
    g = p.add_mutually_exclusive_group()
    g.add_argument("--test-data", metavar="SPEC", help="separate labelled test set")
    g.add_argument(
        "--test-fraction",
        type=float,
        default=d["test_fraction"],
        metavar="F",
        help="without --test-data: hold out this stratified fraction of --data (%(default)s)",
    )
    a = p.add_argument
    a(
        "--protocol",
        dest="protocols",
        metavar="A,B",
        default=d["protocols"],
        help="protocols (%(default)s)",
    )
    a("--k", type=int, metavar="K", default=d["k"], help="kNN neighbours (%(default)s)")
    a(
        "--temperature",
        type=float,
        metavar="T",
        default=d["temperature"],
        help="kNN temperature (%(default)s)",
    )
    a("--shots", metavar="K,K", default=d["shots"], help="few-shot images per class (%(default)s)")
    a(
        "--draws",
        type=int,
        metavar="N",
        default=d["draws"],
        help="few-shot draws per shot count (%(default)s)",
    )
    a("--Cs", metavar="C,C", default=d["Cs"], help="linear-probe C grid (%(default)s)")
    a(
        "--val-fraction",
        type=float,
        metavar="F",
        default=d["val_fraction"],
        help="linear-probe validation share (%(default)s)",
    )
    a("--size", type=int, metavar="S", help="crop size (default: the backbone's input size)")
    a(
        "--resize",
        type=int,
        metavar="S",
        help="shorter side before the crop (default: size / crop-pct)",
    )
    a(
        "--crop-pct",
        type=float,
        metavar="F",
        default=d["crop_pct"],
        help="resize = size / crop_pct (%(default)s)",
    )
    a(
        "--batch-size",
        type=int,
        metavar="B",
        default=d["batch_size"],
        help="images per batch (%(default)s)",
    )
    a("--device", metavar="DEVICE", default=d["device"], help="torch device (%(default)s)")
    a(
        "--threads",
        type=int,
        metavar="N",
        default=d["threads"],
        help="preprocessing threads (0: all cores)",
    )
    a(
        "--seed",
        type=int,
        metavar="N",
        default=d["seed"],
        help="seed of splits, draws, random init (%(default)s)",
    )
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("PYXFER_CACHE_DIR"),
        metavar="DIR",
        help="cache features here (default: $PYXFER_CACHE_DIR, else no cache)",
    )
    p.add_argument(
        "--map",
        dest="feature_map",
        choices=FEATURE_MAPS,
        default=d["feature_map"],
        help="feature map method (%(default)s)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="write results.json, confusion.png, features_map.png"
    )
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _csv(text: str, cast: Any, name: str) -> list[Any]:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name}: expected comma-separated numbers, received {text!r}") from None
    if not values:
        raise ValueError(f"--{name}: expected at least one value, received {text!r}")
    return values


def _backbone(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """The model argument of evaluate() (a path or a backbone) and the record of a backbone."""
    from pathlib import Path

    from pyxfer.backbone import create_backbone
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import parse_opts
    from pyxfer.evaluate.pipeline import file_sha256

    opts = getattr(args, "backbone_opts", None)
    if (args.model is None) == (args.backbone is None):
        raise CLIError("give either MODEL_DIR or --backbone NAME (exactly one)")
    if args.model is not None:
        if args.weights or opts:
            raise CLIError("--weights and --backbone-opt go with --backbone, not with MODEL_DIR")
        return args.model, None
    import torch

    kwargs = parse_opts(opts, "--backbone-opt")
    torch.manual_seed(args.seed)
    backbone = create_backbone(args.backbone, weights=args.weights, **kwargs)
    info: dict[str, Any] = {"backbone": args.backbone, "kwargs": kwargs}
    if args.weights:
        info["weights"] = str(args.weights)
        info["file_sha256"] = file_sha256(Path(args.weights))
    else:
        info["init"] = f"random (seed {args.seed})"
    return backbone, info


#: evaluate() arguments -> how this command calls them
_FLAGS = {
    "model": "MODEL_DIR",
    "protocols": "--protocol",
    "feature_map": "--map",
    **{a: "--" + a.replace("_", "-") for a in ("data", "test_data", "test_fraction", "crop_pct")},
    "shots": "--shots",
}


def run(args: argparse.Namespace) -> int:
    from pyxfer.evaluate import evaluate, format_table
    from pyxfer.evaluate.pipeline import check_protocols

    check_protocols(args.protocols, "--protocol")  # before loading anything
    model, info = _backbone(args)
    result = evaluate(
        model,
        args.data,
        test_data=args.test_data,
        test_fraction=args.test_fraction,
        protocols=args.protocols,
        k=args.k,
        temperature=args.temperature,
        shots=_csv(args.shots, int, "shots"),
        draws=args.draws,
        Cs=_csv(args.Cs, float, "Cs"),
        val_fraction=args.val_fraction,
        size=args.size,
        resize=args.resize,
        crop_pct=args.crop_pct,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        out=args.out,
        feature_map=args.feature_map,
        model_info=info,
        argument_names=_FLAGS,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_table(result.results))
        if args.out:
            print(f"wrote {', '.join(result.meta['files'].values())}", file=sys.stderr)
    return 0
