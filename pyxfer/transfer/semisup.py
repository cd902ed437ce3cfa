"""``semisup``: semi-supervised classification from K labels per class plus unlabelled images.

The labelled set is ``labels_per_class`` images of each class drawn from the training pool
(seeded: the same seed picks the same images, whatever the objective), the pool being the
images of ``data`` left after the test split (``test_data``, or a stratified
``test_fraction`` of ``data``). The unlabelled stream is ``unlabelled_data`` or, by default,
the whole pool with its labels dropped (the labelled images included, as in FixMatch).

The objective is any registered adaptation objective (``consumes == "source_target"``) with the
labelled set as its source and the unlabelled images as its target; the default is FixMatch
(Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence"): confident pseudo-labels of a weak view (flip + small crop) train a strong view
(RandAugment, two ops at random magnitudes, + Cutout) of the same unlabelled image.
``source_only`` trains on the labelled images alone: the supervised-only baseline on the same
labels, schedule and model.

The training settings default to the paper's (Sec. 4 / App. B.1): SGD with Nesterov momentum
0.9, lr 0.03, weight decay 5e-4, B = 64 labelled images and mu = 7 times as many unlabelled
ones per step, the ``fixmatch`` schedule ``lr cos(7 pi p / 16)`` over the run's progress
(:mod:`pyxfer.engine.clock`: steps or time), threshold 0.95, lambda_u 1, and an EMA of the
weights (decay 0.999) that is evaluated and saved. The EMA's decay ramps up as
``min(0.999, (1 + t) / (10 + t))`` (``ema_warmup``): the paper's million steps make the ramp
irrelevant, but a run of a few hundred steps would otherwise evaluate weights still 70 %
made of their random initialisation. Every setting can be changed
(``**settings`` are :class:`pyxfer.engine.TrainConfig` fields).

The run directory holds ``config.json`` (with a ``semisup`` section: the labelled indices,
counts, protocol), ``metrics.jsonl`` (with ``test_top1`` every ``eval_every`` steps when set),
``model/`` (the classifier, EMA weights when EMA is on), ``results.json`` (test top-1 and
per-class mean of the EMA and the raw weights), ``predictions.npz`` and ``features.npz``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyxfer.data.store import ImageStore
from pyxfer.engine.clock import Cadence
from pyxfer.engine.config import FIXMATCH_SETTINGS
from pyxfer.transfer.common import RunWriter, classification_metrics, conform

log = logging.getLogger("pyxfer.transfer")

#: the labelled images are repeated to at least this many batches per epoch
LABELLED_BATCHES_PER_EPOCH = 64


@dataclass
class SemisupResult:
    """What :func:`semisup` returns.

    Attributes:
        run_dir, model_dir: the run and its saved classifier (``None`` without ``out``).
        test_top1, test_per_class_mean: of the evaluated weights (EMA when EMA is on).
        raw_test_top1: of the trained weights themselves (equal without EMA).
        labelled: indices into ``data`` of the labelled images.
        unlabelled: how many unlabelled images the run drew from.
        history: ``{"step", "test_top1"}`` every ``eval_every`` steps.
        results: the :class:`pyxfer.evaluate.results.Result` list of results.json.
    """

    run_dir: Path | None
    model_dir: Path | None
    test_top1: float
    test_per_class_mean: float
    raw_test_top1: float
    labelled: np.ndarray
    unlabelled: int
    history: list[dict[str, float]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def semisup(
    data: str | ImageStore,
    *,
    labels_per_class: int,
    unlabelled_data: str | ImageStore | None = None,
    objective: str = "fixmatch",
    objective_opts: dict[str, Any] | None = None,
    backbone: str | None = "resnet18",
    backbone_opts: dict[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    from_run: str | os.PathLike[str] | None = None,
    test_data: str | ImageStore | None = None,
    test_fraction: float = 0.2,
    eval_every: int | None = None,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **settings: Any,
) -> SemisupResult:
    """Train a classifier on ``labels_per_class`` labels per class and unlabelled images.

    Args:
        data: labelled images (spec or store): the test split and the labelled set come
            from it, and by default the unlabelled stream too.
        labels_per_class: K labelled images per class (seeded draw from the pool).
        unlabelled_data: unlabelled images (labels ignored); default: the pool of ``data``.
        objective: a registered adaptation objective: ``fixmatch`` (default), ``source_only``
            (the supervised-only baseline), ``pseudo_label``, ...
        objective_opts: its options (FixMatch: ``threshold``, ``weight``).
        backbone, backbone_opts: the registered backbone (random init unless ``weights`` or
            ``from_run``).
        weights: a weight file for ``backbone``.
        from_run: a pyxfer run or model directory to start from.
        test_data: labelled test images; else ``test_fraction`` of ``data`` (stratified,
            seeded) is held out, never trained on (not even unlabelled).
        test_fraction: see ``test_data``.
        eval_every: steps between test evaluations logged to metrics.jsonl (monitoring only:
            nothing is selected with them); default: only at the end.
        out: run directory.
        seed: seed of the splits, the labelled draw, the initialisation, order and views.
        **settings: :class:`pyxfer.engine.TrainConfig` fields; unset ones take
            :data:`FIXMATCH_SETTINGS`.

    Returns:
        a :class:`SemisupResult`.

    Examples:
        >>> r = semisup("packed:cifar10", labels_per_class=4, backbone="resnet18",
        ...             backbone_opts={"stem": "small"}, max_steps=1000,
        ...             out="runs/fm")  # doctest: +SKIP
    """
    from pyxfer.engine import Trainer
    from pyxfer.transfer.adapt import _build_objective, _load_backbone, _unlabelled
    from pyxfer.transfer.finetune import _load_data, balanced

    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, (int, np.integer)):
        raise ValueError(
            f"labels_per_class: expected an integer >= 1, received {labels_per_class!r}"
        )
    if labels_per_class < 1:
        raise ValueError(f"labels_per_class: expected an integer >= 1, received {labels_per_class}")
    if test_data is None and not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a fraction in (0, 1), received {test_fraction}")
    lab = _load_data(
        data,
        test_data,
        test_fraction=test_fraction,
        labels_per_class=int(labels_per_class),
        val_fraction=0.0,
        seed=seed,
    )
    store, classes = lab.store, list(lab.store.class_names)
    test_store = lab.test_store if lab.test_store is not None else store
    labelled = lab.splits["train"]
    src = _load_backbone(from_run, weights, backbone, backbone_opts, seed)
    model = src.backbone
    spec = model.input_spec

    if unlabelled_data is None:
        held_out = lab.splits["test"] if lab.test_store is None else np.zeros(0, np.int64)
        pool = np.setdiff1d(np.arange(len(store)), held_out)
        unl_store = store.subset(pool)
    else:
        from pyxfer.data import load_dataset

        unl_store = (
            load_dataset(unlabelled_data)
            if isinstance(unlabelled_data, (str, os.PathLike))
            else unlabelled_data
        )
        if len(unl_store) == 0:
            raise ValueError(f"unlabelled_data: {unlabelled_data!r} has no images")
    unl_store = _unlabelled(conform(unl_store, spec.channels, spec.size))
    train_idx = balanced(labelled, store.labels, seed)
    settings = {**FIXMATCH_SETTINGS, **settings}
    batch = int(settings["batch_size"])
    reps = max(1, math.ceil(batch * LABELLED_BATCHES_PER_EPOCH / len(train_idx)))
    train_store = conform(store.subset(train_idx), spec.channels, spec.size)
    train_store = train_store.subset(np.tile(np.arange(len(train_store)), reps))
    mu = int(settings["unlabelled_ratio"])
    if batch * mu > len(unl_store):
        mu = max(1, len(unl_store) // batch)
        if batch > len(unl_store):
            raise ValueError(
                f"unlabelled_data: expected at least batch_size={batch} unlabelled images, "
                f"received {len(unl_store)}"
            )
        log.info(
            "batch_size * unlabelled_ratio > %d unlabelled images: mu = %d", len(unl_store), mu
        )
        settings["unlabelled_ratio"] = mu
    test = conform(test_store.subset(lab.splits["test"]), spec.channels, spec.size)

    obj = _build_objective(objective, model, len(classes), objective_opts, seed)
    from pyxfer.engine import TrainConfig
    from pyxfer.transfer.adapt import _tensors

    threads = int(settings.get("threads", 0))
    test_x = _tensors(test, spec, threads)
    monitor = _TestMonitor(test_x, test.labels, Cadence(eval_every)) if eval_every else None
    settings.setdefault("checkpoint_every", 0)
    cfg = TrainConfig(
        data=str(data if isinstance(data, str) else getattr(store, "source", "store")),
        backbone=src.name,
        backbone_opts=dict(src.kwargs),
        objective=objective,
        objective_opts=dict(objective_opts or {}),
        seed=seed,
        out=None if out is None else str(out),
        **settings,
    )
    trainer = Trainer(
        obj, train_store, cfg, target=unl_store, callbacks=(monitor,) if monitor else ()
    )
    result = trainer.fit()

    raw_feats, raw_logits = _predict(obj, test_x)
    raw = classification_metrics(raw_logits, test.labels, len(classes))
    evaluated = obj
    if trainer.ema is not None:
        evaluated = copy.deepcopy(obj)
        evaluated.load_state_dict(trainer.ema.state_dict())
    feats, logits = (raw_feats, raw_logits) if evaluated is obj else _predict(evaluated, test_x)
    metrics = classification_metrics(logits, test.labels, len(classes))

    run = Path(out) if out is not None else None
    writer = RunWriter(run, "semisup", src, {"objective": objective})
    protocol = {
        "protocol": "semisup",
        "method": objective,
        "labels_per_class": int(labels_per_class),
        "labelled": len(labelled),
        "unlabelled": len(unl_store),
        "unlabelled_data": unlabelled_data if isinstance(unlabelled_data, str) else None,
        "test": len(test),
        "test_data": test_data if isinstance(test_data, str) else None,
        "test_fraction": test_fraction if test_data is None else None,
        "steps": result.step,
        "ema": trainer.ema is not None,
        "source": src.description,
        "seed": seed,
        "size": spec.size,
    }
    from pyxfer.evaluate.results import Result

    results = [
        Result("semisup/test_top1", metrics["top1"], protocol),
        Result("semisup/test_per_class_mean", metrics["per_class_mean"], protocol),
        Result("semisup/test_top1@raw_weights", raw["top1"], {**protocol, "ema": False}),
    ]
    writer.add_to_config("semisup", {**protocol, "labelled_indices": labelled.tolist()})
    model_dir = _save(writer, evaluated, classes, {"ema": trainer.ema is not None})
    if run is not None:
        writer.test_outputs(feats, logits, test.labels, classes, seed)
    writer.results(results, {"semisup": protocol})
    return SemisupResult(
        run,
        model_dir,
        metrics["top1"],
        metrics["per_class_mean"],
        raw["top1"],
        labelled,
        len(unl_store),
        monitor.history if monitor else [],
        results,
    )


@torch.no_grad()
def _predict(obj: Any, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    from pyxfer.transfer.adapt import _predict as predict

    return predict(obj, x, batch)


def _save(writer: RunWriter, obj: Any, classes: list[str], extra: dict[str, Any]) -> Path | None:
    from pyxfer.transfer.adapt import _save_classifier

    return _save_classifier(writer, obj, classes, extra)


class _TestMonitor:
    """Engine callback: test top-1 of the evaluated weights (EMA when on) at due steps, logged
    as ``test_top1`` (monitoring only)."""

    def __init__(self, x: torch.Tensor, y: np.ndarray, cadence: Cadence) -> None:
        self.x, self.y, self.cadence = x, y, cadence
        self.history: list[dict[str, float]] = []

    def __call__(self, trainer: Any, step: int, out: dict[str, torch.Tensor]) -> None:
        if not self.cadence.due(step, trainer.progress, trainer.final_step):
            return
        obj = trainer.objective
        if trainer.ema is not None:
            obj = copy.deepcopy(obj)
            obj.load_state_dict(trainer.ema.state_dict())
        _, logits = _predict(obj, self.x)
        acc = float((logits.argmax(1) == self.y).mean()) if len(self.y) else float("nan")
        self.history.append({"step": step, "test_top1": acc})
        trainer.log_metrics({"step": step, "test_top1": acc})


def format_result(r: SemisupResult) -> str:
    """Two lines: the test accuracy (EMA and raw weights) and the counts."""

    def pct(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"

    return (
        f"test top-1 {pct(r.test_top1)} (per-class mean {pct(r.test_per_class_mean)}; "
        f"raw weights {pct(r.raw_test_top1)})\n"
        f"{len(r.labelled)} labelled, {r.unlabelled} unlabelled images"
    )
