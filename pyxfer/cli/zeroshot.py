"""``pyxfer zeroshot fit|eval``: recognise classes that had no training images."""

from __future__ import annotations

import argparse
import json
from typing import Any

EPILOG = """\
fit: split the classes of a labelled data set into seen and unseen ones (--unseen ids, or
--unseen-count N drawn with --seed), fit a method on features of seen-class images with the
class-description table, and report ZSL accuracy (unseen images, unseen classes), GZSL
seen/unseen accuracy and their harmonic mean H (all classes, calibrated stacking), and
AUSUC — per-class means, each with its protocol. Regularisers and the calibration gamma are
chosen on validation classes split off the seen classes. With --out, the run directory
holds results.json, report.html and (ESZSL) a model/ that `pyxfer export` turns into a
bundle whose class table can be extended at deploy time.

eval: the same metrics for a zero-shot model written by `fit` (its split is reused).

descriptions: "digits" (built-in attribute table of the ten handwritten digits), or a
.csv (name column + attribute columns), .npy, or att_splits.mat (AwA2 / CUB / SUN layout).

features (--features): "pooled" (global average of the last feature map), "spatial:G" (the
map averaged on a G x G grid: keeps *where* a feature fired, which spatial descriptions such as
"a stroke along the top" need), or "auto" (default): pooled or spatial:2..4, whichever gives
the best zero-shot accuracy on validation classes split off the seen classes.

A backbone that has never seen the unseen classes is the honest setting. --train-backbone
trains (a copy of) MODEL or --backbone on the seen training images of this run, before the
features are taken: attribute supervision (each image's target is its class's description
row) plus the seen-class cross-entropy, on images shifted at random by up to --shift pixels,
for --max-steps steps. It needs a backbone with a spatial feature map (CNNs). Alternatively
train it yourself on seen classes (`pyxfer finetune`) and pass the run.

examples:
  pyxfer zeroshot fit --backbone lenet -o img_size=28 --data idx:mnist/ \
      --descriptions seven_segment.csv --unseen 2,7,9 --train-backbone --out runs/zs
  pyxfer zeroshot fit runs/ft --data digits --descriptions digits --unseen 2,5,8 --out runs/zs
  pyxfer zeroshot fit --backbone lenet -o img_size=28 --data idx:mnist/ --unseen-count 4
  pyxfer zeroshot eval runs/zs --data digits
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import add_backbone_opt

    p = sub.add_parser(
        "zeroshot",
        help="zero-shot learning: fit / evaluate on unseen classes from class descriptions",
        description="Zero-shot learning from class descriptions (attributes or class names).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("fit", "eval"), help="fit a method, or evaluate a model")
    p.add_argument("model", nargs="?", metavar="MODEL_OR_RUN", help="pyxfer model / run dir")
    p.add_argument("--backbone", metavar="NAME", help="a registered backbone instead of MODEL")
    p.add_argument("--weights", metavar="FILE", help="local weight file for --backbone")
    add_backbone_opt(p)
    p.add_argument("--data", required=True, metavar="SPEC", help="labelled data set")
    p.add_argument(
        "--descriptions",
        default="digits",
        metavar="TABLE",
        help="class table: digits | FILE.csv | FILE.npy | att_splits.mat",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--unseen", metavar="IDS", help="comma-separated unseen class ids")
    g.add_argument("--unseen-count", type=int, metavar="N", help="draw N unseen classes")
    p.add_argument("--method", default="eszsl", choices=("eszsl", "dap", "bilinear", "prototype"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of each seen class kept for the GZSL seen test (default 0.2)",
    )
    p.add_argument(
        "--features",
        default="auto",
        metavar="LAYOUT",
        help="auto | pooled | spatial:G (default auto: chosen on validation classes)",
    )
    p.add_argument(
        "--train-backbone",
        action="store_true",
        help="train the backbone on the seen training images first (attributes + classes)",
    )
    p.add_argument(
        "--max-steps", type=int, default=400, help="--train-backbone: steps (default 400)"
    )
    p.add_argument(
        "--shift", type=int, default=2, help="--train-backbone: largest random shift, pixels (2)"
    )
    p.add_argument("--lr", type=float, default=2e-3, help="--train-backbone: Adam rate (2e-3)")
    p.add_argument("--size", type=int, help="image side (default: the backbone's input size)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", metavar="RUN", help="run directory to write")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def _backbone(args: argparse.Namespace) -> tuple[Any, str | None, dict[str, Any]]:
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import parse_opts

    if args.model and args.backbone:
        raise CLIError("give either MODEL_OR_RUN or --backbone, not both")
    if args.model:
        return args.model, None, {}
    if not args.backbone:
        raise CLIError("expected MODEL_OR_RUN or --backbone NAME")
    import torch

    import pyxfer

    opts = parse_opts(getattr(args, "backbone_opts", None), "--backbone-opt")
    torch.manual_seed(args.seed)  # a fresh backbone's initialisation follows --seed
    bb = pyxfer.create_backbone(args.backbone, weights=args.weights, **opts)
    return bb, args.backbone, opts


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.zeroshot.pipeline import fit_zeroshot

    if args.action == "eval":
        if not args.model:
            raise CLIError("eval: expected the run directory written by `pyxfer zeroshot fit`")
        from pyxfer.zeroshot.pipeline import evaluate_zeroshot_run

        result = evaluate_zeroshot_run(
            args.model, args.data, batch_size=args.batch_size, threads=args.threads
        )
        return _print(result, args.json)
    backbone, name, opts = _backbone(args)
    if args.unseen:
        try:
            unseen: Any = [int(t) for t in args.unseen.split(",") if t.strip()]
        except ValueError:
            raise CLIError(
                f"--unseen: expected comma-separated ids, received {args.unseen!r}"
            ) from None
    else:
        unseen = args.unseen_count
    method, seed, out = args.method, args.seed, args.out
    result = fit_zeroshot(
        backbone,
        args.data,
        args.descriptions,
        unseen=unseen,
        method=method,
        seed=seed,
        test_fraction=args.test_fraction,
        size=args.size,
        batch_size=args.batch_size,
        threads=args.threads,
        out=out,
        backbone_name=name,
        backbone_kwargs=opts,
        layout=args.features,
        train_backbone=args.train_backbone,
        max_steps=args.max_steps,
        max_shift=args.shift,
        lr=args.lr,
    )
    return _print(result, args.json)


def _print(result: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps([r.to_dict() for r in result.results()], indent=2))
        return 0
    from pyxfer.evaluate.results import format_table

    print(format_table(result.results()))
    if result.run_dir is not None:
        print(f"run: {result.run_dir}")
    return 0
