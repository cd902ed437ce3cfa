"""Shared pieces of the transfer runs: backbone sources, data conformance, test evaluation,
and the :class:`RunWriter` that leaves their outputs in the run directory."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyxfer.data.store import ImageStore

if TYPE_CHECKING:
    from pyxfer.backbone import Backbone

log = logging.getLogger("pyxfer.transfer")

#: most test features written to ``features.npz`` (a seeded subset beyond)
MAX_SAVED_FEATURES = 5000


@dataclass
class Source:
    """A backbone and where it came from.

    Attributes:
        backbone: the model (with the head of the source when it had one).
        name, kwargs: registry name and constructor options (to rebuild it; no num_classes).
        description: JSON-safe record of the source for config.json / results.
        class_names: the source head's class names (a classifier model dir), else empty.
    """

    backbone: Any
    name: str
    kwargs: dict[str, Any]
    description: dict[str, Any]
    class_names: list[str] = field(default_factory=list)


def load_source(
    source: str | os.PathLike[str] | None = None,
    *,
    backbone: str | None = None,
    backbone_opts: dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    from_scratch: bool = False,
    seed: int = 0,
    argument: str = "source",
) -> Source:
    """Build the starting backbone from a run/model directory, a weight file or random init.

    Args:
        source: a pyxfer run directory (its ``model/``), a model directory, or a weight file
            (``.safetensors`` or a torchvision-format state dict; needs ``backbone``).
        backbone: registered backbone name (for weight files and ``from_scratch``).
        backbone_opts: its constructor options.
        weights: a weight file (the same as giving it as ``source``).
        from_scratch: random initialisation (seeded by ``seed``): the baseline.
        argument: the name of ``source`` in error messages (``adapt`` calls it ``from_run``).

    Raises:
        ValueError: no or several sources, a missing backbone name, weights that do not fit
            the architecture (missing / unexpected keys, shapes).
        FileNotFoundError: ``source`` does not exist or is a directory holding no model.
    """
    from pyxfer.backbone import create_backbone, load_weights

    opts = {k: v for k, v in (backbone_opts or {}).items() if k != "num_classes"}
    given = [x for x in (source, weights) if x is not None]
    if len(given) + bool(from_scratch) != 1:
        raise ValueError(
            "source: expected exactly one of a run/model directory or weight file, weights= "
            f"or from_scratch=True, received source={source!r}, weights={weights!r}, "
            f"from_scratch={from_scratch}"
        )
    torch.manual_seed(seed)
    if from_scratch:
        if not backbone:
            raise ValueError("backbone: from_scratch needs a registered backbone name")
        bb = create_backbone(backbone, **opts)
        return Source(bb, backbone, opts, {"kind": "scratch", "backbone": backbone, "seed": seed})
    from pyxfer.modelio import load_model, locate_model

    where = locate_model(
        given[0], argument=argument if source is not None else "weights", weights=True
    )
    if where.is_model_dir:
        mdir = where.path
        saved = load_model(mdir)
        if backbone and backbone != saved.backbone_name:
            raise ValueError(
                f"backbone: the model in {str(mdir)!r} is a {saved.backbone_name!r}, received "
                f"backbone={backbone!r}"
            )
        kwargs = {k: v for k, v in saved.backbone_kwargs.items() if k != "num_classes"}
        desc = {"kind": "model", "path": str(mdir), "task": saved.task}
        return Source(saved.backbone, saved.backbone_name, kwargs, desc, saved.class_names)
    path = where.path
    if not backbone:
        raise ValueError(
            f"backbone: a weight file ({str(path)!r}) needs the registered backbone name "
            "(--backbone NAME)"
        )
    bb = create_backbone(backbone, **opts)  # no head: the file's classifier entries are dropped
    load_weights(bb, path)
    return Source(bb, backbone, opts, {"kind": "weights", "path": str(path), "backbone": backbone})


def conform(store: ImageStore, channels: int, size: int | None = None) -> ImageStore:
    """``store`` with ``channels`` channels (grey <-> RGB) and, if ``size``, resized to size².

    Grey becomes RGB by repetition, RGB grey by ITU-R 601 luma; resizing is bilinear with
    antialiasing (PIL). Labels and class names are kept. The store is returned unchanged when
    nothing is to do.
    """
    from pyxfer.data.channels import convert_all

    shape = store.image_shape
    same_size = size is None or (shape is not None and shape[0] == size and shape[1] == size)
    if store.channels == channels and same_size:
        return store
    n = len(store)
    images = store.batch(np.arange(n))
    images = convert_all(images, channels)
    if size is not None:
        from PIL import Image

        def resize(im: np.ndarray) -> np.ndarray:
            if im.shape[0] == size and im.shape[1] == size:
                return im
            pil = Image.fromarray(im[..., 0] if im.shape[2] == 1 else im)
            out = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), np.uint8)
            return out.reshape(size, size, channels)

        images = np.stack([resize(im) for im in images]) if n else images
    info = dict(store.info)
    info["conformed"] = {"channels": channels, "size": size}
    return ImageStore(
        images if isinstance(images, np.ndarray) or n == 0 else np.stack(images),
        store.labels,
        store.class_names,
        name=store.name,
        source=store.source,
        info=info,
    )


def classify(
    backbone: Backbone, store: ImageStore, *, batch_size: int = 256, threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), logits (N, K)) of ``store`` under eval preprocessing (float32 numpy)."""
    from pyxfer.evaluate.features import extract_features

    feats = extract_features(
        backbone, store, batch_size=batch_size, threads=threads, progress=False
    )
    head = backbone.get_classifier()
    dev = next(head.parameters()).device
    with torch.inference_mode():
        logits = head(torch.from_numpy(feats).to(dev)).float().cpu().numpy()
    return feats, logits


