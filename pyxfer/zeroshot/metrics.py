"""Zero-shot evaluation the way the literature reports it.

- Accuracy is the **per-class mean** of top-1 accuracy (each class weighs the same, however
  many test images it has; :func:`pyxfer.evaluate.metrics.mean_per_class_accuracy`, the one
  implementation the evaluation protocols use too), as in Xian et al., "Zero-Shot Learning -
  The Good, the Bad and the Ugly" (CVPR 2017).
- ZSL accuracy: test images of unseen classes, predictions among the unseen classes only.
- GZSL: predictions among *all* classes; ``s`` is the per-class mean accuracy over test images
  of seen classes, ``u`` the same over unseen classes, and ``H = 2us / (u + s)`` (0 when either
  is 0).
- AUSUC (Chao et al., "An Empirical Study and Analysis of Generalized Zero-Shot Learning for
  Object Recognition in the Wild", ECCV 2016): calibrated stacking subtracts ``gamma`` from every
  seen-class score; sweeping ``gamma`` from -inf to +inf traces the seen-unseen accuracy curve
  from (s, 0) to (0, u); AUSUC is the area under it (1 for a perfect model).

Examples:
    >>> mean_per_class_accuracy([0, 0, 0, 1], [0, 0, 1, 1])  # class 0: 2/3, class 1: 1/1
    0.8333333333333333
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyxfer.evaluate.metrics import ClassIds, mean_per_class_accuracy
from pyxfer.zeroshot._base import check_split, rows_for


def per_class_accuracy(y_true: Any, y_pred: Any, classes: ClassIds | None = None) -> float:
    """The former name of :func:`mean_per_class_accuracy` (``classes`` as the third argument),
    kept for one release; :func:`pyxfer.evaluate.per_class_accuracy` is the per-class array."""
    return mean_per_class_accuracy(y_true, y_pred, classes=classes)


def zsl_accuracy(y_true: Any, scores: Any, class_ids: Any, unseen_classes: ClassIds) -> float:
    """Per-class mean top-1 on unseen-class images, predicting among the unseen classes only.

    Args:
        y_true: (N,) true class ids (all unseen).
        scores: (N, C) scores over the classes ``class_ids``.
        class_ids: (C,) class id of each score column.
        unseen_classes: the unseen classes (each must have a column and images).
    """
    y_true = np.asarray(y_true).ravel()
    scores = np.asarray(scores)
    class_ids = np.asarray(class_ids)
    unseen = np.unique(np.asarray(list(unseen_classes)))
    if not np.isin(y_true, unseen).all():
        raise ValueError("y_true: expected only unseen-class images for ZSL accuracy")
    cols = rows_for(class_ids, unseen, "class_ids")
    pred = unseen[np.argmax(scores[:, cols], axis=1)]
    return mean_per_class_accuracy(y_true, pred, classes=unseen)


def harmonic_mean(u: float, s: float) -> float:
    """H = 2us / (u + s), 0 when either accuracy is 0."""
    if u <= 0 or s <= 0:
        return 0.0
    return float(2 * u * s / (u + s))


@dataclass(frozen=True)
class GZSLResult:
    """Generalised zero-shot accuracies: seen ``s``, unseen ``u``, harmonic mean ``h``."""

    s: float
    u: float
    h: float


def gzsl_accuracy(
    y_true: Any, y_pred: Any, seen_classes: ClassIds, unseen_classes: ClassIds
) -> GZSLResult:
    """s, u and H from predictions made over ALL classes.

    Args:
        y_true: (N,) true ids of test images of seen and unseen classes.
        y_pred: (N,) predicted ids (predicted among seen + unseen classes).
        seen_classes, unseen_classes: the split; disjoint, each class with test images.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    seen, unseen = check_split(seen_classes, unseen_classes, y_true)
    ms, mu = np.isin(y_true, seen), np.isin(y_true, unseen)
    if not (ms | mu).all():
        raise ValueError(
            "y_true: expected only seen or unseen classes, received others "
            f"{np.unique(y_true[~(ms | mu)]).tolist()}"
        )
    s = mean_per_class_accuracy(y_true[ms], y_pred[ms], classes=seen)
    u = mean_per_class_accuracy(y_true[mu], y_pred[mu], classes=unseen)
    return GZSLResult(s=s, u=u, h=harmonic_mean(u, s))


def calibrated_stacking(
    scores: Any, class_ids: Any, seen_classes: ClassIds, gamma: float
) -> np.ndarray:
    """Scores (N, C) with ``gamma`` subtracted from every seen-class column (Chao et al. 2016)."""
    scores = np.array(scores, dtype=np.float64)
    seen_cols = np.isin(np.asarray(class_ids), np.asarray(list(seen_classes)))
    scores[:, seen_cols] -= gamma
    return scores


