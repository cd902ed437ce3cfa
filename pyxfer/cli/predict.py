"""``pyxfer predict``: classify image files with an exported bundle (no torch needed)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="classify images with an exported bundle (onnxruntime, no torch)",
        description="Run the bundle BUNDLE on image files and print the top-k classes.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by pyxfer export")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--int8", action="store_true", help="use the bundle's int8 model")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: default)")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.runtime import Predictor

    predictor = Predictor(args.bundle, threads=args.threads, int8=args.int8)
    preds = predictor.predict(list(args.images), top_k=args.top_k)
    for path, pred in zip(args.images, preds, strict=True):
        if args.json:
            print(json.dumps({"image": path, **pred.to_dict()}))
        else:
            best = ", ".join(
                f"{lab} {s:.3f}" for lab, s in zip(pred.labels, pred.scores, strict=True)
            )
            print(f"{path}: {best}")
    return 0