def accuracy(backbone: Backbone, store: ImageStore, threads: int = 0) -> float:
    """Top-1 of ``backbone`` (with its head) on the labelled ``store``."""
    if len(store) == 0:
        return float("nan")
    _, logits = classify(backbone, store, threads=threads)
    return float((logits.argmax(1) == store.labels).mean())


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, num_classes: int
) -> dict[str, float]:
    """``{"top1", "per_class_mean"}`` of ``logits`` (N, K) against ``labels`` (N,); NaN when
    N == 0."""
    from pyxfer.evaluate.metrics import mean_per_class_accuracy

    pred = logits.argmax(1).astype(np.int64)
    y = np.asarray(labels).astype(np.int64)
    if not y.size:
        return {"top1": float("nan"), "per_class_mean": float("nan")}
    return {
        "top1": float((pred == y).mean()),
        "per_class_mean": mean_per_class_accuracy(y, pred, num_classes),
    }


def write_test_outputs(
    run: Path,
    feats: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    seed: int,
) -> dict[str, float]:
    """``predictions.npz`` and ``features.npz`` (capped) in ``run``; returns top-1, per-class."""
    from pyxfer.fileio import atomic_write_bytes

    pred = logits.argmax(1).astype(np.int64)
    y = labels.astype(np.int64)
    metrics = classification_metrics(logits, y, len(class_names))
    names = np.asarray(class_names, dtype=str)

    def npz(path: Path, **arrays: Any) -> None:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    npz(run / "predictions.npz", y_true=y, y_pred=pred, class_names=names)
    keep = np.arange(len(y))
    if keep.size > MAX_SAVED_FEATURES:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(keep.size, MAX_SAVED_FEATURES, replace=False))
    npz(run / "features.npz", features=feats[keep], labels=y[keep], class_names=names)
    return metrics


@dataclass
class RunWriter:
    """What a transfer run (:func:`~pyxfer.transfer.finetune`, :func:`~pyxfer.transfer.adapt`)
    leaves in its directory beside the engine's ``config.json`` and ``metrics.jsonl``.

    Without a run directory (``run is None``) nothing is written and the methods that return
    a path return ``None``; the test metrics are computed either way.

    Attributes:
        run: the run directory, or ``None``.
        producer: ``"finetune"`` or ``"adapt"`` (recorded in every saved model).
        source: where the backbone came from (its registry name and options are saved).
        model_extra: recorded in every saved model besides ``producer``.
    """

    run: Path | None
    producer: str
    source: Source
    model_extra: dict[str, Any] = field(default_factory=dict)

    def add_to_config(self, section: str, doc: dict[str, Any]) -> None:
        """Add ``doc`` to ``config.json`` as ``section`` (the engine wrote the rest)."""
        if self.run is None:
            return
        import json

        from pyxfer.fileio import atomic_write_json

        path = self.run / "config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        config[section] = doc
        atomic_write_json(path, config)

    def save_classifier(
        self,
        model: Backbone,
        class_names: list[str],
        extra: dict[str, Any],
        where: str = "model",
    ) -> Path | None:
        """``model`` (a backbone with its head) as the classifier model directory ``where``."""
        if self.run is None:
            return None
        from pyxfer.modelio import save_model

        return save_model(
            self.run / where,
            model,
            backbone_name=self.source.name,
            backbone_kwargs=dict(self.source.kwargs),
            task="classifier",
            class_names=list(class_names),
            extra={"producer": self.producer, **self.model_extra, **extra},
        )

    def test_outputs(
        self,
        feats: np.ndarray,
        logits: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        seed: int,
    ) -> dict[str, float]:
        """Top-1 and per-class mean on the test split; ``predictions.npz`` and
        ``features.npz`` too with a run directory."""
        if self.run is None:
            return classification_metrics(logits, labels, len(class_names))
        return write_test_outputs(self.run, feats, logits, labels, class_names, seed)

    def results(self, results: list[Any], meta: dict[str, Any]) -> None:
        """``results.json``: the results with their protocols, and ``meta``."""
        if self.run is None:
            return
        from pyxfer.evaluate.results import save_results

        save_results(self.run / "results.json", results, meta)