@dataclass(frozen=True)
class SeenUnseenCurve:
    """Seen/unseen accuracy for every distinct calibrated-stacking outcome.

    ``gammas[k]`` reproduces ``(seen[k], unseen[k])``; ``gammas[0] = -inf`` (all seen),
    ``gammas[-1]`` is the largest threshold (everything unseen). ``seen`` is non-increasing and
    ``unseen`` non-decreasing along the arrays.
    """

    gammas: np.ndarray
    seen: np.ndarray
    unseen: np.ndarray

    @property
    def ausuc(self) -> float:
        """Area under the curve of unseen accuracy against seen accuracy (trapezoids)."""
        ds = self.seen[:-1] - self.seen[1:]
        return float(np.sum(ds * (self.unseen[:-1] + self.unseen[1:]) / 2))


def seen_unseen_curve(
    scores: Any,
    y_true: Any,
    class_ids: Any,
    seen_classes: ClassIds,
    unseen_classes: ClassIds,
) -> SeenUnseenCurve:
    """Sweep calibrated stacking's ``gamma`` over every value where a prediction changes.

    With ``gamma`` subtracted from the seen scores, image i is assigned its best seen class
    while ``gamma < t_i = max_seen_i - max_unseen_i`` and its best unseen class once
    ``gamma >= t_i`` (ties go to the unseen class), so the curve only changes at the ``t_i``.

    Args:
        scores: (N, C) uncalibrated scores over ``class_ids`` (all seen and unseen classes).
        y_true: (N,) true ids of test images of seen and unseen classes.
        class_ids: (C,) id of each column.
        seen_classes, unseen_classes: the split.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y_true = np.asarray(y_true).ravel()
    class_ids = np.asarray(class_ids)
    seen, unseen = check_split(seen_classes, unseen_classes, y_true)
    if scores.ndim != 2 or scores.shape != (y_true.size, class_ids.size):
        raise ValueError(
            f"scores: expected shape ({y_true.size}, {class_ids.size}), received {scores.shape}"
        )
    sc, uc = rows_for(class_ids, seen, "class_ids"), rows_for(class_ids, unseen, "class_ids")
    is_seen = np.isin(y_true, seen)
    if not (is_seen | np.isin(y_true, unseen)).all():
        raise ValueError("y_true: expected only seen or unseen classes")
    best_s = class_ids[sc][np.argmax(scores[:, sc], axis=1)]
    best_u = class_ids[uc][np.argmax(scores[:, uc], axis=1)]
    t = scores[:, sc].max(axis=1) - scores[:, uc].max(axis=1)
    # weight of each image in its group's per-class mean
    _, inv, counts = np.unique(y_true, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    w = np.where(is_seen, w / seen.size, w / unseen.size)
    gain_s = np.where(is_seen & (best_s == y_true), w, 0.0)  # lost when it flips to unseen
    gain_u = np.where(~is_seen & (best_u == y_true), w, 0.0)  # won when it flips to unseen
    order = np.argsort(t, kind="stable")
    t_sorted = t[order]
    thresholds, first = np.unique(t_sorted, return_index=True)
    cum_s = np.concatenate([[0.0], np.cumsum(gain_s[order])])
    cum_u = np.concatenate([[0.0], np.cumsum(gain_u[order])])
    # at gamma = thresholds[k], images with t <= thresholds[k] are predicted unseen
    last = np.append(first[1:], t.size)  # one past the last image with t == thresholds[k]
    seen_acc = np.concatenate([[cum_s[-1]], cum_s[-1] - cum_s[last]])
    unseen_acc = np.concatenate([[0.0], cum_u[last]])
    gammas = np.concatenate([[-np.inf], thresholds])
    return SeenUnseenCurve(
        gammas=gammas, seen=np.clip(seen_acc, 0, 1), unseen=np.clip(unseen_acc, 0, 1)
    )


def ausuc(
    scores: Any,
    y_true: Any,
    class_ids: Any,
    seen_classes: ClassIds,
    unseen_classes: ClassIds,
) -> float:
    """Area under the seen-unseen accuracy curve (Chao et al. 2016); see seen_unseen_curve."""
    return seen_unseen_curve(scores, y_true, class_ids, seen_classes, unseen_classes).ausuc


def best_stacking_gamma(
    scores: Any,
    y_true: Any,
    class_ids: Any,
    seen_classes: ClassIds,
    unseen_classes: ClassIds,
) -> tuple[float, GZSLResult]:
    """The ``gamma`` with the highest H on (validation) scores, and the s/u/H it gives.

    Among the gammas reaching the best H, the midpoint of the interval of equivalent values is
    returned so that small score shifts on new data do not flip the decision.
    """
    curve = seen_unseen_curve(scores, y_true, class_ids, seen_classes, unseen_classes)
    h = np.array([harmonic_mean(u, s) for s, u in zip(curve.seen, curve.unseen, strict=True)])
    k = int(np.argmax(h))
    g = curve.gammas
    if k == 0:  # everything seen is best: any gamma below the first threshold
        gamma = g[1] - 1.0 if g.size > 1 else 0.0
    elif k + 1 < g.size:  # gamma in [g[k], g[k+1]) gives the same predictions
        gamma = (g[k] + g[k + 1]) / 2
    else:
        gamma = g[k] + 1.0
    return float(gamma), GZSLResult(s=float(curve.seen[k]), u=float(curve.unseen[k]), h=float(h[k]))
