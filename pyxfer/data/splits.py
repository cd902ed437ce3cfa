"""Seeded, deterministic splits of a labelled data set; every function returns index arrays.

All randomness comes from ``numpy.random.default_rng(seed)``: the same labels and seed give the
same indices on every machine and numpy version that keeps the Generator stream (PCG64).
Returned image indices are sorted ascending (reading a memory-mapped store in order is faster);
shuffle them yourself for training order. Unlabelled images (label ``-1``) are treated as one
more group by :func:`stratified_split` and ignored by the others.

Examples:
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(3), 10)
    >>> train, val = stratified_split(labels, (0.8, 0.2), seed=0)
    >>> np.bincount(labels[val]).tolist()
    [2, 2, 2]
    >>> few = few_shot(labels, k=3, seed=0)          # 3 labelled images per class
    >>> rest = np.setdiff1d(np.arange(len(labels)), few)
    >>> seen, unseen = class_split(3, unseen=1, seed=0)
    >>> zero_shot_test = indices_of_classes(labels, unseen)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[int] | np.ndarray


def _labels(labels: ArrayLike) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and not np.issubdtype(lab.dtype, np.integer)):
        raise ValueError(
            f"labels: expected a 1-D array of int class ids, received dtype {lab.dtype} "
            f"shape {lab.shape}"
        )
    return lab.astype(np.int64, copy=False)


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` items into integer parts proportional to ``fractions`` (largest remainder)."""
    exact = n * fractions
    parts = np.floor(exact).astype(np.int64)
    short = n - int(parts.sum())
    if short > 0:
        order = np.argsort(-(exact - parts), kind="stable")  # ties: earlier part first
        parts[order[:short]] += 1
    return parts


def stratified_split(
    labels: ArrayLike, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split image indices into parts with the given fractions, class by class.

    Every class (and the unlabelled group) is shuffled and cut by the fractions with
    largest-remainder rounding, so each part holds each class in proportion (±1 image).

    Args:
        labels: int (N,) class ids, -1 for unlabelled.
        fractions: two or more non-negative numbers summing to 1, e.g. (train, val, test).
        seed: the random seed.

    Returns:
        one sorted int64 index array per fraction; together they cover 0..N-1 exactly once.
    """
    lab = _labels(labels)
    f = np.asarray(fractions, np.float64)
    if f.ndim != 1 or f.size < 2 or (f < 0).any() or abs(float(f.sum()) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions: expected two or more non-negative numbers summing to 1, received "
            f"{list(fractions)}"
        )
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in f]
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        idx = idx[rng.permutation(idx.size)]
        bounds = np.cumsum(_allocate(idx.size, f))[:-1]
        for p, chunk in enumerate(np.split(idx, bounds)):
            parts[p].append(chunk)
    return tuple(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)


def few_shot(
    labels: ArrayLike, k: int, seed: int = 0, *, num_classes: int | None = None
) -> np.ndarray:
    """Pick ``k`` labelled images per class at random.

    Args:
        labels: int (N,) class ids, -1 for unlabelled (never picked).
        k: images per class (>= 1).
        seed: the random seed.
        num_classes: if given, every class 0..num_classes-1 must have ``k`` images (a class
            with none at all is caught too); otherwise the classes present in ``labels``.

    Returns:
        sorted int64 indices, ``k`` per class.

    Raises:
        ValueError: naming the class, when a class has fewer than ``k`` images.
    """
    lab = _labels(labels)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an int >= 1, received {k!r}")
    classes = np.arange(num_classes) if num_classes is not None else np.unique(lab[lab >= 0])
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        idx = np.flatnonzero(lab == c)
        if idx.size < k:
            raise ValueError(
                f"k: class {int(c)} has {idx.size} labelled image(s); expected at least k={k}"
            )
        chosen.append(idx[rng.choice(idx.size, size=k, replace=False)])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def class_split(
    num_classes: int, unseen: int | float | ArrayLike, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split class ids into seen and unseen classes (zero-shot evaluation).

    Args:
        num_classes: the classes are 0..num_classes-1.
        unseen: a count of unseen classes (int), a fraction in (0, 1) (float, rounded, at
            least one), or an explicit list of unseen class ids (then ``seed`` is unused).
        seed: the random seed.

    Returns:
        (seen, unseen): sorted int64 class-id arrays, disjoint, covering all classes.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes: expected an int >= 2, received {num_classes!r}")
    if isinstance(unseen, (float, np.floating)):
        if not 0.0 < unseen < 1.0:
            raise ValueError(f"unseen: expected a fraction in (0, 1), received {unseen}")
        unseen = max(1, round(float(unseen) * num_classes))
    if isinstance(unseen, (int, np.integer)):
        if not 1 <= unseen < num_classes:
            raise ValueError(
                f"unseen: expected a count in [1, {num_classes - 1}], received {unseen}"
            )
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.permutation(num_classes)[: int(unseen)]).astype(np.int64)
    else:
        chosen = np.unique(np.asarray(unseen, np.int64))
        if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= num_classes:
            raise ValueError(
                f"unseen: expected class ids in [0, {num_classes}), received {list(unseen)}"
            )
        if chosen.size == num_classes:
            raise ValueError("unseen: expected at least one seen class, received all classes")
    seen = np.setdiff1d(np.arange(num_classes, dtype=np.int64), chosen)
    return seen, chosen


def indices_of_classes(labels: ArrayLike, classes: ArrayLike) -> np.ndarray:
    """Sorted int64 indices of the images whose label is in ``classes``."""
    lab = _labels(labels)
    return np.flatnonzero(np.isin(lab, np.asarray(classes, np.int64))).astype(np.int64)
