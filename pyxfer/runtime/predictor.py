"""``Predictor``: load a bundle, check it, preprocess images, run onnxruntime."""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from pyxfer.runtime import bundle as fmt
from pyxfer.runtime import verification as vset
from pyxfer.runtime._preprocess import preprocess, resize_crop

log = logging.getLogger("pyxfer.runtime")

_ORT_DTYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}
INT8_CHECKS = ("fallback", "error", "warn", "off")


class Int8VerificationError(fmt.BundleError):
    """The int8 model does not hold on this CPU (``int8_check="error"``)."""


@dataclass
class Prediction:
    """Top-k classes of one image, best first."""

    labels: list[str]
    scores: list[float]
    indices: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "scores": self.scores, "indices": self.indices}


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Predictor:
    """Classify or embed images with an exported bundle (onnxruntime + numpy + Pillow).

    The bundle is checked when loaded: format version, every file's size and sha256, the
    model's metadata against ``pyxfer.json``, and the graph input against the recorded input
    spec. Every file it reads (the model, its external data, the zero-shot class table) must
    be a plain name listed in ``pyxfer.json``'s ``files``; it is read once and the bytes that
    were hashed are the bytes used (onnxruntime gets the model and its external data from
    memory, never a path). Anything wrong raises :class:`~pyxfer.runtime.BundleError`.

    With ``int8=True`` the int8 model is first checked on this CPU: it runs the bundle's
    verification set (held-out images and the fp32 outputs for them) and must stay within the
    tolerance recorded at export (relative error, top-1 agreement with fp32). int8 kernels
    differ between CPUs (x86 without VNNI adds products in saturating 16-bit sums), so a check
    on the export machine says little about this one. ``int8_check`` says what happens when
    it fails, or when the bundle has no verification set: ``"fallback"`` (default) logs a
    warning and runs the fp32 model, ``"error"`` raises :class:`Int8VerificationError`,
    ``"warn"`` logs a warning and runs int8 anyway, ``"off"`` skips the check.
    :attr:`model` says which model runs (``"fp32"`` or ``"int8"``), :attr:`verification`
    what the check measured.

    Args:
        bundle: the bundle directory written by ``pyxfer export``.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default, one per core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        int8: run ``model.int8.onnx`` (the bundle must have one).
        spin: let onnxruntime's idle threads spin; off by default (spinning threads slow
            down other work in the process, such as torch or data loading).
        batch_size: images per onnxruntime call.
        int8_check: ``"fallback"``, ``"error"``, ``"warn"`` or ``"off"`` (see above).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        *,
        threads: int = 0,
        providers: Sequence[str] | None = None,
        int8: bool = False,
        spin: bool = False,
        batch_size: int = 32,
        int8_check: str = "fallback",
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads: expected an integer >= 0, received {threads!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, received {batch_size}")
        if int8_check not in INT8_CHECKS:
            raise ValueError(f"int8_check: expected one of {INT8_CHECKS}, received {int8_check!r}")
        self.root = Path(bundle)
        self.meta = fmt.read_meta(self.root)
        models = self.meta.get("models", {})
        kind = "int8" if int8 else "fp32"
        if kind not in models:
            raise _bundle_error(self.root, f"has no {kind} model (models: {sorted(models)})")
        #: the model that runs: "fp32" or "int8"
        self.model = kind
        #: what the int8 check on this CPU measured (None: the fp32 model was asked for)
        self.verification: dict[str, Any] | None = None
        self.batch_size = int(batch_size)
        self.task: str = self.meta["task"]
        self.head: str = self.meta["head"]
        inp, pre = self._check_spec(self.meta.get("input"), self.meta.get("preprocess"))
        self.class_names: list[str] = list(self.meta.get("class_names", []))
        self.input_name: str = inp["name"]
        self.uint8_input = inp["dtype"] == "uint8"
        self.channels = int(inp["channels"])
        self.resize, self.crop = int(pre["resize"]), int(pre["crop"])
        self.mean = [float(v) for v in pre["mean"]]
        self.std = [float(v) for v in pre["std"]]

        self.threads, self.spin = threads, bool(spin)
        self._providers = list(providers or ["CPUExecutionProvider"])
        self._open(kind, inp)
        self._table: np.ndarray | None = None
        self.logit_scale = 1.0
        zs = self.meta.get("zeroshot")
        if zs:
            scale = zs.get("logit_scale")
            if isinstance(scale, bool) or not isinstance(scale, (int, float)):
                raise _bundle_error(self.root, f"zeroshot.logit_scale {scale!r} is not a number")
            if not math.isfinite(scale):
                raise _bundle_error(self.root, f"zeroshot.logit_scale {scale!r} is not finite")
            raw = fmt.read_file(self.root, self.meta, zs["classes_file"], "zeroshot.classes_file")
            try:
                table = np.load(io.BytesIO(raw), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise _bundle_error(
                    self.root, f"{zs['classes_file']} is not a .npy array ({exc})"
                ) from exc
            if table.ndim != 2 or table.shape[0] != len(self.class_names):
                raise _bundle_error(
                    self.root,
                    f"{zs['classes_file']} has shape {table.shape}, expected "
                    f"({len(self.class_names)}, E) (one row per class name)",
                )
            self._table = np.ascontiguousarray(table, np.float32)
            self.logit_scale = float(zs["logit_scale"])
        if kind == "int8":
            self._check_int8(int8_check, inp)

    def _open(self, kind: str, inp: dict[str, Any]) -> None:
        """Load the ``kind`` model into :attr:`session` (from the hashed bytes) and check it."""
        import onnxruntime as ort

        name = self.meta["models"][kind]
        self.model_path = self.root / name
        model_bytes = fmt.read_file(self.root, self.meta, name, f"models.{kind}")
        external = _external_data(self.root, self.meta, model_bytes, self.model_path.name)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        spinning = "1" if self.spin else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        if external:
            opts.add_external_initializers_from_files_in_memory(
                list(external), list(external.values()), [len(b) for b in external.values()]
            )
        try:
            self.session = ort.InferenceSession(model_bytes, opts, providers=self._providers)
        except Exception as exc:
            raise _bundle_error(self.root, f"{self.model_path.name} does not load: {exc}") from exc
        del model_bytes, external
        self.model = kind
        self._check_model(inp)

    def _check_int8(self, mode: str, inp: dict[str, Any]) -> None:
        """Run the verification set through the int8 model on this CPU; act on the result."""
        isa = vset.int8_isa()
        if mode == "off":
            self.verification = {"status": "off", "isa": isa}
            return
        if "verification" not in self.meta:
            problem = "the bundle has no verification set (exported by an older pyxfer)"
            self.verification = {"status": "unverified", "isa": isa, "problems": [problem]}
        else:
            images, want, rec = vset.load(self.root, self.meta)
            got = self.run(vset.model_inputs(images, self.meta))
            classes = self.head != "features" or self._table is not None
            measured = vset.compare(got, want, self._class_scores if classes else None)
            problems = vset.within(measured, rec["tolerance"])
            self.verification = {
                "status": "failed" if problems else "passed",
                "isa": isa,
                "images": len(images),
                "measured": measured,
                "tolerance": rec["tolerance"],
                "at_export": rec.get("at_export"),
                "problems": problems,
            }
            if not problems:
                log.info("int8 verified on this CPU (%s): %s", isa, measured)
                return
        message = (
            f"bundle {str(self.root)!r}: the int8 model does not hold on this CPU ({isa}): "
            + "; ".join(self.verification["problems"])
        )
        if mode == "error":
            raise Int8VerificationError(message)
        if mode == "warn":
            log.warning("%s; running int8 anyway (int8_check='warn')", message)
            return
        log.warning("%s; running the fp32 model instead (int8_check='fallback')", message)
        self._open("fp32", inp)

    def _class_scores(self, out: np.ndarray) -> np.ndarray:
        """Class scores of raw outputs (logits, probabilities, or zero-shot cosines)."""
        if self._table is None:
            return out
        return _l2n(out) @ _l2n(self._table).T

    # -- checks ------------------------------------------------------------------------------
    def _check_spec(self, inp: Any, pre: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``input`` and ``preprocess`` of pyxfer.json, checked."""
        if not isinstance(inp, dict) or not isinstance(pre, dict):
            raise _bundle_error(self.root, "pyxfer.json needs 'input' and 'preprocess' objects")
        checked = inp, pre
        problems = []
        for key in ("crop", "resize"):
            side = pre.get(key)
            if isinstance(side, bool) or not isinstance(side, int) or side < 1:
                problems.append(f"{key} {side!r} (expected a positive int)")
            elif side > fmt.MAX_SIDE:
                problems.append(
                    f"{key} {side} is larger than {fmt.MAX_SIDE} (pyxfer.runtime.bundle.MAX_SIDE)"
                )
        for key in ("mean", "std"):
            values = pre.get(key)
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            ):
                problems.append(f"{key} {values!r} (expected a list of finite numbers)")
                pre = {**pre, key: []}
        names = self.meta.get("class_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append("class_names (expected a list of strings)")
        if not isinstance(inp.get("dynamic_axes", {}), dict):
            problems.append("dynamic_axes (expected an object)")
        if inp.get("dtype") not in _ORT_DTYPES:
            problems.append(f"dtype {inp.get('dtype')!r} (expected uint8 or float32)")
        layouts: dict[Any, str] = {"uint8": "NHWC", "float32": "NCHW"}
        layout = layouts.get(inp.get("dtype"))
        if inp.get("layout") != layout:
            problems.append(f"layout {inp.get('layout')!r} for dtype {inp.get('dtype')!r}")
        if inp.get("channels") not in (1, 3):
            problems.append(f"channels {inp.get('channels')!r} (expected 1 or 3)")
        else:
            c = inp["channels"]
            if len(pre.get("mean", [])) != c or len(pre.get("std", [])) != c:
                problems.append(f"mean/std need {c} values each")
            if any(float(s) <= 0 for s in pre.get("std", [])):
                problems.append("std must be positive")
        size = inp.get("size")
        if not (
            isinstance(size, list) and len(size) == 2 and size[0] == size[1] == pre.get("crop")
        ):
            problems.append(f"size {size!r} does not match crop {pre.get('crop')!r}")
        crop, resize = pre.get("crop"), pre.get("resize")
        if isinstance(crop, int) and isinstance(resize, int) and resize < crop:
            problems.append(f"resize {resize!r} (expected an int >= crop)")
        if problems:
            raise _bundle_error(
                self.root, "input spec in pyxfer.json is invalid: " + "; ".join(problems)
            )
        return checked

    def _check_model(self, inp: dict[str, Any]) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise _bundle_error(self.root, f"model has {len(inputs)} inputs, expected 1")
        got = inputs[0]
        c, (h, w) = int(inp["channels"]), inp["size"]
        want = ["batch", h, w, c] if inp["layout"] == "NHWC" else ["batch", c, h, w]
        dynamic = {int(ax) for ax in inp["dynamic_axes"]} | {0}
        shape = list(got.shape)
        shape_ok = len(shape) == 4 and all(
            isinstance(g, str) if i in dynamic else g == x
            for i, (g, x) in enumerate(zip(shape, want, strict=True))
        )
        if got.name != inp["name"] or got.type != _ORT_DTYPES[inp["dtype"]] or not shape_ok:
            raise _bundle_error(
                self.root,
                f"wrong input spec: pyxfer.json says {inp['name']!r} {inp['dtype']} "
                f"{inp['layout']} {want} (dynamic axes {sorted(inp['dynamic_axes'])}), but "
                f"{self.model_path.name} takes {got.name!r} {got.type} {got.shape}",
            )
        stored = self.session.get_modelmeta().custom_metadata_map.get(fmt.METADATA_KEY)
        if stored is None:
            raise _bundle_error(self.root, f"{self.model_path.name} carries no pyxfer metadata")
        if json.loads(stored) != json.loads(fmt.canonical_json(fmt.meta_without_files(self.meta))):
            raise _bundle_error(
                self.root,
                f"pyxfer.json does not match the metadata inside {self.model_path.name} "
                "(pyxfer.json was edited or belongs to another model)",
            )

    # -- classes ---------------------------------------------------------------------------
    def add_class(self, name: str, embedding: np.ndarray) -> int:
        """Add a class to a zero-shot bundle's table (in memory); returns its index.

        Args:
            name: the class name (must be new).
            embedding: (E,) class embedding in the model's embedding space (for example a
                text or attribute encoder's output for the class description).
        """
        if self._table is None:
            raise ValueError(
                f"add_class: only zero-shot bundles have a class table; this bundle's task is "
                f"{self.task!r}"
            )
        vec = np.asarray(embedding, np.float32).reshape(-1)
        if vec.shape[0] != self._table.shape[1]:
            raise ValueError(
                f"embedding: expected {self._table.shape[1]} values, received {vec.shape[0]}"
            )
        if not np.isfinite(vec).all() or not np.any(vec):
            raise ValueError("embedding: expected finite values, not all zero")
        if name in self.class_names:
            raise ValueError(f"name: class {name!r} already exists")
        self._table = np.concatenate([self._table, vec[None]], axis=0)
        self.class_names.append(str(name))
        return len(self.class_names) - 1

    @property
    def class_embeddings(self) -> np.ndarray | None:
        """The zero-shot class table (K, E), or None."""
        return None if self._table is None else self._table.copy()

    # -- inputs ----------------------------------------------------------------------------
    def _load(self, images: Any) -> tuple[list[np.ndarray] | np.ndarray, bool]:
        """Images in any accepted form -> (uint8 HWC images, single?)."""
        if isinstance(images, (str, os.PathLike)):
            return [self._decode(images)], True
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8:
                raise ValueError(f"images: expected dtype uint8, received {images.dtype}")
            if images.ndim == 2:
                return [images[:, :, None]], True
            if images.ndim == 3:
                return [images], True
            if images.ndim == 4:
                return images, False
            raise ValueError(
                f"images: expected (H, W), (H, W, C) or (N, H, W, C), received {images.shape}"
            )
        if isinstance(images, (list, tuple)):
            out: list[np.ndarray] = []
            for i, item in enumerate(images):
                if isinstance(item, (str, os.PathLike)):
                    out.append(self._decode(item))
                elif (
                    isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim in (2, 3)
                ):
                    out.append(item[:, :, None] if item.ndim == 2 else item)
                else:
                    raise ValueError(
                        f"images[{i}]: expected a path or a uint8 (H, W, C) array, received "
                        f"{type(item).__name__}"
                        + (f" {item.dtype} {item.shape}" if isinstance(item, np.ndarray) else "")
                    )
            return out, False
        raise ValueError(
            f"images: expected a path, a list of paths, a uint8 array or a list of arrays, "
            f"received {type(images).__name__}"
        )

    def _decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        from pyxfer.data.decode import ImageDecodeError, decode_image

        if not Path(path).is_file():
            raise FileNotFoundError(f"images: no such image file {os.fspath(path)!r}")
        try:
            return decode_image(path, channels=self.channels)
        except Exception as exc:
            raise ImageDecodeError(os.fspath(path), f"{type(exc).__name__}: {exc}") from exc

    def prepare(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 images of any sizes -> the model input batch (preprocessing as recorded)."""
        if self.uint8_input:
            return resize_crop(images, resize=self.resize, crop=self.crop, channels=self.channels)
        return preprocess(
            images,
            resize=self.resize,
            crop=self.crop,
            mean=self.mean,
            std=self.std,
            threads=self.threads,
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for a prepared batch (see :meth:`prepare`)."""
        outs = [
            self.session.run(None, {self.input_name: batch[i : i + self.batch_size]})[0]
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, self.meta["output"]["width"]))

    # -- public API ------------------------------------------------------------------------
    def scores(self, images: Any) -> np.ndarray:
        """Class probabilities (N, K) (softmax of logits, or of scaled zero-shot cosines)."""
        imgs, _ = self._load(images)
        out = self.run(self.prepare(imgs))
        if self.head == "probs":
            return out
        if self.head == "logits":
            return _softmax(out.astype(np.float64)).astype(np.float32)
        if self._table is None:
            raise ValueError(
                "predict: this bundle has no classes (a feature encoder); use embed() instead"
            )
        cos = _l2n(out) @ _l2n(self._table).T  # (N, K)
        return _softmax(self.logit_scale * cos.astype(np.float64)).astype(np.float32)

    @overload
    def predict(self, images: str | os.PathLike[str], top_k: int = 5) -> Prediction: ...
    @overload
    def predict(self, images: list[Any], top_k: int = 5) -> list[Prediction]: ...
    @overload
    def predict(self, images: Any, top_k: int = 5) -> Prediction | list[Prediction]: ...

    def predict(self, images: Any, top_k: int = 5) -> Prediction | list[Prediction]:
        """Top-k classes of each image.

        Args:
            images: a path, a list of paths, a uint8 (H, W[, C]) image, a uint8
                (N, H, W, C) batch, or a ragged list of uint8 (H, W, C) arrays of any sizes.
            top_k: how many classes to return per image (capped at the number of classes).

        Returns:
            one :class:`Prediction` for a single path or image, else a list of them.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k: expected an integer >= 1, received {top_k!r}")
        single = isinstance(images, (str, os.PathLike)) or (
            isinstance(images, np.ndarray) and images.ndim in (2, 3)
        )
        probs = self.scores(images)
        k = min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        preds = [
            Prediction(
                labels=[self.class_names[j] for j in row],
                scores=[float(probs[i, j]) for j in row],
                indices=[int(j) for j in row],
            )
            for i, row in enumerate(order)
        ]
        return preds[0] if single else preds

    def embed(self, images: Any) -> np.ndarray:
        """Features (N, D) of the images ((D,) for a single image); feature bundles only."""
        if self.head != "features":
            raise ValueError(
                f"embed: this bundle outputs {self.head}, not features; export it with "
                "head='features' to embed"
            )
        imgs, single = self._load(images)
        out = self.run(self.prepare(imgs))
        return out[0] if single else out

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.root)!r}, task={self.task!r}, head={self.head!r}, "
            f"classes={len(self.class_names)}, model={self.model_path.name!r})"
        )


def _tensors(model: Any) -> Any:
    """Every TensorProto of an ONNX model: initializers, sparse ones, node attributes, in the
    main graph, its subgraphs, functions and training graphs."""

    def of_graph(graph: Any) -> Any:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            yield from of_nodes([node])

    def of_nodes(nodes: Any) -> Any:
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
                for sp in [*sparse, *attr.sparse_tensors]:
                    yield from (sp.values, sp.indices)
                if attr.HasField("g"):
                    yield from of_graph(attr.g)
                for sub in attr.graphs:
                    yield from of_graph(sub)

    yield from of_graph(model.graph)
    for function in model.functions:
        yield from of_nodes(function.node)
    for info in model.training_info:
        yield from of_graph(info.initialization)
        yield from of_graph(info.algorithm)


def _external_data(
    root: Path, meta: dict[str, Any], model_bytes: bytes, model_name: str
) -> dict[str, bytes]:
    """The external-data files the model refers to, read and checked (name -> bytes).

    Every location must be a plain name listed in the bundle's ``files``; the bytes returned
    are the ones hashed, and onnxruntime gets them from memory.
    """
    import onnx

    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:
        raise _bundle_error(root, f"{model_name} is not an ONNX model ({exc})") from exc
    found: dict[str, bytes] = {}
    what = f"{model_name} external data"
    for tensor in _tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not len(tensor.external_data):
            continue
        location = fmt.check_listed(
            root, meta, {e.key: e.value for e in tensor.external_data}.get("location"), what
        )
        if location not in found:
            found[location] = fmt.read_file(root, meta, location, what)
    return found


def _bundle_error(root: Path, message: str) -> fmt.BundleError:
    """A :class:`BundleError` prefixed with the bundle path."""
    return fmt.BundleError(f"bundle {str(root)!r}: {message}")
