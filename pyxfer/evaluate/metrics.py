"""Classification metrics shared by the evaluation protocols and zero-shot learning (numpy
only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyxfer._checks import check_class_indices, check_features

#: a list of class ids: a sequence of ints or an integer array
ClassIds = Sequence[int] | np.ndarray

#: the argument checks moved to :mod:`pyxfer._checks`; these names stay for one release
check_labels = check_class_indices
__all__ = [
    "ClassIds",
    "check_features",
    "check_labels",
    "confusion_matrix",
    "mean_per_class_accuracy",
    "per_class_accuracy",
    "topk_accuracy",
]


def per_class_accuracy(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Recall of each class: float64 (num_classes,), NaN for classes absent from ``y_true``."""
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    total = np.bincount(t, minlength=num_classes).astype(np.float64)
    hit = np.bincount(t[t == p], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1), np.nan)


def mean_per_class_accuracy(
    y_true: Any,
    y_pred: Any,
    num_classes: int | None = None,
    *,
    classes: ClassIds | None = None,
) -> float:
    """Mean over classes of each class's top-1 accuracy (balanced accuracy; each class weighs
    the same however many images it has, as zero-shot papers report accuracy).

    Args:
        y_true: (N,) true class ids (any integers: indices, or the ids of a class table).
        y_pred: (N,) predicted class ids.
        num_classes: when given, the class ids must lie in ``[0, num_classes)``. Classes
            without images are left out of the mean either way.
        classes: the classes to average over (images of other classes are ignored); every one
            must have images. Default: the classes present in ``y_true``.

    Returns:
        A number in [0, 1]; NaN when there is nothing to average (no images and no
        ``classes``).

    Examples:
        >>> mean_per_class_accuracy([0, 0, 0, 1], [0, 0, 0, 0])   # (1 + 0) / 2
        0.5
        >>> mean_per_class_accuracy([3, 3, 3, 7], [3, 3, 7, 7])   # (2/3 + 1) / 2
        0.8333333333333333
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_pred: expected shape {t.shape} like y_true, received {p.shape}")
    if num_classes is not None and t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"y_true: expected class ids in [0, {num_classes}), received "
            f"[{int(t.min())}, {int(t.max())}]"
        )
    if classes is not None:
        cls = np.unique(np.asarray(list(classes)))
        empty = np.setdiff1d(cls, t)
        if empty.size:
            raise ValueError(f"classes: class(es) {empty.tolist()} have no images in y_true")
        keep = np.isin(t, cls)
        t, p = t[keep], p[keep]
    if t.size == 0:
        return float("nan")
    _, inverse, total = np.unique(t, return_inverse=True, return_counts=True)
    hit = np.bincount(inverse, weights=(t == p), minlength=total.size)
    return float(np.mean(hit / total))


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
