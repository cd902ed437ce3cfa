"""Zero-shot runs end to end: features of a backbone, a seen/unseen class split, a method, metrics.

``fit_zeroshot`` is what ``pyxfer zeroshot fit`` runs:

1. the labelled data set is split by class into seen and unseen classes (seeded);
2. images of seen classes are split into training and seen-test images (stratified, seeded);
   every image of an unseen class is a test image — no unseen image is ever trained on;
3. optionally (``train_backbone``) the backbone is trained on the seen training images with
   attribute supervision and shifted images (:func:`pyxfer.zeroshot.layout.train_backbone`);
4. features are extracted with the fused preprocessing kernel, pooled (``layout="pooled"``),
   averaged on a G x G grid of the last feature map (``"spatial:G"``), or both with the
   layout chosen on validation classes split off the seen classes (``"auto"``);
5. the method is fitted on the seen training images with the class-description table
   (rows L2-normalised, so class signatures have equal weight); its regularisers and the
   calibrated-stacking ``gamma`` are chosen on validation classes split off the seen classes;
6. ZSL accuracy (unseen test images, predicted among unseen classes), GZSL seen / unseen
   accuracy and their harmonic mean (predicted among all classes, with and without
   calibration), and AUSUC are computed — all per-class means.

With ``out`` the run directory gets ``results.json`` (each number with its protocol),
``predictions.npz`` and ``features.npz`` (for ``report.html``), ``report.html``, and for ESZSL a
deployable ``model/`` (task ``zeroshot``): the backbone plus the class table and the linear map
from features to attribute space, so ``pyxfer export`` writes a bundle whose class table can be
extended at deploy time by adding a description row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.zeroshot.descriptions import ClassDescriptions, load_descriptions
from pyxfer.zeroshot.digits_attributes import digit_descriptions

log = logging.getLogger("pyxfer.zeroshot")

METHODS = ("eszsl", "dap", "bilinear", "prototype")


def make_method(name: str, seed: int = 0) -> Any:
    """A fresh zero-shot classifier by name (regularisers chosen on validation classes)."""
    from pyxfer import zeroshot as zs

    if name == "eszsl":
        return zs.ESZSL(seed=seed)
    if name == "dap":
        return zs.DAP()
    if name == "bilinear":
        return zs.BilinearZSL(seed=seed)
    if name == "prototype":
        return zs.PrototypeZSL()
    raise ValueError(f"method: expected one of {METHODS}, received {name!r}")


def load_class_table(spec: str | os.PathLike[str] | ClassDescriptions) -> ClassDescriptions:
    """``"digits"`` (the built-in digit attribute table) or a .csv / .npy / .mat file."""
    if isinstance(spec, ClassDescriptions):
        return spec
    if str(spec) == "digits":
        return digit_descriptions()
    return load_descriptions(spec)


def align_table(table: ClassDescriptions, class_names: Sequence[str]) -> ClassDescriptions:
    """The table re-indexed so that row i describes the data set's class i.

    Rows are matched by class name; when the names differ (the digit table says "seven", the
    data set "7") and the table has exactly one row per class with ids 0..C-1, by id.
    """
    names = [str(n) for n in class_names]
    if set(names) <= set(table.names):
        rows = [table.names.index(n) for n in names]
    elif sorted(table.class_ids.tolist()) == list(range(len(names))):
        rows = [int(np.flatnonzero(table.class_ids == i)[0]) for i in range(len(names))]
    else:
        missing = sorted(set(names) - set(table.names))
        raise ValueError(
            f"descriptions: expected a row for every class of the data set, missing {missing} "
            f"(table classes: {table.names})"
        )
    return ClassDescriptions(
        table.matrix[rows], np.arange(len(names)), names, list(table.attribute_names)
    )


def resolve_unseen(
    num_classes: int, unseen: Sequence[int] | int | float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(seen, unseen) class ids: explicit ids, a count, or a fraction (seeded)."""
    from pyxfer.data.splits import class_split

    if unseen is None:
        unseen = max(1, round(0.3 * num_classes))
    if isinstance(unseen, (list, tuple, np.ndarray)):
        ids = np.unique(np.asarray(unseen, dtype=np.int64))
        bad = ids[(ids < 0) | (ids >= num_classes)]
        if bad.size or ids.size != len(unseen):
            raise ValueError(
                f"unseen: expected distinct class ids in [0, {num_classes}), received "
                f"{list(unseen)}"
            )
        if ids.size >= num_classes:
            raise ValueError("unseen: at least two classes must stay seen")
        return np.setdiff1d(np.arange(num_classes), ids), ids
    seen, uns = class_split(num_classes, unseen=unseen, seed=seed)
    return np.asarray(seen, np.int64), np.asarray(uns, np.int64)


