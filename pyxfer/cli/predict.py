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
    p.add_argument(
        "--int8",
        action="store_true",
        help="use the bundle's int8 model once it is verified on this CPU",
    )
    p.add_argument(
        "--int8-check",
        choices=("fallback", "error", "warn", "off"),
        default="fallback",
        help="when int8 fails its check on this CPU: run fp32 (fallback, default), stop "
        "(error), run int8 anyway (warn), or skip the check (off)",
    )
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: default)")
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from pyxfer.cli import CLIError
    from pyxfer.runtime import Predictor
    from pyxfer.runtime.predictor import Int8VerificationError

    try:
        predictor = Predictor(
            args.bundle, threads=args.threads, int8=args.int8, int8_check=args.int8_check
        )
    except Int8VerificationError as exc:
        raise CLIError(str(exc)) from exc
    print(f"model: {model_line(predictor)}", file=sys.stderr)
    preds = predictor.predict(list(args.images), top_k=args.top_k)
    for path, pred in zip(args.images, preds, strict=True):
        if args.json:
            print(json.dumps({"image": path, "model": predictor.model, **pred.to_dict()}))
        else:
            best = ", ".join(
                f"{lab} {s:.3f}" for lab, s in zip(pred.labels, pred.scores, strict=True)
            )
            print(f"{path}: {best}")
    return 0


def model_line(predictor) -> str:
    """Which model runs and why, in one line (``pyxfer predict`` prints it to stderr)."""
    ver = predictor.verification
    if ver is None:
        return "fp32"
    status, isa = ver["status"], ver["isa"]
    if status == "passed":
        m, t = ver["measured"], ver["tolerance"]
        agree = f", top-1 agreement {m['top1_agreement']:.0%}" if "top1_agreement" in m else ""
        return (
            f"int8, verified on this CPU ({isa}: relative error {m['rel_error']:.4f} <= "
            f"{t['max_rel_error']:.4f}{agree} on {ver['images']} images)"
        )
    if status == "off":
        return f"int8, not verified (--int8-check off; this CPU: {isa})"
    problems = "; ".join(ver["problems"])
    if predictor.model == "fp32":
        return f"fp32 (int8 does not hold on this CPU, {isa}: {problems}; fell back to fp32)"
    return f"int8, NOT verified on this CPU ({isa}: {problems}; --int8-check warn)"
