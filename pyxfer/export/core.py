"""``to_onnx``: trace, translate, verify, quantise and write a bundle atomically; its options
as one :class:`ExportSpec`."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import pyxfer
from pyxfer.backbone import Backbone, InputSpec
from pyxfer.export._trace import export_program, program_to_onnx, rename_dims, save_proto
from pyxfer.export.verify import VerificationError, check_graph, cosine_rows, parity
from pyxfer.export.wrap import ExportModule, export_twin
from pyxfer.fileio import atomic_directory, check_replaceable
from pyxfer.modelio import SavedModel, load_model, locate_model
from pyxfer.runtime import bundle as fmt
from pyxfer.runtime import verification as vset
from pyxfer.runtime._preprocess import resize_crop

log = logging.getLogger("pyxfer.export")

INPUT_NAME = "images"
DEFAULT_OPSET = 18
DEFAULT_LOGIT_SCALE = 1.0 / 0.07
VERIFY_IMAGES = 16
VERIFY_BATCHES = (1, 8)
INT8_ON_LOSS = ("refuse", "warn")
#: an existing directory is replaced (overwrite) only if it is a bundle that pyxfer wrote
BUNDLE_MARKER = (fmt.META_FILE, fmt.FORMAT)
ImagesLike = np.ndarray | Sequence[np.ndarray]


def _resolve_model(model_or_dir: Any) -> SavedModel | nn.Module:
    if isinstance(model_or_dir, (SavedModel, nn.Module)):
        return model_or_dir
    if isinstance(model_or_dir, (str, os.PathLike)):
        return load_model(locate_model(model_or_dir, argument="model").path)
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


def _pick(images: ImagesLike, count: int, seed: int) -> ImagesLike:
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


@dataclass(frozen=True)
class ExportSpec:
    """What :func:`to_onnx` exports and how: its options as one value (the defaults are
    :func:`to_onnx`'s; see there for each field).

    Examples:
        >>> spec = ExportSpec(input="uint8-nhwc", quantize="int8")
        >>> to_onnx("runs/ft", "bundle/", spec, calibration=images)  # doctest: +SKIP
    """

    input: str = "float-nchw"
    head: str | None = None
    opset: int = DEFAULT_OPSET
    quantize: str | None = None
    calibration: Any = None
    calibration_count: int = 256
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    calibrate_method: str = "minmax"
    holdout: tuple[Any, np.ndarray | None] | None = None
    holdout_fraction: float = 0.2
    int8_max_loss: float = 0.5
    int8_on_loss: str = "refuse"
    verify_count: int = 32
    image_size: int | None = None
    resize: int | None = None
    dynamic_size: bool | None = None
    class_names: Sequence[str] | None = None
    task: str | None = None
    class_embeddings: np.ndarray | None = None
    l2_normalize: bool | None = None
    logit_scale: float | None = None
    ort_format: bool = False
    overwrite: bool = False

    def check(self) -> ExportSpec:
        """Raise a ``ValueError`` for an option that is wrong whatever the model; ``self``."""
        if self.input not in fmt.INPUTS:
            raise ValueError(f"input: expected one of {fmt.INPUTS}, received {self.input!r}")
        if self.quantize not in (None, "int8"):
            raise ValueError(f"quantize: expected None or 'int8', received {self.quantize!r}")
        opset = self.opset
        if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 23:
            raise ValueError(f"opset: expected an integer in [13, 23], received {opset!r}")
        if int(self.calibration_count) < 1:
            raise ValueError(f"calibration_count: expected >= 1, received {self.calibration_count}")
        if not 0.0 < float(self.holdout_fraction) < 1.0:
            raise ValueError(
                f"holdout_fraction: expected a number in (0, 1), received {self.holdout_fraction!r}"
            )
        loss = self.int8_max_loss
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not loss >= 0:
            raise ValueError(f"int8_max_loss: expected points >= 0, received {loss!r}")
        if self.int8_on_loss not in INT8_ON_LOSS:
            raise ValueError(
                f"int8_on_loss: expected one of {INT8_ON_LOSS}, received {self.int8_on_loss!r}"
            )
        count, most = self.verify_count, vset.MAX_IMAGES
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= most:
            raise ValueError(
                f"verify_count: expected an integer in [1, {vset.MAX_IMAGES}], received {count!r}"
            )
        return self

    @property
    def nhwc(self) -> bool:
        """Whether the bundle takes raw uint8 (N, H, W, C) images."""
        return self.input == "uint8-nhwc"


def to_onnx(
    model_or_dir: Any,
    out_dir: str | os.PathLike[str],
    spec: ExportSpec | None = None,
    **options: Any,
) -> Path:
    """Export a model to an ONNX bundle that verifies itself (nothing is written on failure).

    The options are the fields of :class:`ExportSpec`, given as ``spec``, as keywords, or both
    (keywords override the spec's fields).

    Args:
        model_or_dir: a model directory written by :func:`pyxfer.modelio.save_model`, a run
            directory containing one as ``model/``, a loaded :class:`SavedModel`, or a backbone.
        out_dir: the bundle directory to create.
        spec: the options as one :class:`ExportSpec` (default: all defaults).
        input: ``"float-nchw"`` (normalised float32 (N, C, H, W)) or ``"uint8-nhwc"`` (raw
            uint8 (N, H, W, C); cast, layout and normalisation inside the graph).
        head: ``"logits"``, ``"probs"`` or ``"features"`` (default: logits for classifiers,
            features otherwise; zero-shot bundles always use features).
        opset: ONNX opset of the default domain.
        quantize: None, or ``"int8"`` for an extra static QDQ ``model.int8.onnx`` with a
            verification set (``verify_images.npy``, ``verify_outputs.npy``) that the runtime
            checks it against on the CPU it runs on.
        calibration: real training images for int8 calibration (uint8 (N, H, W, C) array,
            list of (H, W, C) arrays, or an ImageStore); also used for the parity check.
        calibration_count: how many calibration images to use (sampled with seed 0).
        activation_type: int8 activations ``"uint8"`` (default) or ``"int8"``.
        weight_type: int8 weights ``"int8"`` (default) or ``"uint8"``.
        reduce_range: 7-bit weights (default True): U8S8 then computes the same on x86 CPUs
            without VNNI (saturating 16-bit sums) as with VNNI; see
            :mod:`pyxfer.export.quantize`.
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        holdout: ``(images, labels)`` held-out images: the int8 accuracy change is measured
            on them (labels are class indices of the head / class table; -1 or ``None``:
            unlabelled, then the top-1 agreement with fp32 is measured). Default with int8:
            ``holdout_fraction`` of the calibration images, split off before calibrating
            (stratified by class when the calibration data is a labelled ImageStore).
        holdout_fraction: share of the calibration images held out when ``holdout`` is None.
        int8_max_loss: the int8 model may lose at most this many points of top-1 accuracy on
            the held-out images (without labels: of top-1 agreement with fp32, which bounds
            the accuracy change).
        int8_on_loss: ``"refuse"`` (default: raise :class:`VerificationError`, nothing is
            written) or ``"warn"`` (log a warning, keep the int8 model, record it).
        verify_count: images in the int8 verification set (from the held-out images).
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
        TypeError: an option that is not a field of :class:`ExportSpec`.
    """
    spec = (replace(spec, **options) if spec is not None else ExportSpec(**options)).check()
    out = _check_destination(out_dir, spec.overwrite)
    target = _target(_resolve_model(model_or_dir), spec)
    images, holdout = _reference_images(spec)
    module = _export_module(target, spec)
    traced = _trace(module, target, spec, images)
    with atomic_directory(
        out, overwrite=spec.overwrite, marker=BUNDLE_MARKER, what="a bundle"
    ) as tmp:
        _write_bundle(tmp, module, target, spec, images, holdout, traced)
    log.info("wrote bundle %s (parity max rel diff %.2e)", out, traced.max_rel_diff)
    return out


# -- the steps of to_onnx ---------------------------------------------------------------------
@dataclass
class _Target:
    """The model to export, resolved against the options: what the bundle will contain."""

    backbone: Backbone
    saved: SavedModel | None
    spec: InputSpec
    where: str  # the model, for error messages
    task: str
    head: str
    names: list[str]
    table: np.ndarray | None  # (K, E) zero-shot class table
    projection: torch.Tensor | None
    projection_bias: torch.Tensor | None
    l2_normalize: bool
    logit_scale: float
    crop: int
    resize: int
    grid: int = 1  # features: the feature map averaged on a grid x grid layout (1: pooled)

    def inputs(self, images: ImagesLike, input: str) -> np.ndarray:
        """What the graph takes for ``images``: resized and cropped, normalised if float."""
        batch = resize_crop(images, resize=self.resize, crop=self.crop, channels=self.spec.channels)
        if input == "uint8-nhwc":
            return batch
        from pyxfer.ops import normalize

        return normalize(batch, self.spec.mean, self.spec.std)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """Class scores of the graph's outputs (cosine to the class table for zero-shot)."""
        return _l2n(outputs) @ _l2n(self.table).T if self.table is not None else outputs

    @property
    def has_classes(self) -> bool:
        return self.head in ("logits", "probs") or self.table is not None


@dataclass
class _Traced:
    """The captured graph and what it was captured and will be verified with."""

    proto: Any
    verify_x: np.ndarray
    required: list[int]  # axes that must be dynamic
    opset_used: int
    max_rel_diff: float = float("nan")


def _check_destination(out_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    if Path(out_dir).exists() and not overwrite:
        raise ValueError(
            f"out_dir: {os.fspath(out_dir)!r} already exists; choose a new path or overwrite it"
        )
    check_replaceable(out_dir, BUNDLE_MARKER, "a bundle", "out_dir")  # never a user's folder
    return Path(out_dir)


def _target(loaded: SavedModel | nn.Module, spec: ExportSpec) -> _Target:
    """Resolve task, head, class names, zero-shot table and input geometry; check them."""
    saved = loaded if isinstance(loaded, SavedModel) else None
    # a module given directly is used as a backbone (checked by tracing it)
    backbone: Any = saved.backbone if saved else loaded
    input_spec: InputSpec = saved.input_spec if saved else backbone.input_spec
    where = f"backbone {saved.backbone_name!r}" if saved else type(backbone).__name__
    num_classes = int(getattr(backbone, "num_classes", 0))

    task = spec.task or (saved.task if saved else ("classifier" if num_classes else "features"))
    if task not in fmt.TASKS:
        raise ValueError(f"task: expected one of {fmt.TASKS}, received {task!r}")
    head = spec.head or ("logits" if task == "classifier" else "features")
    if head not in fmt.HEADS:
        raise ValueError(f"head: expected one of {fmt.HEADS}, received {head!r}")
    if head in ("logits", "probs") and num_classes == 0:
        raise ValueError(f"head: {head!r} needs a classifier head; this model has none")
    if task == "zeroshot" and head != "features":
        raise ValueError(f"head: a zero-shot bundle uses head='features', received {head!r}")

    if spec.class_names is not None:
        names = list(spec.class_names)
    else:
        names = list(saved.class_names) if saved else []
    table: np.ndarray | None = None
    projection = projection_bias = None
    if task == "zeroshot":
        table, projection, projection_bias = _zeroshot_table(backbone, saved, spec)
        n_classes = table.shape[0]
    else:
        n_classes = num_classes if head in ("logits", "probs") else len(names)
    if not names and n_classes:
        names = [str(i) for i in range(n_classes)]
    if (head in ("logits", "probs") or task == "zeroshot") and len(names) != n_classes:
        raise ValueError(f"class_names: expected {n_classes} names, received {len(names)}")
    l2_normalize = spec.l2_normalize if spec.l2_normalize is not None else task == "zeroshot"
    logit_scale = spec.logit_scale
    if logit_scale is None:
        extra_scale = saved.extra.get("logit_scale") if saved else None
        logit_scale = float(extra_scale) if extra_scale is not None else DEFAULT_LOGIT_SCALE

    crop = int(spec.image_size or input_spec.size)
    resize = int(spec.resize or crop)
    if crop < input_spec.min_size:
        raise ValueError(f"image_size: expected >= {input_spec.min_size}, received {crop}")
    if resize < crop:
        raise ValueError(f"resize: expected >= image_size={crop}, received {resize}")
    if resize > fmt.MAX_SIDE:
        raise ValueError(
            f"resize: expected <= {fmt.MAX_SIDE} (pyxfer.runtime.bundle.MAX_SIDE, the largest "
            f"side a bundle may ask for), received {resize}"
        )
    return _Target(
        backbone,
        saved,
        input_spec,
        where,
        task,
        head,
        names,
        table,
        projection,
        projection_bias,
        bool(l2_normalize),
        float(logit_scale),
        crop,
        resize,
        int(saved.extra.get("feature_grid", 1)) if saved and task == "zeroshot" else 1,
    )


def _zeroshot_table(
    backbone: Backbone, saved: SavedModel | None, spec: ExportSpec
) -> tuple[np.ndarray, torch.Tensor | None, torch.Tensor | None]:
    """A zero-shot model's (K, E) class table and its optional projection (E, D) and bias."""
    class_embeddings = spec.class_embeddings
    if class_embeddings is None and saved is not None and "class_embeddings" in saved.arrays:
        class_embeddings = saved.arrays["class_embeddings"].numpy()
    if class_embeddings is None:
        raise ValueError("class_embeddings: a zero-shot export needs the (K, E) class table")
    table = np.ascontiguousarray(np.asarray(class_embeddings, np.float32))
    if table.ndim != 2:
        raise ValueError(f"class_embeddings: expected (K, E), received {table.shape}")
    projection = projection_bias = None
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
    return table, projection, projection_bias


Holdout = tuple[ImagesLike, np.ndarray | None]


def _reference_images(spec: ExportSpec) -> tuple[ImagesLike, Holdout | None]:
    """Real images for calibration and the parity check (the calibration images, else the
    held-out images, else the embedded digits) and the held-out images of the int8 check."""
    if spec.calibration is not None:
        images = _images_of(spec.calibration, "calibration")
    elif spec.holdout is not None:
        images = _images_of(spec.holdout[0], "holdout")
    else:
        if spec.quantize:
            raise ValueError("calibration: int8 quantisation needs calibration images")
        images = pyxfer.load_dataset("digits").images
    if not spec.quantize:
        return images, None
    if spec.holdout is not None:
        held_images, labels = spec.holdout
        return images, (_images_of(held_images, "holdout"), labels)
    return _split_holdout(images, spec)


def _split_holdout(images: ImagesLike, spec: ExportSpec) -> tuple[ImagesLike, Holdout | None]:
    """Hold out ``spec.holdout_fraction`` of the calibration images (stratified by class when
    they are labelled): (the images left to calibrate on, (held-out images, labels))."""
    from pyxfer.data import ImageStore, stratified_split

    data = spec.calibration
    n = len(images)
    labels = (
        np.asarray(data.labels, np.int64)
        if isinstance(data, ImageStore)
        else np.full(n, -1, np.int64)
    )
    if n < 2:
        log.warning(
            "int8: %d calibration image(s), none to hold out: the int8 accuracy change is not "
            "measured; pass holdout=(images, labels) or more calibration images",
            n,
        )
        return images, None
    frac = float(spec.holdout_fraction)
    rest, held = stratified_split(labels, (1.0 - frac, frac), seed=0)
    if len(held) == 0 or len(rest) == 0:
        rest, held = np.arange(n - 1), np.array([n - 1])

    def take(idx: np.ndarray) -> ImagesLike:
        return images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]

    held_labels = labels[held] if (labels[held] >= 0).any() else None
    log.info(
        "int8: %d of %d calibration images held out to measure the int8 model (%s)",
        len(held),
        n,
        "labelled" if held_labels is not None else "unlabelled: top-1 agreement",
    )
    return take(rest), (take(held), held_labels)


def _export_module(target: _Target, spec: ExportSpec) -> ExportModule:
    return ExportModule(
        export_twin(target.backbone),
        target.spec,
        input=spec.input,
        head=target.head,
        l2_normalize=target.l2_normalize,
        projection=target.projection,
        projection_bias=target.projection_bias,
        grid=target.grid,
    ).eval()


def _trace(module: ExportModule, target: _Target, spec: ExportSpec, images: ImagesLike) -> _Traced:
    """Capture ``module`` (dynamic batch; height and width as ``dynamic_size`` asks) and
    translate it to ONNX."""
    verify_x = target.inputs(_pick(images, VERIFY_IMAGES, seed=1), spec.input)
    h_ax, w_ax = (1, 2) if spec.nhwc else (2, 3)
    example = torch.from_numpy(np.ascontiguousarray(verify_x[:2]))
    if len(example) < 2:
        example = torch.cat([example, example])
    size_mode = {None: "auto", True: "required", False: None}[spec.dynamic_size]
    axes = {0: "required", **({h_ax: size_mode, w_ax: size_mode} if size_mode else {})}
    program = export_program(module, example, axes, where=target.where)
    proto = program_to_onnx(
        program,
        opset=spec.opset,
        input_name=INPUT_NAME,
        output_name=target.head,
        where=target.where,
    )
    dyn = rename_dims(proto, {0: "batch", h_ax: "height", w_ax: "width"})
    required = [0, *((h_ax, w_ax) if spec.dynamic_size else ())]
    if spec.dynamic_size is None and (h_ax in dyn) != (w_ax in dyn):
        required += [h_ax, w_ax]  # one of the two dynamic is a bug, not a choice
    opset_used = next(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), spec.opset
    )
    return _Traced(proto, verify_x, required, int(opset_used))


def _check_model_file(path: Path, spec: ExportSpec, traced: _Traced) -> dict[str, Any]:
    return check_graph(
        path,
        input_name=INPUT_NAME,
        input_dtype="uint8" if spec.nhwc else "float32",
        rank=4,
        required_dynamic=traced.required,
    )


def _write_bundle(
    tmp: Path,
    module: ExportModule,
    target: _Target,
    spec: ExportSpec,
    images: ImagesLike,
    holdout: Holdout | None,
    traced: _Traced,
) -> None:
    """Write the fp32 model, verify it, quantise, and write the metadata (into ``tmp``)."""
    from pyxfer.export.quantize import convert_to_ort

    files = list(save_proto(traced.proto, tmp / "model.onnx"))
    graph = _check_model_file(tmp / "model.onnx", spec, traced)
    fp32 = _session(tmp / "model.onnx")
    report = parity(
        module,
        lambda x: _run(fp32, x),
        traced.verify_x,
        batch_sizes=VERIFY_BATCHES,
        scores=target.scores if target.has_classes else None,
    )
    traced.max_rel_diff = report["max_rel_diff"]
    report["graph"] = graph
    report["data"] = (
        "calibration"
        if spec.calibration is not None
        else ("holdout" if spec.holdout is not None else "digits")
    )
    models = {"fp32": "model.onnx"}
    metrics: dict[str, Any] = dict(target.saved.extra.get("metrics", {})) if target.saved else {}
    quant_info = verification = None
    if spec.quantize == "int8":
        quant_info, metrics["int8"], verification = _write_int8(
            tmp, fp32, target, spec, images, holdout, traced
        )
        files += ["model.int8.onnx", vset.IMAGES_FILE, vset.OUTPUTS_FILE]
        models["int8"] = "model.int8.onnx"
    if target.table is not None:
        np.save(tmp / "classes.npy", target.table)
        files.append("classes.npy")
    width = int(_run(fp32, traced.verify_x[:1]).shape[1])
    meta = _metadata(target, spec, traced, graph, width, models, metrics, report, quant_info)
    if verification is not None:
        meta["verification"] = verification
    for name in models.values():
        _set_metadata(tmp / name, meta)
    if spec.ort_format:
        files.append(convert_to_ort(tmp / "model.onnx", tmp).name)
    meta["files"] = fmt.file_records(tmp, files)
    (tmp / fmt.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _write_int8(
    tmp: Path,
    fp32: Any,
    target: _Target,
    spec: ExportSpec,
    images: ImagesLike,
    holdout: Holdout | None,
    traced: _Traced,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``model.int8.onnx`` calibrated on real images and its verification set; the
    quantisation record, the int8 metrics (agreement with fp32, accuracy change on the
    held-out images, checked against ``int8_max_loss``) and the ``verification`` record."""
    from pyxfer.export.quantize import quantize_int8

    calib_x = target.inputs(_pick(images, int(spec.calibration_count), seed=0), spec.input)
    quant_info = quantize_int8(
        tmp / "model.onnx",
        tmp / "model.int8.onnx",
        input_name=INPUT_NAME,
        calibration_inputs=calib_x,
        activation_type=spec.activation_type,
        weight_type=spec.weight_type,
        reduce_range=spec.reduce_range,
        calibrate_method=spec.calibrate_method,
    )
    _check_model_file(tmp / "model.int8.onnx", spec, traced)
    int8 = _session(tmp / "model.int8.onnx")
    scores = target.scores if target.has_classes else None
    metrics = _int8_metrics(
        fp32,
        int8,
        lambda imgs: target.inputs(imgs, spec.input),
        traced.verify_x,
        holdout,
        scores,
    )
    metrics["isa"] = vset.int8_isa()
    _check_int8_loss(metrics, spec)
    source = holdout[0] if holdout is not None else images
    verification = _write_verification(tmp, fp32, int8, target, spec, source, scores)
    return quant_info, metrics, verification


def _check_int8_loss(metrics: dict[str, Any], spec: ExportSpec) -> None:
    """Refuse (or warn about) an int8 model that loses more than ``int8_max_loss`` points."""
    limit = float(spec.int8_max_loss)
    if "accuracy_change_points" in metrics:
        loss = -float(metrics["accuracy_change_points"])
        what = (
            f"top-1 accuracy on {metrics['holdout_images']} held-out images "
            f"{metrics['holdout_accuracy_fp32']:.2%} -> {metrics['holdout_accuracy_int8']:.2%}"
        )
    elif "top1_agreement" in metrics:
        loss = round((1.0 - float(metrics["top1_agreement"])) * 100.0, 4)
        what = (
            f"top-1 agreement with fp32 {metrics['top1_agreement']:.2%} on "
            f"{metrics['holdout_images']} unlabelled held-out images (it bounds the accuracy "
            "change; labels would measure it)"
        )
    else:
        log.warning(
            "int8: no class scores on held-out images to check the loss against "
            "int8_max_loss=%s (features head: mean cosine %s)",
            limit,
            metrics.get("holdout_mean_cosine", "not measured"),
        )
        metrics["loss_check"] = "not measured"
        return
    metrics["max_loss_points"] = limit
    if loss <= limit or math.isclose(loss, limit):
        metrics["loss_check"] = "passed"
        return
    message = (
        f"int8 loses {loss:.2f} points ({what}), more than int8_max_loss={limit:g} "
        f"(scheme {spec.activation_type}/{spec.weight_type}, reduce_range={spec.reduce_range}, "
        f"on this CPU: {metrics['isa']})"
    )
    if spec.int8_on_loss == "refuse":
        raise VerificationError(
            message + "; nothing was written. Try more or other calibration images, "
            "calibrate_method='percentile', or accept it with int8_on_loss='warn' "
            "(--int8-on-loss warn)"
        )
    metrics["loss_check"] = "failed (kept: int8_on_loss='warn')"
    log.warning("WARNING: %s; the int8 model is kept (int8_on_loss='warn')", message)


def _write_verification(
    tmp: Path,
    fp32: Any,
    int8: Any,
    target: _Target,
    spec: ExportSpec,
    source: ImagesLike,
    scores: Any,
) -> dict[str, Any]:
    """Write the verification set (uint8 images after resize and crop, fp32 outputs) and
    return its ``verification`` record: the int8 result here and the runtime tolerance."""
    images = resize_crop(
        _pick(source, int(spec.verify_count), seed=2),
        resize=target.resize,
        crop=target.crop,
        channels=target.spec.channels,
    )
    shape_meta = {
        "input": {"dtype": "uint8" if spec.nhwc else "float32"},
        "preprocess": {
            "crop": target.crop,
            "mean": list(target.spec.mean),
            "std": list(target.spec.std),
        },
    }
    x = vset.model_inputs(images, shape_meta)
    want = _run(fp32, x).astype(np.float32)
    here = vset.compare(_run(int8, x), want, scores)
    np.save(tmp / vset.IMAGES_FILE, np.ascontiguousarray(images))
    np.save(tmp / vset.OUTPUTS_FILE, np.ascontiguousarray(want))
    return {
        "images": vset.IMAGES_FILE,
        "outputs": vset.OUTPUTS_FILE,
        "count": len(images),
        "at_export": {**here, "isa": vset.int8_isa()},
        "tolerance": vset.tolerance(here),
    }


def _metadata(
    target: _Target,
    spec: ExportSpec,
    traced: _Traced,
    graph: dict[str, Any],
    width: int,
    models: dict[str, str],
    metrics: dict[str, Any],
    report: dict[str, Any],
    quant_info: dict[str, Any] | None,
) -> dict[str, Any]:
    """``pyxfer.json``: what the bundle is, how to feed it, how it was checked, provenance."""
    saved, nhwc = target.saved, spec.nhwc
    meta: dict[str, Any] = {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "task": target.task,
        "head": target.head,
        "class_names": target.names,
        "input": {
            "name": INPUT_NAME,
            "layout": "NHWC" if nhwc else "NCHW",
            "dtype": "uint8" if nhwc else "float32",
            "channels": target.spec.channels,
            "size": [target.crop, target.crop],
            "dynamic_axes": {str(k): v for k, v in graph["dynamic_axes"].items()},
        },
        "output": {
            "name": target.head,
            "width": width,
            "l2_normalized": bool(target.head == "features" and target.l2_normalize),
        },
        "preprocess": {
            "resize": target.resize,
            "crop": target.crop,
            "interpolation": "bilinear, antialiased",
            "crop_offset": "int(round((size - crop) / 2))",
            "mean": list(target.spec.mean),
            "std": list(target.spec.std),
            "cast_in_graph": nhwc,
            "layout_in_graph": nhwc,
            "normalize_in_graph": nhwc,
        },
        "models": models,
        "metrics": metrics,
        "parity": report,
        "quantization": quant_info,
        "provenance": {
            **_versions(traced.opset_used),
            "backbone": (
                {"name": saved.backbone_name, "kwargs": saved.backbone_kwargs}
                if saved
                else {"class": type(target.backbone).__name__}
            ),
            "input_spec": target.spec.to_dict(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(),
        },
    }
    if target.table is not None:
        meta["zeroshot"] = {"classes_file": "classes.npy", "logit_scale": target.logit_scale}
    json.dumps(meta)  # JSON-safe before anything is written with it
    return meta


def _set_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store the bundle metadata in the model's ``metadata_props`` (graph unchanged)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external data stays where it is
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
    holdout: Holdout | None,
    scores: Any,
) -> dict[str, Any]:
    """int8 vs fp32: agreement and cosine on the parity images; on the held-out images the
    top-1 agreement, and the accuracy change where they are labelled (-1: unlabelled)."""
    a, b = _run(fp32, verify_x), _run(int8, verify_x)
    result: dict[str, Any] = {"verify_min_cosine": float(cosine_rows(b, a).min())}
    if holdout is None:
        if scores is not None:
            result["verify_top1_agreement"] = float(
                (scores(a).argmax(1) == scores(b).argmax(1)).mean()
            )
        return result
    images, labels = holdout
    x = model_inputs(_images_of(images, "holdout"))
    a, b = _run(fp32, x), _run(int8, x)
    result["holdout_images"] = len(x)
    result["holdout_mean_cosine"] = float(cosine_rows(b, a).mean())
    if scores is None:
        return result
    pa, pb = scores(a).argmax(1), scores(b).argmax(1)
    result["top1_agreement"] = float((pa == pb).mean())
    if labels is None:
        return result
    labels = np.asarray(labels, np.int64)
    if labels.shape != (len(x),):
        raise ValueError(f"holdout: {len(x)} images but labels of shape {labels.shape}")
    known = labels >= 0
    if not known.any():
        return result
    acc_a = float((pa[known] == labels[known]).mean())
    acc_b = float((pb[known] == labels[known]).mean())
    result.update(
        holdout_labelled=int(known.sum()),
        holdout_accuracy_fp32=acc_a,
        holdout_accuracy_int8=acc_b,
        accuracy_change_points=round((acc_b - acc_a) * 100.0, 4),
    )
    return result
