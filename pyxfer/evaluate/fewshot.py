"""Few-shot probe: k labelled images per class, averaged over seeded draws.

For each shot count k and each draw ``i`` (seed ``seed + i``), k training images per class are
picked with :func:`pyxfer.data.few_shot`, a classifier is fitted on their features only, and the
whole test split is scored. The report is the mean and the sample standard deviation (ddof=1;
0 for a single draw) over the draws.

Classifier (``method="auto"``):

- k = 1: nearest centroid on L2-normalised features (cosine to each class's single example).
  A linear probe has nothing to choose its regularisation on with one image per class, and on
  one example per class nearest-centroid is the usual strong baseline (SimpleShot, Wang et al.
  2019).
- k >= 2: the linear probe of :mod:`pyxfer.evaluate.linear`, its ``C`` chosen on a stratified
  validation split carved from the k shots (``max(0.2, 1/k)`` of each class, so at least one
  image per class), then refitted on all k shots. The test split is never used for the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyxfer._checks import check_class_indices, check_features
from pyxfer.data.splits import few_shot
from pyxfer.evaluate.linear import DEFAULT_CS, linear_probe
from pyxfer.evaluate.metrics import mean_per_class_accuracy

METHODS = ("auto", "centroid", "linear")


@dataclass
class FewShotResult:
    """Accuracy at one shot count over several draws.

    Attributes:
        shots: labelled images per class.
        method: ``"centroid"`` or ``"linear"``.
        mean, std: top-1 test accuracy over the draws (std with ddof=1).
        per_class_mean, per_class_std: the same for the per-class mean accuracy.
        accuracies: top-1 of each draw; ``per_class`` the per-class means of each draw.
        seeds: the seed of each draw.
        chosen_C: the regularisation chosen in each draw (linear only).
        n_train: labelled images per draw (shots x classes).
    """

    shots: int
    method: str
    mean: float
    std: float
    per_class_mean: float
    per_class_std: float
    accuracies: list[float] = field(default_factory=list)
    per_class: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    chosen_C: list[float] = field(default_factory=list)
    n_train: int = 0


def nearest_centroid_predict(
    train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray
) -> np.ndarray:
    """Cosine nearest class centroid: int64 (M,) predictions (class ids of ``train_labels``)."""
    from pyxfer.ops._features import l2_normalize_rows

    classes, inv = np.unique(train_labels, return_inverse=True)
    x = l2_normalize_rows(train_feats)  # (N, D)
    centroids = np.zeros((classes.size, x.shape[1]), np.float64)
    np.add.at(centroids, inv, x)
    centroids = l2_normalize_rows(centroids.astype(np.float32))  # (K, D)
    sims = l2_normalize_rows(test_feats) @ centroids.T  # (M, K)
    return classes[np.argmax(sims, axis=1)].astype(np.int64)


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def few_shot_probe(
    train_feats: Any,
    train_labels: Any,
    test_feats: Any,
    test_labels: Any,
    shots: Sequence[int] = (1, 5, 10),
    *,
    draws: int = 5,
    seed: int = 0,
    method: str = "auto",
    Cs: Sequence[float] = DEFAULT_CS,
    backend: str = "auto",
    num_classes: int | None = None,
) -> dict[int, FewShotResult]:
    """Few-shot accuracy for each shot count (see the module docstring).

    Args:
        train_feats: float (N, D) pool the shots are drawn from; train_labels: int (N,).
        test_feats: float (M, D); test_labels: int (M,). Only used for scoring.
        shots: labelled images per class, e.g. (1, 5, 10).
        draws: seeded draws per shot count; draw ``i`` uses seed ``seed + i``.
        seed: first seed.
        method: ``"auto"`` (centroid for 1 shot, linear otherwise), ``"centroid"`` or
            ``"linear"`` (needs >= 2 shots).
        Cs: regularisation grid of the linear probe.
        backend: solver of the linear probe.
        num_classes: classes for the per-class mean (default from the labels).

    Returns:
        ``{shots: FewShotResult}`` in the order of ``shots``.

    Raises:
        ValueError: a class has fewer than ``shots`` training images (named in the message).
    """
    x = check_features(train_feats, "train_feats", dtype=np.float32)
    y = check_class_indices(train_labels, x.shape[0], "train_labels")
    xt = check_features(test_feats, "test_feats", dtype=np.float32)
    yt = check_class_indices(test_labels, xt.shape[0], "test_labels")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, received {method!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws: expected an int >= 1, received {draws!r}")
    shot_list = [int(k) for k in shots]
    if not shot_list or min(shot_list) < 1:
        raise ValueError(f"shots: expected one or more ints >= 1, received {list(shots)}")
    if method == "linear" and min(shot_list) < 2:
        raise ValueError("shots: the linear few-shot probe needs >= 2 shots; use method='auto'")
    if num_classes is None:
        num_classes = int(max(y.max() if y.size else 0, yt.max() if yt.size else 0)) + 1
    out: dict[int, FewShotResult] = {}
    for k in shot_list:
        how = method if method != "auto" else ("centroid" if k == 1 else "linear")
        res = FewShotResult(k, how, 0.0, 0.0, 0.0, 0.0)
        for i in range(draws):
            s = seed + i
            idx = few_shot(y, k, seed=s)  # (k * classes,)
            if how == "centroid":
                pred = nearest_centroid_predict(x[idx], y[idx], xt)
            else:
                lp = linear_probe(
                    x[idx],
                    y[idx],
                    xt,
                    yt,
                    Cs=Cs,
                    val_fraction=max(0.2, 1.0 / k),
                    seed=s,
                    backend=backend,
                    num_classes=num_classes,
                )
                pred = lp.predictions
                res.chosen_C.append(lp.C)
            res.accuracies.append(float((pred == yt).mean()) if yt.size else float("nan"))
            res.per_class.append(mean_per_class_accuracy(yt, pred, num_classes))
            res.seeds.append(s)
            res.n_train = int(idx.size)
        res.mean = float(np.mean(res.accuracies))
        res.std = _std(res.accuracies)
        res.per_class_mean = float(np.mean(res.per_class))
        res.per_class_std = _std(res.per_class)
        out[k] = res
    return out
