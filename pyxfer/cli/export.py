"""``pyxfer export``: a trained model directory -> a self-verified ONNX bundle."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a trained model to an ONNX bundle (verified against torch)",
        description="Export MODEL (a model directory, or a run directory containing model/) "
        "to the bundle directory BUNDLE: model.onnx (+ model.int8.onnx), pyxfer.json. The "
        "export checks itself (onnx.checker, dynamic axes, onnxruntime vs torch on real "
        "images) and writes nothing if a check fails.",
    )
    p.add_argument("model", metavar="MODEL", help="model directory or run directory")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument(
        "--input",
        choices=("float-nchw", "uint8-nhwc"),
        default="float-nchw",
        help="graph input: normalised float NCHW, or raw uint8 NHWC with cast, layout and "
        "normalisation inside the graph",
    )
    p.add_argument("--head", choices=("logits", "probs", "features"), help="graph output")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--image-size", type=int, help="model input side (default: the model's)")
    p.add_argument("--resize", type=int, help="shorter side before the centre crop")
    p.add_argument("--int8", action="store_true", help="also write a static int8 model")
    p.add_argument(
        "--calibration-data",
        metavar="SPEC",
        help="training images for calibration and the parity check (a data-set spec: digits, "
        "folder:DIR, packed:DIR, ...)",
    )
    p.add_argument("--calibration-count", type=int, default=256, help="calibration images")
    p.add_argument(
        "--holdout-data",
        metavar="SPEC",
        help="labelled held-out images for the int8 accuracy change (default: the labelled "
        "calibration images not used for calibration)",
    )
    p.add_argument("--activation-type", choices=("uint8", "int8"), default="uint8")
    p.add_argument("--calibrate-method", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--ort", action="store_true", help="also write model.ort (ORT format)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace BUNDLE if it is a bundle (any other directory is refused)",
    )
    p.add_argument("--json", action="store_true", help="print the bundle metadata as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from pyxfer.cli import CLIError
    from pyxfer.data import load_dataset, stratified_split
    from pyxfer.export import ExportError, VerificationError, to_onnx

    if args.int8 and not args.calibration_data:
        raise CLIError("--int8 needs --calibration-data SPEC (real training images)")
    calibration = holdout = None
    if args.calibration_data:
        store = load_dataset(args.calibration_data)
        calibration = store
        if args.int8 and not args.holdout_data and store.is_labelled and len(store) > 1:
            # hold out part of the labelled data: calibrate on one part, measure on the other
            rest, held = stratified_split(store.labels, (0.8, 0.2), seed=0)
            calibration = store.subset(rest)
            held_store = store.subset(held)
            holdout = (held_store, np.asarray(held_store.labels))
    if args.holdout_data:
        held_store = load_dataset(args.holdout_data)
        holdout = (held_store, np.asarray(held_store.labels))
    try:
        out = to_onnx(
            args.model,
            args.out,
            input=args.input,
            head=args.head,
            opset=args.opset,
            quantize="int8" if args.int8 else None,
            calibration=calibration,
            calibration_count=args.calibration_count,
            activation_type=args.activation_type,
            calibrate_method=args.calibrate_method or "minmax",
            holdout=holdout,
            image_size=args.image_size,
            resize=args.resize,
            ort_format=args.ort,
            overwrite=args.overwrite,
        )
    except (ExportError, VerificationError) as exc:
        raise CLIError(str(exc)) from exc
    meta = json.loads((out / "pyxfer.json").read_text())
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    parity = meta["parity"]
    print(f"wrote {out}  ({', '.join(meta['files'])})")
    line = (
        f"parity: max rel diff {parity['max_rel_diff']:.2e}, min cosine {parity['min_cosine']:.6f}"
    )
    if "top1_agreement" in parity:
        line += f", top-1 agreement {parity['top1_agreement']:.0%}"
    print(line)
    int8 = meta["metrics"].get("int8")
    if int8 and "accuracy_change_points" in int8:
        print(
            f"int8: holdout accuracy {int8['holdout_accuracy_fp32']:.2%} -> "
            f"{int8['holdout_accuracy_int8']:.2%} ({int8['accuracy_change_points']:+.2f} points), "
            f"top-1 agreement {int8['top1_agreement']:.1%}"
        )
    return 0
