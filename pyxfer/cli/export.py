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
        help="labelled held-out images for the int8 accuracy change (default: --holdout-fraction "
        "of the calibration data, split off before calibrating, stratified by class)",
    )
    p.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="share held out (default 0.2)"
    )
    p.add_argument(
        "--int8-max-loss",
        type=float,
        default=0.5,
        metavar="POINTS",
        help="most top-1 points int8 may lose on the held-out images (default 0.5)",
    )
    p.add_argument(
        "--int8-on-loss",
        choices=("refuse", "warn"),
        default="refuse",
        help="over the limit: refuse (write nothing, default) or warn and keep the int8 model",
    )
    p.add_argument("--activation-type", choices=("uint8", "int8"), default="uint8")
    p.add_argument("--weight-type", choices=("int8", "uint8"), default="int8")
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="7-bit int8 weights: the same results on x86 CPUs with and without VNNI "
        "(default on; --no-reduce-range: 8-bit, exact only where VNNI exists)",
    )
    p.add_argument(
        "--verify-count",
        type=int,
        default=32,
        help="held-out images in the bundle's int8 verification set (default 32)",
    )
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
    from pyxfer.data import load_dataset
    from pyxfer.export import ExportError, VerificationError, to_onnx

    if args.int8 and not args.calibration_data:
        raise CLIError("--int8 needs --calibration-data SPEC (real training images)")
    calibration = holdout = None
    if args.calibration_data:  # to_onnx holds part of it out to measure int8
        calibration = load_dataset(args.calibration_data)
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
            weight_type=args.weight_type,
            reduce_range=args.reduce_range,
            calibrate_method=args.calibrate_method or "minmax",
            holdout=holdout,
            holdout_fraction=args.holdout_fraction,
            int8_max_loss=args.int8_max_loss,
            int8_on_loss=args.int8_on_loss,
            verify_count=args.verify_count,
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
    if int8:
        q = meta["quantization"]
        scheme = f"{q['scheme']}{', 7-bit weights' if q['reduce_range'] else ''}"
        if "accuracy_change_points" in int8:
            print(
                f"int8 ({scheme}): accuracy on {int8['holdout_labelled']} held-out images "
                f"{int8['holdout_accuracy_fp32']:.2%} -> {int8['holdout_accuracy_int8']:.2%} "
                f"({int8['accuracy_change_points']:+.2f} points), top-1 agreement "
                f"{int8['top1_agreement']:.1%}; loss check {int8['loss_check']} "
                f"(limit {int8['max_loss_points']:g} points, measured on {int8['isa']})"
            )
        elif "top1_agreement" in int8:
            print(
                f"int8 ({scheme}): top-1 agreement with fp32 on {int8['holdout_images']} "
                f"unlabelled held-out images {int8['top1_agreement']:.1%}; loss check "
                f"{int8['loss_check']} (measured on {int8['isa']})"
            )
        ver = meta["verification"]
        print(
            f"int8 verification set: {ver['count']} images, checked by Predictor on the CPU "
            f"it runs on (relative error <= {ver['tolerance']['max_rel_error']:.4f})"
        )
    return 0
