"""Weighted k-nearest-neighbour accuracy of frozen features (InstDisc / DINO protocol)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyxfer._checks import check_class_indices, check_features
from pyxfer.evaluate.metrics import mean_per_class_accuracy, topk_accuracy

log = logging.getLogger("pyxfer.evaluate")


@dataclass
class KNNResult:
    """What :func:`knn_accuracy` measured.

    Attributes:
        top1: fraction of test rows whose highest-scoring class is the true one.
        top5: fraction whose true class is among the five highest scores (1.0 when there are
            five classes or fewer).
        per_class_mean: mean over the classes present in the test set of each class's top-1.
        k: neighbours actually used (``min(k, number of training rows)``).
        temperature: the vote temperature.
        predictions: int64 (M,) predicted class per test row.
        scores: float32 (M, num_classes) summed vote weights.
    """

    top1: float
    top5: float
    per_class_mean: float
    k: int
    temperature: float
    predictions: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)


def knn_accuracy(
    train_feats: Any,
    train_labels: Any,
    test_feats: Any,
    test_labels: Any,
    k: int = 200,
    temperature: float = 0.07,
    *,
    num_classes: int | None = None,
    threads: int = 0,
) -> KNNResult:
    """kNN classification accuracy with temperature-weighted votes (Wu et al. 2018, InstDisc).

    Features are L2-normalised, each test row takes its ``k`` most cosine-similar training rows
    and every neighbour votes for its label with weight ``exp(similarity / temperature)``
    (the fused :func:`pyxfer.ops.knn_classify` kernel; the similarity matrix is never built).
    The predicted class is the arg-max of the summed votes, ties to the lower class.

    Args:
        train_feats: float (N, D) features of the labelled bank.
        train_labels: int (N,) class ids >= 0.
        test_feats: float (M, D) features to classify.
        test_labels: int (M,) class ids >= 0.
        k: neighbours per query (DINO uses 20 and 200); clamped to N with a log message.
        temperature: vote temperature T > 0 (0.07 in InstDisc and DINO).
        num_classes: classes (default: one more than the largest label seen).
        threads: CPU threads (0 = all); the result does not depend on it.

    Returns:
        a :class:`KNNResult`.

    Examples:
        >>> bank = np.eye(3, dtype=np.float32)
        >>> knn_accuracy(bank, [0, 1, 2], bank, [0, 1, 2], k=1).top1
        1.0
    """
    from pyxfer.ops import knn_classify

    train = check_features(train_feats, "train_feats", dtype=np.float32)
    test = check_features(test_feats, "test_feats", dtype=np.float32)
    ytr = check_class_indices(train_labels, train.shape[0], "train_labels")
    yte = check_class_indices(test_labels, test.shape[0], "test_labels")
    if train.shape[0] == 0:
        raise ValueError("train_feats: expected at least one training row, received none")
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"test_feats: expected D = {train.shape[1]} (the training features' width), "
            f"received {test.shape[1]}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an int >= 1, received {k!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: expected a finite value > 0, received {temperature}")
    if num_classes is None:
        num_classes = int(max(ytr.max(), yte.max() if yte.size else 0)) + 1
    if yte.size and yte.max() >= num_classes:
        raise ValueError(
            f"test_labels: expected class ids < num_classes = {num_classes}, "
            f"received {int(yte.max())}"
        )
    k_used = min(int(k), train.shape[0])
    if k_used < k:
        log.info("knn: k=%d > %d training rows, using k=%d", k, train.shape[0], k_used)
    scores = knn_classify(
        test,
        train,
        ytr,
        k_used,
        float(temperature),
        int(num_classes),
        normalize=True,
        threads=threads,
    )  # (M, num_classes)
    scores = np.asarray(scores, np.float32)
    pred = np.argmax(scores, axis=1).astype(np.int64) if yte.size else np.zeros(0, np.int64)
    top1 = float((pred == yte).mean()) if yte.size else float("nan")
    return KNNResult(
        top1=top1,
        top5=topk_accuracy(scores, yte, 5),
        per_class_mean=mean_per_class_accuracy(yte, pred, num_classes),
        k=k_used,
        temperature=float(temperature),
        predictions=pred,
        scores=scores,
    )