def split_images(
    labels: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    holdout: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image indices ``(train, seen_test, unseen_test)`` of a zero-shot run.

    ``train`` and ``seen_test`` split the seen classes' images (stratified, seeded; or
    ``holdout`` ∩ seen classes is the seen test); every image of an unseen class is in
    ``unseen_test``. A backbone trained for the run sees ``train`` only.
    """
    from pyxfer.data.splits import indices_of_classes, stratified_split

    seen_idx = indices_of_classes(labels, seen)
    if holdout is None:
        train_rel, test_rel = stratified_split(
            labels[seen_idx], (1 - test_fraction, test_fraction), seed=seed
        )
        train_idx, seen_test = seen_idx[train_rel], seen_idx[test_rel]
    else:
        held = np.zeros(labels.size, bool)
        held[np.asarray(holdout, np.int64)] = True
        train_idx, seen_test = seen_idx[~held[seen_idx]], seen_idx[held[seen_idx]]
        if train_idx.size == 0 or seen_test.size == 0:
            raise ValueError("holdout: expected seen-class images both inside and outside it")
    return train_idx, seen_test, indices_of_classes(labels, unseen)


@dataclass
class ZeroShotResult:
    """What a zero-shot run measured."""

    method: str
    seen: list[int]
    unseen: list[int]
    zsl: float
    gzsl_s: float
    gzsl_u: float
    gzsl_h: float
    gzsl_raw_s: float
    gzsl_raw_u: float
    gzsl_raw_h: float
    ausuc: float
    gamma: float
    chance_zsl: float
    protocol: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    #: image indices (into the data set) of ``train``, ``seen_test`` and ``unseen_test``
    splits: dict[str, np.ndarray] = field(default_factory=dict)

    def results(self) -> list[Any]:
        """The numbers as :class:`pyxfer.evaluate.results.Result` records with their protocol."""
        from pyxfer.evaluate.results import Result

        p = dict(self.protocol)
        return [
            Result("zsl_top1_per_class", self.zsl, {**p, "split": "unseen test, unseen classes"}),
            Result(
                "gzsl_s", self.gzsl_s, {**p, "split": "seen test, all classes", "gamma": self.gamma}
            ),
            Result(
                "gzsl_u",
                self.gzsl_u,
                {**p, "split": "unseen test, all classes", "gamma": self.gamma},
            ),
            Result("gzsl_h", self.gzsl_h, {**p, "gamma": self.gamma}),
            Result("gzsl_h_uncalibrated", self.gzsl_raw_h, {**p, "gamma": 0.0}),
            Result("ausuc", self.ausuc, p),
            Result("chance_zsl", self.chance_zsl, {**p, "note": "1 / number of unseen classes"}),
        ]


def fit_zeroshot(
    backbone: Any,
    data: Any,
    descriptions: Any = "digits",
    *,
    unseen: Sequence[int] | int | float | None = None,
    method: str = "eszsl",
    seed: int = 0,
    test_fraction: float = 0.2,
    size: int | None = None,
    batch_size: int = 256,
    threads: int = 0,
    out: str | os.PathLike[str] | None = None,
    backbone_name: str | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    features: np.ndarray | None = None,
    holdout: Any = None,
    report: bool = True,
    layout: str = "auto",
    train_backbone: bool = False,
    max_steps: int = 400,
    max_shift: int = 2,
    lr: float = 2e-3,
) -> ZeroShotResult:
    """Fit and evaluate a zero-shot method on a backbone's features (see the module docstring).

    Args:
        backbone: a :class:`pyxfer.backbone.Backbone`, or a model / run directory.
        data: a labelled :class:`pyxfer.data.ImageStore` or a data-set spec.
        descriptions: ``"digits"``, a .csv / .npy / .mat class table, or ClassDescriptions.
        unseen: unseen class ids, a count, or a fraction of the classes (seeded by ``seed``).
        method: ``"eszsl"``, ``"dap"``, ``"bilinear"`` or ``"prototype"``.
        seed: seeds the class split, the image split and the methods' validation folds.
        test_fraction: fraction of each seen class's images kept for the GZSL seen test.
        size: image side for feature extraction (default: the backbone's input size).
        features: precomputed (N, D) features of ``data`` (skips training and extraction).
        layout: ``"pooled"`` (global average), ``"spatial:G"`` (the last feature map averaged
            on a G x G grid), or ``"auto"``: pooled or spatial 2..4, chosen by zero-shot
            accuracy on validation classes split off the seen classes.
        train_backbone: train (a copy of) the backbone on the seen training images first,
            with attribute and class supervision on randomly shifted images.
        max_steps, max_shift, lr: that training's steps, largest shift (pixels) and rate.
        holdout: indices of images reserved for testing (e.g. the images a backbone was not
            trained on): the seen test images are then ``holdout`` ∩ seen classes and the
            method trains on the other seen images; default: a stratified ``test_fraction``.
        out: run directory to write (results, plots' data, report, deployable model).
        backbone_name, backbone_kwargs: how to rebuild the backbone (for the saved model).
    """
    from pyxfer import zeroshot as zs
    from pyxfer.data import load_dataset

    store = load_dataset(data) if isinstance(data, str) else data
    if getattr(store, "labels", None) is None or (np.asarray(store.labels) < 0).any():
        raise ValueError("data: expected a labelled data set (every image with a class)")
    labels = np.asarray(store.labels, np.int64)
    names = list(store.class_names)
    table = align_table(load_class_table(descriptions), names)
    seen, uns = resolve_unseen(len(names), unseen, seed)
    empty = [int(c) for c in np.arange(len(names)) if not (labels == c).any()]
    if empty:
        raise ValueError(f"data: classes {empty} have no images")

    if isinstance(backbone, (str, os.PathLike)):
        from pyxfer.modelio import load_model, locate_model

        saved = load_model(locate_model(backbone, argument="backbone").path)
        backbone, backbone_name = saved.backbone, saved.backbone_name
        backbone_kwargs = saved.backbone_kwargs
    size = int(size or backbone.input_spec.size)
    train_idx, seen_test, unseen_test = split_images(
        labels, seen, uns, test_fraction=test_fraction, seed=seed, holdout=holdout
    )
    S = table.matrix / np.maximum(np.linalg.norm(table.matrix, axis=1, keepdims=True), 1e-12)
    ids = np.arange(len(names))
    grid, training = 1, None
    grid_scores: dict[int, float] = {}
    if features is None:
        from pyxfer.zeroshot import layout as lay

        grids = lay.grid_candidates(layout, lay.map_side(backbone, size))
        if train_backbone:
            backbone, training = lay.train_backbone(
                backbone,
                store,
                train_idx,
                labels,
                table.matrix,
                size=size,
                max_steps=max_steps,
                max_shift=max_shift,
                lr=lr,
                seed=seed,
                threads=threads,
            )
        blocks = lay.extract_grids(
            backbone, store, grids, size=size, batch_size=batch_size, threads=threads
        )
        if len(blocks) > 1:
            grid, grid_scores = lay.choose_grid(
                {g: np.asarray(f[train_idx], np.float64) for g, f in blocks.items()},
                labels[train_idx],
                S,
                ids,
                lambda: make_method(method, seed),
            )
        else:
            grid = grids[0]
        features = blocks[grid]
    elif train_backbone:
        raise ValueError("features: precomputed features cannot be combined with train_backbone")
    X = np.asarray(features, np.float64)
    if X.shape[0] != labels.shape[0]:
        raise ValueError(f"features: expected {labels.shape[0]} rows, received {X.shape[0]}")

    model = zs.CalibratedStacking(make_method(method, seed), seed=seed)
    model.fit(X[train_idx], labels[train_idx], S, ids)
    test_idx = np.concatenate([seen_test, unseen_test])
    y_test = labels[test_idx]
    raw = model.model.decision_function(X[test_idx], S, ids)  # (N, C) uncalibrated
    n_seen_test = seen_test.size
    zsl = zs.zsl_accuracy(y_test[n_seen_test:], raw[n_seen_test:], ids, uns)
    pred_raw = ids[np.argmax(raw, axis=1)]
    calibrated = zs.calibrated_stacking(raw, ids, seen, model.gamma_)
    pred = ids[np.argmax(calibrated, axis=1)]
    g = zs.gzsl_accuracy(y_test, pred, seen, uns)
    g_raw = zs.gzsl_accuracy(y_test, pred_raw, seen, uns)
    area = zs.ausuc(raw, y_test, ids, seen, uns)
    result = ZeroShotResult(
        method=method,
        seen=seen.tolist(),
        unseen=uns.tolist(),
        zsl=zsl,
        gzsl_s=g.s,
        gzsl_u=g.u,
        gzsl_h=g.h,
        gzsl_raw_s=g_raw.s,
        gzsl_raw_u=g_raw.u,
        gzsl_raw_h=g_raw.h,
        ausuc=area,
        gamma=float(model.gamma_),
        chance_zsl=1.0 / len(uns),
        protocol={
            "method": method,
            "data": str(getattr(store, "name", "") or data),
            "seen": seen.tolist(),
            "unseen": uns.tolist(),
            "train_images": int(train_idx.size),
            "seen_test_images": int(seen_test.size),
            "unseen_test_images": int(unseen_test.size),
            "image_size": size,
            "seed": seed,
            "hyperparameters": _hyper(model.model),
            "features": {
                "layout": "pooled" if grid == 1 else f"spatial:{grid}",
                "grid": grid,
                "dim": int(X.shape[1]),
                "validation_accuracy_per_grid": {str(g): v for g, v in grid_scores.items()},
            },
            "backbone_training": training,
            "selection": "feature layout, regularisers and gamma chosen on validation classes "
            "split off the seen classes; unseen classes never used",
        },
        splits={"train": train_idx, "seen_test": seen_test, "unseen_test": unseen_test},
    )
    if out is not None:
        result.run_dir = _write_run(
            Path(out),
            result,
            model,
            backbone,
            backbone_name,
            backbone_kwargs,
            table,
            S,
            X[test_idx],
            y_test,
            pred,
            names,
            report,
        )
    return result


def _hyper(model: Any) -> dict[str, Any]:
    return {
        k: float(getattr(model, f"{k}_"))
        if isinstance(getattr(model, f"{k}_"), float | int)
        else str(getattr(model, f"{k}_"))
        for k in getattr(model, "_HYPER", {})
        if hasattr(model, f"{k}_")
    }


def _write_run(
    run: Path,
    result: ZeroShotResult,
    model: Any,
    backbone: Any,
    backbone_name: str | None,
    backbone_kwargs: dict[str, Any] | None,
    table: ClassDescriptions,
    S: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    pred: np.ndarray,
    names: list[str],
    report: bool,
) -> Path:
    import json

    from pyxfer.evaluate.results import save_results
    from pyxfer.fileio import atomic_write_bytes, atomic_write_json

    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "config.json", {"task": "zeroshot", **result.protocol})
    save_results(run / "results.json", result.results())
    outputs: tuple[tuple[str, dict[str, Any]], ...] = (
        ("predictions.npz", {"y_true": y_test, "y_pred": pred, "class_names": np.array(names)}),
        ("features.npz", {"features": X_test[:5000].astype(np.float32), "labels": y_test[:5000]}),
        ("split.npz", result.splits),
    )
    for name, arrays in outputs:
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(run / name, buf.getvalue())
    inner = model.model
    if result.method == "eszsl" and backbone_name is not None:
        import torch

        from pyxfer.modelio import save_model

        V = np.asarray(inner.V_, np.float64)  # (D, A): score = (x - mean) V s
        save_model(
            run / "model",
            backbone,
            backbone_name=backbone_name,
            backbone_kwargs=backbone_kwargs or {},
            task="zeroshot",
            class_names=names,
            extra={
                "method": "eszsl",
                "seen": result.seen,
                "unseen": result.unseen,
                "gamma": result.gamma,
                "attribute_names": table.attribute_names,
                "feature_grid": int(result.protocol["features"]["grid"]),
                "note": "scores = cos((x V - mean V), s_c); class rows are L2-normalised so "
                "the cosine ranks classes as ESZSL's x V s_c does; x is the last feature map "
                "averaged on a feature_grid x feature_grid grid (1: the pooled features)",
            },
            arrays={
                "class_embeddings": torch.from_numpy(S.astype(np.float32)),
                "projection": torch.from_numpy(V.T.astype(np.float32)),  # (A, D)
                "projection_bias": torch.from_numpy((-inner.mean_ @ V).astype(np.float32)),
            },
        )
    else:
        log.info("method %s: no deployable model written (only ESZSL exports)", result.method)
    if report:
        from pyxfer.report import write_report

        write_report(run)
    json.dumps(result.protocol)
    return run


def evaluate_zeroshot_run(
    run: str | os.PathLike[str],
    data: Any,
    *,
    batch_size: int = 256,
    threads: int = 0,
) -> ZeroShotResult:
    """Metrics of a saved zero-shot model exactly as it deploys.

    Scores are what an exported bundle computes: the cosine between the projected features
    and each class row. The run's class split, image split and seed are reused; the
    calibration constant chosen at fit time is in dot-product units, so GZSL is reported
    uncalibrated here (``gzsl_*`` equal ``gzsl_raw_*``) next to the threshold-free AUSUC.
    """
    import json

    from pyxfer import zeroshot as zs
    from pyxfer.backbone import GridFeatures
    from pyxfer.data import load_dataset
    from pyxfer.evaluate.features import extract_features
    from pyxfer.modelio import load_model

    root = Path(run)
    cfg = json.loads((root / "config.json").read_text())
    saved = load_model(root / "model")
    if saved.task != "zeroshot":
        raise ValueError(f"run: expected a zero-shot model in {root}/model, found {saved.task!r}")
    store = load_dataset(data) if isinstance(data, str) else data
    labels = np.asarray(store.labels, np.int64)
    if list(store.class_names) != saved.class_names:
        raise ValueError(
            f"data: expected the classes {saved.class_names} of the run, received "
            f"{list(store.class_names)}"
        )
    seen, uns = np.asarray(cfg["seen"]), np.asarray(cfg["unseen"])
    size = int(cfg["image_size"])
    with np.load(root / "split.npz", allow_pickle=False) as split:
        seen_test, unseen_test = split["seen_test"], split["unseen_test"]
    if max(seen_test.max(initial=0), unseen_test.max(initial=0)) >= labels.size:
        raise ValueError(f"data: expected the run's data set ({cfg['data']}), it is smaller")
    test_idx = np.concatenate([seen_test, unseen_test])
    test_rel = seen_test
    grid = int(saved.extra.get("feature_grid", 1))
    X = extract_features(
        saved.backbone if grid == 1 else GridFeatures(saved.backbone, grid),
        store.subset(test_idx),
        batch_size=batch_size,
        size=size,
        threads=threads,
        progress=False,
    ).astype(np.float64)
    P = saved.arrays["projection"].double().numpy()  # (A, D)
    b = (
        saved.arrays["projection_bias"].double().numpy()
        if "projection_bias" in saved.arrays
        else 0.0
    )
    S = saved.arrays["class_embeddings"].double().numpy()  # (C, A)
    Z = X @ P.T + b
    cos = (Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)) @ (
        S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-12)
    ).T
    ids = np.arange(S.shape[0])
    y = labels[test_idx]
    n_seen = test_rel.size
    zsl = zs.zsl_accuracy(y[n_seen:], cos[n_seen:], ids, uns)
    g = zs.gzsl_accuracy(y, ids[np.argmax(cos, axis=1)], seen, uns)
    return ZeroShotResult(
        method=str(cfg["method"]),
        seen=seen.tolist(),
        unseen=uns.tolist(),
        zsl=zsl,
        gzsl_s=g.s,
        gzsl_u=g.u,
        gzsl_h=g.h,
        gzsl_raw_s=g.s,
        gzsl_raw_u=g.u,
        gzsl_raw_h=g.h,
        ausuc=zs.ausuc(cos, y, ids, seen, uns),
        gamma=0.0,
        chance_zsl=1.0 / len(uns),
        protocol={
            **{k: cfg[k] for k in ("method", "seen", "unseen", "seed", "image_size")},
            "scores": "deployed: cosine(projected features, class rows)",
            "run": str(root),
        },
    )
