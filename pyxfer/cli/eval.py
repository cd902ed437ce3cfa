"""``pyxfer eval``: measure a representation with kNN, linear and few-shot probes."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

PROTOCOLS = ("knn", "linear", "fewshot")

EPILOG = """\
protocols (comma-separated, default all):
  knn       weighted kNN vote on L2-normalised features (k=200, T=0.07): top-1, top-5,
            per-class mean accuracy
  linear    logistic regression on standardised features, C chosen on a validation split
            of the training features (never the test split), refitted on train+val
  fewshot   K images per class (--shots), --draws seeded draws: mean ± std; nearest
            centroid for 1 shot, the linear probe otherwise

The model is a directory written by pyxfer (model.json + model.safetensors, or a run
directory holding model/), or --backbone NAME with optional --weights FILE (random
initialisation with --seed otherwise). Images are resized (shorter side) to --resize
(default: --size, i.e. no crop margin) and centre-cropped to --size (default: the backbone's
input size); --crop-pct 0.875 gives the torchvision ImageNet protocol (resize 256, crop 224).

examples:
  pyxfer eval runs/ssl --data packed:cifar32 --test-fraction 0.2 --out runs/ssl/eval
  pyxfer eval --backbone lenet -o img_size=8 --data digits --protocol knn,linear --json
  pyxfer eval --backbone resnet18 --weights resnet18.pth --data folder:train/ \\
      --test-data folder:val/ --crop-pct 0.875 --cache-dir ~/.cache/pyxfer
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from pyxfer.cli.options import add_backbone_opt

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
    g = p.add_mutually_exclusive_group()
    g.add_argument("--test-data", metavar="SPEC", help="separate labelled test set")
    g.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="without --test-data: hold out this stratified fraction of --data (default 0.2)",
    )
    p.add_argument("--protocol", default="knn,linear,fewshot", help="protocols to run")
    p.add_argument("--k", type=int, default=200, help="kNN neighbours (default 200)")
    p.add_argument("--temperature", type=float, default=0.07, help="kNN temperature (0.07)")
    p.add_argument("--shots", default="1,5,10", help="few-shot images per class (1,5,10)")
    p.add_argument("--draws", type=int, default=5, help="few-shot draws per shot count (5)")
    p.add_argument("--Cs", default=None, help="linear-probe C grid (default 1e-4,...,100)")
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="linear-probe validation fraction (0.2)"
    )
    p.add_argument("--size", type=int, help="crop size (default: the backbone's input size)")
    p.add_argument("--resize", type=int, help="shorter side before the crop (default: --size)")
    p.add_argument("--crop-pct", type=float, default=1.0, help="resize = size / crop_pct (1.0)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (256)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="preprocessing threads (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, draws, random init")
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("PYXFER_CACHE_DIR"),
        metavar="DIR",
        help="cache features here (default: $PYXFER_CACHE_DIR, else no cache)",
    )
    p.add_argument("--map", choices=("pca", "tsne"), default="pca", help="feature map method")
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(backbone, description of the model for the protocol records)."""
    import torch

    from pyxfer.backbone import create_backbone
    from pyxfer.cli import CLIError
    from pyxfer.cli.options import parse_opts
    from pyxfer.modelio import load_model

    if (args.model is None) == (args.backbone is None):
        raise CLIError("give either MODEL_DIR or --backbone NAME (exactly one)")
    if args.model is not None:
        if args.weights or getattr(args, "backbone_opts", None):
            raise CLIError("--weights and --backbone-opt go with --backbone, not with MODEL_DIR")
        root = Path(args.model)
        for cand in (root, root / "model"):
            if (cand / "model.json").is_file():
                saved = load_model(cand)
                desc = {
                    "model_dir": str(cand),
                    "backbone": saved.backbone_name,
                    "task": saved.task,
                    "file_sha256": _sha256(cand / "model.safetensors"),
                }
                return saved.backbone, desc
        raise FileNotFoundError(
            f"MODEL_DIR: {str(root)!r} holds no model.json (nor model/model.json); expected a "
            "directory written by pyxfer"
        )
    kwargs = parse_opts(getattr(args, "backbone_opts", None), "--backbone-opt")
    torch.manual_seed(args.seed)
    backbone = create_backbone(args.backbone, weights=args.weights, **kwargs)
    desc = {"backbone": args.backbone, "kwargs": kwargs}
    if args.weights:
        desc["weights"] = str(args.weights)
        desc["file_sha256"] = _sha256(Path(args.weights))
    else:
        desc["init"] = f"random (seed {args.seed})"
    return backbone, desc


def run(args: argparse.Namespace) -> int:
    from pyxfer.cli import CLIError
    from pyxfer.data import load_dataset, stratified_split
    from pyxfer.evaluate import (
        DEFAULT_CS,
        Result,
        checkpoint_fingerprint,
        extract_features,
        few_shot_probe,
        format_table,
        knn_accuracy,
        linear_probe,
        plot_confusion,
        plot_feature_map,
        save_results,
    )
    from pyxfer.evaluate.results import results_to_json

    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise CLIError(
            f"--protocol: expected a subset of {','.join(PROTOCOLS)}, received {args.protocol!r}"
        )
    shots = _csv(args.shots, int, "shots")
    cs = _csv(args.Cs, float, "Cs") if args.Cs else list(DEFAULT_CS)
    if args.test_data is None and not 0.0 < args.test_fraction < 1.0:
        raise CLIError(
            f"--test-fraction: expected a fraction in (0, 1), received {args.test_fraction}"
        )

    backbone, model_desc = _load(args)
    backbone.to(args.device)
    model_desc["state_sha256"] = checkpoint_fingerprint(backbone)
    spec = backbone.input_spec
    size = args.size or spec.size
    if not 0.0 < args.crop_pct <= 1.0:
        raise CLIError(f"--crop-pct: expected a fraction in (0, 1], received {args.crop_pct}")
    resize = args.resize or round(size / args.crop_pct)
    extract = {
        "batch_size": args.batch_size,
        "size": size,
        "resize": resize,
        "device": args.device,
        "threads": args.threads,
        "progress": not args.no_progress,
        "cache_dir": args.cache_dir,
        "model_id": model_desc["state_sha256"],
    }

    store = load_dataset(args.data)
    store = store.subset(store.labels >= 0)
    if len(store) == 0:
        raise CLIError(f"--data: {args.data!r} has no labelled images")
    class_names = store.class_names
    if args.test_data is not None:
        test_store = load_dataset(args.test_data)
        test_store = test_store.subset(test_store.labels >= 0)
        if test_store.class_names != class_names:
            raise CLIError(
                f"--test-data: expected the classes of --data ({len(class_names)}: "
                f"{class_names[:5]}...), received {len(test_store.class_names)}: "
                f"{test_store.class_names[:5]}..."
            )
        x_train = extract_features(backbone, store, **extract)
        x_test = extract_features(backbone, test_store, **extract)
        y_train, y_test = store.labels, test_store.labels
        split = {"kind": "test-data", "test_data": args.test_data}
    else:
        feats = extract_features(backbone, store, **extract)
        tr, te = stratified_split(
            store.labels, (1.0 - args.test_fraction, args.test_fraction), seed=args.seed
        )
        x_train, y_train, x_test, y_test = feats[tr], store.labels[tr], feats[te], store.labels[te]
        split = {"kind": "stratified", "test_fraction": args.test_fraction, "seed": args.seed}
    if len(y_test) == 0:
        raise CLIError("the test split is empty; use a larger --test-fraction or --test-data")
    num_classes = len(class_names)
    common = {
        "data": args.data,
        "split": split,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "num_classes": num_classes,
        "image_size": size,
        "resize": resize,
        "feature_dim": int(x_train.shape[1]),
        "model": model_desc,
    }

    results: list[Result] = []
    predictions = None
    if "knn" in protocols:
        r = knn_accuracy(
            x_train,
            y_train,
            x_test,
            y_test,
            args.k,
            args.temperature,
            num_classes=num_classes,
            threads=args.threads,
        )
        proto = {
            "protocol": "knn",
            "k": r.k,
            "temperature": r.temperature,
            "normalize": "l2",
            **common,
        }
        results += [
            Result("knn/top1", r.top1, proto),
            Result("knn/top5", r.top5, proto),
            Result("knn/per_class_mean", r.per_class_mean, proto),
        ]
        predictions = ("kNN", r.predictions)
    if "linear" in protocols:
        r = linear_probe(
            x_train,
            y_train,
            x_test,
            y_test,
            Cs=cs,
            val_fraction=args.val_fraction,
            seed=args.seed,
            num_classes=num_classes,
        )
        proto = {
            "protocol": "linear",
            "C": r.C,
            "Cs": cs,
            "val_fraction": args.val_fraction,
            "val_seed": args.seed,
            "val_accuracy": list(r.val_accuracy.values()),
            "val_loss": list(r.val_loss.values()),
            "n_fit": r.n_train,
            "n_val": r.n_val,
            "solver": f"lbfgs ({r.backend})",
            "standardize": True,
            **common,
        }
        results += [
            Result("linear/top1", r.top1, proto),
            Result("linear/per_class_mean", r.per_class_mean, proto),
        ]
        predictions = ("linear probe", r.predictions)
    if "fewshot" in protocols:
        fs = few_shot_probe(
            x_train,
            y_train,
            x_test,
            y_test,
            shots,
            draws=args.draws,
            seed=args.seed,
            Cs=cs,
            num_classes=num_classes,
        )
        for k, r in fs.items():
            proto = {
                "protocol": "fewshot",
                "shots": k,
                "draws": args.draws,
                "method": r.method,
                "seeds": r.seeds,
                "chosen_C": r.chosen_C,
                "n_shots_total": r.n_train,
                "accuracies": r.accuracies,
                **common,
            }
            results += [
                Result(f"fewshot-{k}/top1", r.mean, proto, std=r.std),
                Result(f"fewshot-{k}/per_class_mean", r.per_class_mean, proto, std=r.per_class_std),
            ]

    meta = {"command": "pyxfer eval", "protocols": protocols, **common}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"results": str(out / "results.json")}
        if predictions is not None:
            plot_confusion(
                y_test,
                predictions[1],
                class_names,
                out / "confusion.png",
                title=f"{predictions[0]} confusion (rows normalised)",
            )
            files["confusion"] = str(out / "confusion.png")
        if len(y_test) >= 2:
            plot_feature_map(
                x_test,
                y_test,
                class_names,
                out / "features_map.png",
                method=args.map,
                seed=args.seed,
            )
            files["features_map"] = str(out / "features_map.png")
        meta["files"] = files
        save_results(out / "results.json", results, meta)
    if args.json:
        print(json.dumps(results_to_json(results, meta), indent=2))
    else:
        print(format_table(results))
        if args.out:
            print(f"wrote {', '.join(meta['files'].values())}", file=sys.stderr)
    return 0
