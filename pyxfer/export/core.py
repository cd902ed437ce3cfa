"""``to_onnx``: trace, translate, verify, quantise and write a bundle atomically."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import pyxfer
from pyxfer.backbone import Backbone, InputSpec
from pyxfer.export._trace import export_program, program_to_onnx, rename_dims, save_proto
from pyxfer.export.verify import check_graph, parity
from pyxfer.export.wrap import ExportModule, export_twin
from pyxfer.fileio import atomic_directory, check_replaceable
from pyxfer.modelio import SavedModel, load_model
from pyxfer.runtime import bundle as fmt
from pyxfer.runtime._preprocess import resize_crop

log = logging.getLogger("pyxfer.export")

INPUT_NAME = "images"
DEFAULT_OPSET = 18
DEFAULT_LOGIT_SCALE = 1.0 / 0.07
VERIFY_IMAGES = 16
VERIFY_BATCHES = (1, 8)
#: an existing directory is replaced (overwrite) only if it is a bundle that pyxfer wrote
BUNDLE_MARKER = (fmt.META_FILE, fmt.FORMAT)
ImagesLike = np.ndarray | Sequence[np.ndarray]


def _resolve_model(model_or_dir: Any) -> SavedModel | Backbone:
    if isinstance(model_or_dir, (SavedModel, nn.Module)):
        return model_or_dir
    if isinstance(model_or_dir, (str, os.PathLike)):
        root = Path(model_or_dir)
        for cand in (root, root / "model"):
            if (cand / "model.json").is_file():
                return load_model(cand)
        raise FileNotFoundError(
            f"model: expected a model directory (model.json + model.safetensors) or a run "
            f"directory containing model/, received {str(root)!r}"
        )
    raise ValueError(
        f"model: expected a Backbone, a SavedModel or a model directory path, received "
        f"{type(model_or_dir).__name__}"
    )


def _images_of(data: Any, name: str) -> list[np.ndarray] | np.ndarray:
    """uint8 images (N, H, W, C) or a ragged list from an array, list or ImageStore."""
    from pyxfer.data import ImageStore

    if isinstance(data, ImageStore):
        return data.images if data.is_dense else data.ragged_images
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 4:
            raise ValueError(
                f"{name}: expected uint8 images (N, H, W, C), received {data.dtype} "
                f"{tuple(data.shape)}"
            )
        return data
    if isinstance(data, (list, tuple)) and all(isinstance(a, np.ndarray) for a in data):
        return list(data)
    raise ValueError(
        f"{name}: expected a uint8 (N, H, W, C) array, a list of (H, W, C) arrays or an "
        f"ImageStore, received {type(data).__name__}"
    )


def _pick(images: ImagesLike, count: int, seed: int) -> list[np.ndarray] | np.ndarray:
    n = len(images)
    if n <= count:
        return images
    idx = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]


def _versions(opset: int) -> dict[str, Any]:
    import onnx
    import onnxruntime

    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "pyxfer": pyxfer.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": dist("onnxscript"),
        "opset": opset,
    }


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    outs = [session.run(None, {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def _l2n(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def to_onnx(
    model_or_dir: Any,
    out_dir: str | os.PathLike[str],
    *,
    input: str = "float-nchw",
    head: str | None = None,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    calibration: Any = None,
    calibration_count: int = 256,
    activation_type: str = "uint8",
    calibrate_method: str = "minmax",
    holdout: tuple[Any, np.ndarray] | None = None,
    image_size: int | None = None,
    resize: int | None = None,
    dynamic_size: bool | None = None,
    class_names: Sequence[str] | None = None,
    task: str | None = None,
    class_embeddings: np.ndarray | None = None,
    l2_normalize: bool | None = None,
    logit_scale: float | None = None,
    ort_format: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export a model to an ONNX bundle that verifies itself (nothing is written on failure).

    Args:
        model_or_dir: a model directory written by :func:`pyxfer.modelio.save_model`, a run
            directory containing one as ``model/``, a loaded :class:`SavedModel`, or a backbone.
        out_dir: the bundle directory to create.
        input: ``"float-nchw"`` (normalised float32 (N, C, H, W)) or ``"uint8-nhwc"`` (raw
            uint8 (N, H, W, C); cast, layout and normalisation inside the graph).
        head: ``"logits"``, ``"probs"`` or ``"features"`` (default: logits for classifiers,
            features otherwise; zero-shot bundles always use features).
        opset: ONNX opset of the default domain.
        quantize: None, or ``"int8"`` for an extra static QDQ ``model.int8.onnx``.
        calibration: real training images for int8 calibration (uint8 (N, H, W, C) array,
            list of (H, W, C) arrays, or an ImageStore); also used for the parity check.
        calibration_count: how many calibration images to use (sampled with seed 0).
        activation_type: int8 activations ``"uint8"`` (U8S8, fast on x86) or ``"int8"``.
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        holdout: ``(images, labels)`` held-out labelled images: the int8 accuracy change is
            measured on them (labels are class indices of the head / class table).
        image_size: side of the (square) model input; default the backbone's nominal size.
        resize: shorter side the runtime resizes images to before the centre crop of
            ``image_size`` (default ``image_size``: the whole image, as pyxfer's loaders).
        dynamic_size: keep height and width dynamic (True: required; False: batch only;
            None: when the backbone allows it).
        class_names: class names (default: those of the model directory, else ``"0"..``).
        task: ``"classifier"``, ``"features"`` or ``"zeroshot"`` (default: the model's).
        class_embeddings: (K, E) class table of a zero-shot model (default: the model
            directory's ``class_embeddings`` array).
        l2_normalize: L2-normalise features in the graph (default: True for zero-shot).
        logit_scale: zero-shot scores are ``logit_scale * cosine`` before the softmax
            (default: the model's ``extra["logit_scale"]``, else 1 / 0.07).
        ort_format: also write ``model.ort`` (ORT format for mobile runtimes).
        overwrite: replace an existing bundle (only once the new one is complete).

    Returns:
        the bundle directory.

    Raises:
        ExportError: the model cannot be captured or translated (names the op or line).
        VerificationError: a self-check failed (no bundle is written).
    """
    from pyxfer.export.quantize import convert_to_ort, quantize_int8

    if input not in fmt.INPUTS:
        raise ValueError(f"input: expected one of {fmt.INPUTS}, received {input!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize: expected None or 'int8', received {quantize!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 23:
        raise ValueError(f"opset: expected an integer in [13, 23], received {opset!r}")
    if int(calibration_count) < 1:
        raise ValueError(f"calibration_count: expected >= 1, received {calibration_count}")

    if Path(out_dir).exists() and not overwrite:
        raise ValueError(
            f"out_dir: {os.fspath(out_dir)!r} already exists; choose a new path or overwrite it"
        )
    check_replaceable(out_dir, BUNDLE_MARKER, "a bundle", "out_dir")  # never a user's folder
    loaded = _resolve_model(model_or_dir)
    saved = loaded if isinstance(loaded, SavedModel) else None
    backbone: Backbone = saved.backbone if saved else loaded  # type: ignore[assignment]
    spec: InputSpec = saved.input_spec if saved else backbone.input_spec
    where = f"backbone {saved.backbone_name!r}" if saved else type(backbone).__name__
    num_classes = int(getattr(backbone, "num_classes", 0))

    task = task or (saved.task if saved else ("classifier" if num_classes else "features"))
    if task not in fmt.TASKS:
        raise ValueError(f"task: expected one of {fmt.TASKS}, received {task!r}")
    head = head or ("logits" if task == "classifier" else "features")
    if head not in fmt.HEADS:
        raise ValueError(f"head: expected one of {fmt.HEADS}, received {head!r}")
    if head in ("logits", "probs") and num_classes == 0:
        raise ValueError(f"head: {head!r} needs a classifier head; this model has none")
    if task == "zeroshot" and head != "features":
        raise ValueError(f"head: a zero-shot bundle uses head='features', received {head!r}")

    names = (
        list(class_names) if class_names is not None else list(saved.class_names if saved else [])
    )
    table: np.ndarray | None = None
    projection = projection_bias = None
    if task == "zeroshot":
        if class_embeddings is None and saved is not None and "class_embeddings" in saved.arrays:
            class_embeddings = saved.arrays["class_embeddings"].numpy()
        if class_embeddings is None:
            raise ValueError("class_embeddings: a zero-shot export needs the (K, E) class table")
        table = np.ascontiguousarray(np.asarray(class_embeddings, np.float32))
        if table.ndim != 2:
            raise ValueError(f"class_embeddings: expected (K, E), received {table.shape}")
        if saved is not None and "projection" in saved.arrays:
            projection = saved.arrays["projection"].float()
            if "projection_bias" in saved.arrays:
                projection_bias = saved.arrays["projection_bias"].float()
        width = projection.shape[0] if projection is not None else backbone.num_features
        if table.shape[1] != width:
            raise ValueError(
                f"class_embeddings: expected width {width} (the embedding width), received "
                f"{table.shape[1]}"
            )
        n_classes = table.shape[0]
    else:
        n_classes = num_classes if head in ("logits", "probs") else len(names)
    if not names and n_classes:
        names = [str(i) for i in range(n_classes)]
    if (head in ("logits", "probs") or task == "zeroshot") and len(names) != n_classes:
        raise ValueError(f"class_names: expected {n_classes} names, received {len(names)}")
    if l2_normalize is None:
        l2_normalize = task == "zeroshot"
    if logit_scale is None:
        extra_scale = saved.extra.get("logit_scale") if saved else None
        logit_scale = float(extra_scale) if extra_scale is not None else DEFAULT_LOGIT_SCALE

    crop = int(image_size or spec.size)
    resize = int(resize or crop)
    if crop < spec.min_size:
        raise ValueError(f"image_size: expected >= {spec.min_size}, received {crop}")
    if resize < crop:
        raise ValueError(f"resize: expected >= image_size={crop}, received {resize}")

    # real images: calibration, else the held-out images, else the embedded digits
    if calibration is not None:
        calib_images = _images_of(calibration, "calibration")
    elif holdout is not None:
        calib_images = _images_of(holdout[0], "holdout")
    else:
        if quantize:
            raise ValueError("calibration: int8 quantisation needs calibration images")
        calib_images = pyxfer.load_dataset("digits").images
    if quantize and holdout is None:
        log.warning("no holdout images: the int8 accuracy change is not measured")

    def model_inputs(images: ImagesLike) -> np.ndarray:
        batch = resize_crop(images, resize=resize, crop=crop, channels=spec.channels)
        if input == "uint8-nhwc":
            return batch
        from pyxfer.ops import normalize

        return normalize(batch, spec.mean, spec.std)

    module = ExportModule(
        export_twin(backbone),
        spec,
        input=input,
        head=head,
        l2_normalize=bool(l2_normalize),
        projection=projection,
        projection_bias=projection_bias,
    ).eval()
    verify_x = model_inputs(_pick(calib_images, VERIFY_IMAGES, seed=1))
    output_name = head
    nhwc = input == "uint8-nhwc"
    h_ax, w_ax = (1, 2) if nhwc else (2, 3)
    example = torch.from_numpy(np.ascontiguousarray(verify_x[:2]))
    if len(example) < 2:
        example = torch.cat([example, example])
    size_mode = {None: "auto", True: "required", False: None}[dynamic_size]
    axes = {0: "required", **({h_ax: size_mode, w_ax: size_mode} if size_mode else {})}
    program = export_program(module, example, axes, where=where)
    proto = program_to_onnx(
        program, opset=opset, input_name=INPUT_NAME, output_name=output_name, where=where
    )
    dyn = rename_dims(proto, {0: "batch", h_ax: "height", w_ax: "width"})
    required = [0, *((h_ax, w_ax) if dynamic_size else ())]
    if dynamic_size is None and (h_ax in dyn) != (w_ax in dyn):
        required += [h_ax, w_ax]  # one of the two dynamic is a bug, not a choice
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)

    out = Path(out_dir)
    with atomic_directory(out, overwrite=overwrite, marker=BUNDLE_MARKER, what="a bundle") as tmp:
        model_files = save_proto(proto, tmp / "model.onnx")
        graph = check_graph(
            tmp / "model.onnx",
            input_name=INPUT_NAME,
            input_dtype="uint8" if nhwc else "float32",
            rank=4,
            required_dynamic=required,
        )
        fp32 = _session(tmp / "model.onnx")

        def scores(outputs: np.ndarray) -> np.ndarray:
            return _l2n(outputs) @ _l2n(table).T if table is not None else outputs

        has_classes = head in ("logits", "probs") or table is not None
        report = parity(
            module,
            lambda x: _run(fp32, x),
            verify_x,
            batch_sizes=VERIFY_BATCHES,
            scores=scores if has_classes else None,
        )
        report["graph"] = graph
        report["data"] = (
            "calibration"
            if calibration is not None
            else ("holdout" if holdout is not None else "digits")
        )
        files = list(model_files)
        models = {"fp32": "model.onnx"}
        metrics: dict[str, Any] = dict(saved.extra.get("metrics", {})) if saved else {}
        quant_info = None
        if quantize == "int8":
            calib_x = model_inputs(_pick(calib_images, int(calibration_count), seed=0))
            quant_info = quantize_int8(
                tmp / "model.onnx",
                tmp / "model.int8.onnx",
                input_name=INPUT_NAME,
                calibration_inputs=calib_x,
                activation_type=activation_type,
                calibrate_method=calibrate_method,
            )
            check_graph(
                tmp / "model.int8.onnx",
                input_name=INPUT_NAME,
                input_dtype="uint8" if nhwc else "float32",
                rank=4,
                required_dynamic=required,
            )
            files.append("model.int8.onnx")
            models["int8"] = "model.int8.onnx"
            metrics["int8"] = _int8_metrics(
                fp32,
                _session(tmp / "model.int8.onnx"),
                model_inputs,
                verify_x,
                holdout,
                scores if has_classes else None,
            )
        if table is not None:
            np.save(tmp / "classes.npy", table)
            files.append("classes.npy")
        meta: dict[str, Any] = {
            "format": fmt.FORMAT,
            "format_version": fmt.FORMAT_VERSION,
            "task": task,
            "head": head,
            "class_names": names,
            "input": {
                "name": INPUT_NAME,
                "layout": "NHWC" if nhwc else "NCHW",
                "dtype": "uint8" if nhwc else "float32",
                "channels": spec.channels,
                "size": [crop, crop],
                "dynamic_axes": {str(k): v for k, v in graph["dynamic_axes"].items()},
            },
            "output": {
                "name": output_name,
                "width": int(_run(fp32, verify_x[:1]).shape[1]),
                "l2_normalized": bool(head == "features" and l2_normalize),
            },
            "preprocess": {
                "resize": resize,
                "crop": crop,
                "interpolation": "bilinear, antialiased",
                "crop_offset": "int(round((size - crop) / 2))",
                "mean": list(spec.mean),
                "std": list(spec.std),
                "cast_in_graph": nhwc,
                "layout_in_graph": nhwc,
                "normalize_in_graph": nhwc,
            },
            "models": models,
            "metrics": metrics,
            "parity": report,
            "quantization": quant_info,
            "provenance": {
                **_versions(int(opset_used)),
                "backbone": (
                    {"name": saved.backbone_name, "kwargs": saved.backbone_kwargs}
                    if saved
                    else {"class": type(backbone).__name__}
                ),
                "input_spec": spec.to_dict(),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            },
        }
        if table is not None:
            meta["zeroshot"] = {"classes_file": "classes.npy", "logit_scale": float(logit_scale)}
        json.dumps(meta)
        for name in models.values():
            _set_metadata(tmp / name, meta)
        if ort_format:
            files.append(convert_to_ort(tmp / "model.onnx", tmp).name)
        meta["files"] = fmt.file_records(tmp, files)
        (tmp / fmt.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote bundle %s (parity max rel diff %.2e)", out, report["max_rel_diff"])
    return out


def _set_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store the bundle metadata in the model's ``metadata_props`` (graph unchanged)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = fmt.METADATA_KEY, fmt.canonical_json(fmt.meta_without_files(meta))
    for key in ("task", "head"):
        e = model.metadata_props.add()
        e.key, e.value = f"pyxfer.{key}", str(meta[key])
    model.producer_name, model.producer_version = "pyxfer", pyxfer.__version__
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx", delete=False) as f:
        tmp_path = Path(f.name)
    try:
        onnx.save_model(model, str(tmp_path))
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _int8_metrics(
    fp32: Any,
    int8: Any,
    model_inputs: Any,
    verify_x: np.ndarray,
    holdout: tuple[Any, np.ndarray] | None,
    scores: Any,
) -> dict[str, Any]:
    """int8 vs fp32: agreement and cosine on the verification images, accuracy on holdout."""
    from pyxfer.export.verify import _cosine_rows

    a, b = _run(fp32, verify_x), _run(int8, verify_x)
    result: dict[str, Any] = {"verify_min_cosine": float(_cosine_rows(b, a).min())}
    if holdout is None:
        if scores is not None:
            result["verify_top1_agreement"] = float(
                (scores(a).argmax(1) == scores(b).argmax(1)).mean()
            )
        return result
    images, labels = holdout
    labels = np.asarray(labels, np.int64)
    x = model_inputs(_images_of(images, "holdout"))
    if len(labels) != len(x):
        raise ValueError(f"holdout: {len(x)} images but {len(labels)} labels")
    a, b = _run(fp32, x), _run(int8, x)
    result["holdout_images"] = len(x)
    result["holdout_mean_cosine"] = float(_cosine_rows(b, a).mean())
    if scores is not None:
        pa, pb = scores(a).argmax(1), scores(b).argmax(1)
        acc_a, acc_b = float((pa == labels).mean()), float((pb == labels).mean())
        result.update(
            holdout_accuracy_fp32=acc_a,
            holdout_accuracy_int8=acc_b,
            accuracy_change_points=round((acc_b - acc_a) * 100.0, 4),
            top1_agreement=float((pa == pb).mean()),
        )
    return result
