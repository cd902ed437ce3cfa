"""Classification metrics shared by the evaluation protocols (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_labels(labels: Any, n: int, name: str) -> np.ndarray:
    """int64 (n,) labels >= 0, or a ValueError naming ``name``."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) (one label per row), received {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids, received dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if lab.size and lab.min() < 0:
        raise ValueError(
            f"{name}: expected class ids >= 0 (labelled images only), received {int(lab.min())}"
        )
    return lab


def check_features(feats: Any, name: str) -> np.ndarray:
    """float32 (N, D) finite features, or a ValueError naming ``name``."""
    arr = np.asarray(feats)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (N, D), received shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected floating-point features, received dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, received NaN or inf")
    return arr


def per_class_accuracy(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Recall of each class: float64 (num_classes,), NaN for classes absent from ``y_true``."""
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    total = np.bincount(t, minlength=num_classes).astype(np.float64)
    hit = np.bincount(t[t == p], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1), np.nan)


def mean_per_class_accuracy(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Mean over the classes present in ``y_true`` of each class's accuracy (balanced accuracy).

    Examples:
        >>> mean_per_class_accuracy([0, 0, 0, 1], [0, 0, 0, 0])   # (1 + 0) / 2
        0.5
    """
    t = np.asarray(y_true, np.int64)
    if t.size == 0:
        return float("nan")
    c = int(num_classes) if num_classes is not None else int(t.max()) + 1
    return float(np.nanmean(per_class_accuracy(t, y_pred, c)))


def topk_accuracy(scores: np.ndarray, y_true: Any, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores.

    Equal scores rank the lower class first (the same rule as the arg-max prediction).
    """
    t = np.asarray(y_true, np.int64)
    if t.size == 0:
        return float("nan")
    k = min(int(k), scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (M, k)
    return float((order == t[:, None]).any(axis=1).mean())


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """int64 (num_classes, num_classes) counts; row = true class, column = predicted class."""
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)
