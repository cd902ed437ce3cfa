"""Features for zero-shot runs: a backbone trained on the seen classes, pooled or spatial features.

Two things decide whether a zero-shot method can transfer what the descriptions say:

- **the backbone**: one trained only to tell the seen classes apart keeps little else;
  :func:`train_backbone` trains it on the seen training images with
  :class:`~pyxfer.zeroshot.finetune.AttributeBackbone` (each image's target is its class's
  description row, plus the seen-class cross-entropy, on images shifted at random by a few
  pixels), its heads reading the last feature map laid out on a grid;
- **the layout of the features**: global average pooling throws away *where* a feature
  fired, which is what spatial descriptions ("a stroke along the top") are about.
  :func:`grid_candidates` lists the layouts to try (``pooled`` = grid 1, ``spatial:G`` = the
  map averaged on a G x G grid) and :func:`choose_grid` picks one by the zero-shot accuracy on
  validation classes carved out of the seen classes
  (:func:`~pyxfer.zeroshot._base.select_on_validation_classes`); the unseen classes are never
  looked at.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pyxfer.zeroshot._base import select_on_validation_classes

log = logging.getLogger("pyxfer.zeroshot")

#: grid sides tried by ``layout="auto"`` (those larger than the feature map are skipped)
AUTO_GRIDS: tuple[int, ...] = (1, 2, 3, 4)
#: finest grid the training heads read (the whole map when it is smaller)
HEAD_GRID = 7


def parse_layout(layout: str) -> int | None:
    """``"auto"`` -> None, ``"pooled"`` -> 1, ``"spatial:G"`` -> G."""
    if layout == "auto":
        return None
    if layout == "pooled":
        return 1
    kind, _, side = str(layout).partition(":")
    if kind == "spatial" and side.isdigit() and int(side) >= 1:
        return int(side)
    raise ValueError(
        f"layout: expected 'auto', 'pooled' or 'spatial:G' (G a grid side >= 1), received "
        f"{layout!r}"
    )


def map_side(backbone: Any, size: int) -> int | None:
    """The smaller side of the backbone's feature map for ``size`` inputs; None when it has no
    spatial map (no ``forward_features``, or tokens)."""
    import torch

    if not callable(getattr(backbone, "forward_features", None)):
        return None
    spec = backbone.input_spec
    ref = next(iter(backbone.parameters()), None)
    x = torch.zeros(1, spec.channels, size, size, device=ref.device if ref is not None else None)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            fmap = backbone.forward_features(x)
    finally:
        backbone.train(was_training)
    return int(min(fmap.shape[-2:])) if fmap.ndim == 4 else None


def grid_candidates(layout: str, side: int | None) -> tuple[int, ...]:
    """The grid sides to try: one for ``pooled`` / ``spatial:G``, several for ``auto``."""
    grid = parse_layout(layout)
    if grid is None:
        return tuple(g for g in AUTO_GRIDS if side is not None and g <= side) or (1,)
    if grid > 1 and (side is None or grid > side):
        raise ValueError(
            f"layout: spatial:{grid} needs a feature map of at least {grid}x{grid}; this "
            f"backbone gives {'no spatial map' if side is None else f'{side}x{side}'}"
        )
    return (grid,)


def preprocessed(store: Any, indices: np.ndarray, spec: Any, size: int, threads: int = 0) -> Any:
    """Images ``indices`` of ``store`` as the backbone sees them: float tensor (N, C, S, S)."""
    import torch

    from pyxfer.data.channels import convert_all
    from pyxfer.ops import preprocess

    images = convert_all(store.batch(np.asarray(indices, np.int64)), spec.channels)
    x = preprocess(images, size, size, spec.mean, spec.std, threads=threads)  # (N, C, S, S)
    return torch.from_numpy(np.ascontiguousarray(x))


def train_backbone(
    backbone: Any,
    store: Any,
    train_idx: np.ndarray,
    labels: np.ndarray,
    table: np.ndarray,
    *,
    size: int,
    max_steps: int = 400,
    max_shift: int = 2,
    lr: float = 2e-3,
    batch_size: int = 128,
    seed: int = 0,
    threads: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """A copy of ``backbone`` trained on the seen training images (see the module docstring).

    Args:
        backbone: a pyxfer backbone with a feature map (``forward_features`` -> (N, D, h, w)).
        store: the labelled images; only ``train_idx`` are read.
        train_idx: indices of the training images (seen classes only).
        labels: (N,) class id of every image of the store.
        table: (C, A) description rows, row c for class c (the unseen rows are not used).
        size: input side.
        max_steps, max_shift, lr, batch_size, seed: the training (see AttributeBackbone).

    Returns:
        ``(trained backbone, what was done)``: the backbone in eval mode, and a record of the
        training for the run's protocol.
    """
    from pyxfer.backbone import GridFeatures
    from pyxfer.zeroshot.finetune import AttributeBackbone

    side = map_side(backbone, size)
    if side is None:
        raise ValueError(
            "train_backbone: needs a backbone with a spatial feature map (forward_features -> "
            f"(N, D, h, w)); {type(backbone).__name__} has none"
        )
    head_grid = min(side, HEAD_GRID)
    x = preprocessed(store, train_idx, backbone.input_spec, size, threads)
    net = AttributeBackbone(
        GridFeatures(backbone, head_grid),
        max_steps=max_steps,
        max_shift=max_shift,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    ).fit(x, labels[train_idx], table)
    trained = net.backbone_.backbone.eval()
    record = {
        "images": len(train_idx),
        "steps": int(net.steps_),
        "max_shift": int(max_shift),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "head_grid": int(head_grid),
        "loss_per_epoch": [round(float(v), 5) for v in net.loss_history_],
        "losses": "attributes (BCE against the class rows) + seen-class cross-entropy"
        if net.bce_
        else "attributes (MSE against the class rows) + seen-class cross-entropy",
    }
    log.info("zero-shot backbone: %s", record)
    return trained, record


def extract_grids(
    backbone: Any,
    store: Any,
    grids: tuple[int, ...],
    *,
    size: int,
    batch_size: int = 256,
    threads: int = 0,
) -> dict[int, np.ndarray]:
    """Features (N, D * g * g) of every image of ``store`` for each grid side (one pass).

    Grid 1 is the backbone's own pooled output (``forward_head(pre_logits=True)``).
    """
    from pyxfer.backbone import GridFeatures
    from pyxfer.evaluate.features import extract_features

    out: dict[int, np.ndarray] = {}
    if 1 in grids:
        out[1] = extract_features(
            backbone, store, batch_size=batch_size, size=size, threads=threads, progress=False
        )
    spatial = tuple(g for g in grids if g > 1)
    if spatial:
        feats = extract_features(
            GridFeatures(backbone, spatial),
            store,
            batch_size=batch_size,
            size=size,
            threads=threads,
            progress=False,
        )
        dim = feats.shape[1] // sum(g * g for g in spatial)
        start = 0
        for g in spatial:
            out[g] = feats[:, start : start + dim * g * g]
            start += dim * g * g
    return {g: out[g] for g in grids}


def validation_accuracy(
    model: Any, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray, seed: int = 0
) -> float:
    """Zero-shot accuracy of ``model`` on validation classes carved out of the seen classes
    ``y`` (the best over its own hyper-parameter candidates)."""
    model.fit(X, y, S, ids)
    rows = getattr(model, "cv_results_", [])
    if not rows:  # nothing searched: score the fixed setting the same way
        rows = []
        select_on_validation_classes(model, {}, X, y, S, ids, seed=seed, results=rows)
    return float(max(r["val_accuracy"] for r in rows))


def choose_grid(
    features: dict[int, np.ndarray],
    y: np.ndarray,
    S: np.ndarray,
    ids: np.ndarray,
    make_model: Any,
) -> tuple[int, dict[int, float]]:
    """The grid whose features give the best validation-class accuracy (the first among
    ties, so the coarsest), and every grid's accuracy.

    Args:
        features: grid side -> (N, D_g) features of the seen training images.
        y: (N,) their classes; S, ids: the class table and its ids.
        make_model: returns a fresh zero-shot classifier.
    """
    scores = {g: validation_accuracy(make_model(), X, y, S, ids) for g, X in features.items()}
    best = max(scores, key=lambda g: (scores[g], -g))
    log.info("zero-shot features: validation accuracy per grid %s -> grid %d", scores, best)
    return best, scores
