"""What every zero-shot classifier shares: the class table, class-wise splits, the base class.

The lowest module of :mod:`pyxfer.zeroshot`: it imports nothing else from the package (the
methods and :mod:`pyxfer.zeroshot.metrics` import it, never the other way round).

A zero-shot classifier is fitted on features ``X`` (N, D) of images whose labels ``y`` (N,) are
*seen* classes, and on a class-description table ``class_descriptions`` (C, A) whose rows are
the classes listed in ``class_ids`` (C,). The table may hold more classes than ``y`` (the unseen
ones); they are the default set predicted over. ``predict`` and ``decision_function`` accept
another table at call time, so a deployed model gains a class by adding its description row.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from itertools import product
from typing import Any, ClassVar, Self

import numpy as np

from pyxfer._checks import check_class_ids, check_features
from pyxfer.evaluate.metrics import ClassIds, mean_per_class_accuracy


def check_class_table(
    class_descriptions: Any, class_ids: Any = None, *, num_attributes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a class table; returns ``(S, ids)``: S (C, A) float64, ids (C,) int64.

    ``class_descriptions`` may be a :class:`~pyxfer.zeroshot.descriptions.ClassDescriptions`
    (its ``class_ids`` are used when ``class_ids`` is None) or an array (C, A); ``class_ids``
    defaults to ``0..C-1``.
    """
    if hasattr(class_descriptions, "matrix") and hasattr(class_descriptions, "class_ids"):
        if class_ids is None:
            class_ids = class_descriptions.class_ids
        class_descriptions = class_descriptions.matrix
    S = check_features(
        class_descriptions,
        "class_descriptions",
        layout="(num_classes, num_attributes)",
        min_rows=1,
    )
    if num_attributes is not None and S.shape[1] != num_attributes:
        raise ValueError(
            f"class_descriptions: expected {num_attributes} attributes per class (as at fit), "
            f"received {S.shape[1]}"
        )
    ids = np.arange(S.shape[0]) if class_ids is None else np.asarray(class_ids)
    if ids.ndim != 1 or ids.shape[0] != S.shape[0]:
        raise ValueError(
            f"class_ids: expected one id per row of class_descriptions ({S.shape[0]}), received "
            f"shape {ids.shape}"
        )
    ids = check_class_ids(ids, S.shape[0], "class_ids")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"class_ids: expected distinct ids, received duplicates {uniq[counts > 1].tolist()}"
        )
    return S, ids


def rows_for(
    ids: np.ndarray, wanted: Iterable[int], name: str = "class_descriptions"
) -> np.ndarray:
    """Row index in ``ids`` of each class in ``wanted``; a missing class is a ``ValueError``."""
    pos = {int(c): i for i, c in enumerate(ids)}
    wanted = [int(c) for c in wanted]
    missing = [c for c in wanted if c not in pos]
    if missing:
        raise ValueError(
            f"{name}: expected a row for every class, missing class(es) {missing} "
            f"(table has {sorted(pos)})"
        )
    return np.array([pos[c] for c in wanted], dtype=np.int64)


def check_split(
    seen_classes: ClassIds, unseen_classes: ClassIds, y: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a seen/unseen split: disjoint, non-empty, each class with images in ``y``."""
    seen = np.unique(np.asarray(list(seen_classes), dtype=np.int64))
    unseen = np.unique(np.asarray(list(unseen_classes), dtype=np.int64))
    if seen.size == 0:
        raise ValueError("seen_classes: expected at least one class, received none")
    if unseen.size == 0:
        raise ValueError("unseen_classes: expected at least one class, received none")
    both = np.intersect1d(seen, unseen)
    if both.size:
        raise ValueError(
            f"unseen_classes: expected no overlap with seen_classes, received {both.tolist()} "
            "in both"
        )
    if y is not None:
        present = np.unique(np.asarray(y))
        for name, cls in (("seen_classes", seen), ("unseen_classes", unseen)):
            empty = np.setdiff1d(cls, present)
            if empty.size:
                raise ValueError(f"{name}: class(es) {empty.tolist()} have no images in y")
    return seen, unseen


def class_folds(
    classes: np.ndarray, n_splits: int, seed: int, purpose: str = "hyper-parameters"
) -> list[np.ndarray]:
    """Split seen ``classes`` into ``n_splits`` groups of validation classes (each >= 2 classes).

    Needs at least 4 classes (2 to fit on, 2 to validate on); fewer folds are made when there
    are too few classes for ``n_splits`` groups of two.
    """
    classes = np.asarray(classes)
    if classes.size < 4:
        raise ValueError(
            f"y: choosing {purpose} on validation classes needs at least 4 seen classes "
            f"with images, received {classes.size}; pass the {purpose} explicitly"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(classes)
    k = max(1, min(n_splits, classes.size // 2, classes.size - 2))
    if k == 1:
        nval = max(2, classes.size // 3)
        return [np.sort(order[:nval])]
    return [np.sort(g) for g in np.array_split(order, k)]


class ZeroShotClassifier:
    """Base class: scikit-learn-style ``fit`` / ``decision_function`` / ``predict``.

    Subclasses implement ``_fit(X, y, S, ids)`` (fit on the images ``X, y``; ``S`` is the whole
    class table whose rows have ids ``ids``) and ``_scores(X, S) -> (N, C)``, and list their
    searchable hyper-parameters in ``_HYPER``.

    Attributes (after fit):
        classes_: (C,) class ids of the table given to ``fit`` (the default prediction set).
        class_descriptions_: (C, A) that table.
        seen_classes_: the classes that had training images.
    """

    #: hyper-parameter name -> default candidates searched on validation classes when the
    #: constructor argument of that name is None (``param_grid`` overrides the candidates)
    _HYPER: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def _fit(self, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _scores(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_X(self, X: Any) -> np.ndarray:
        return check_features(X, "X", layout="(num_samples, dim)", min_rows=1)

    # -- public API ----------------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any, class_descriptions: Any, class_ids: Any = None
    ) -> ZeroShotClassifier:
        """Fit on images of seen classes.

        Args:
            X: (N, D) features of training images (seen classes only).
            y: (N,) class id of each image; every id must have a row in the table.
            class_descriptions: (C, A) one description row per class (seen, and optionally
                unseen), or a :class:`~pyxfer.zeroshot.descriptions.ClassDescriptions`.
            class_ids: (C,) the class id of each row; default ``0..C-1``.

        Returns:
            self
        """
        X = self._check_X(X)
        y = check_class_ids(y, X.shape[0], "y")
        S, ids = check_class_table(class_descriptions, class_ids)
        seen = np.unique(y)
        if seen.size < 2:
            raise ValueError(f"y: expected images of at least 2 classes, received {seen.tolist()}")
        rows_for(ids, seen)  # every labelled class must be described
        self._select_hyperparameters(X, y, S, ids)
        self._fit(X, y, S, ids)
        self.classes_ = ids
        self.class_descriptions_ = S
        self.seen_classes_ = seen
        self.num_attributes_ = S.shape[1]
        return self

    def decision_function(
        self, X: Any, class_descriptions: Any = None, class_ids: Any = None
    ) -> np.ndarray:
        """Compatibility scores (N, C) of each image with each class of the table.

        Args:
            X: (N, D) features.
            class_descriptions: (C, A) the classes to score; default the table given to ``fit``.
                Any classes may be given here (unseen ones included): no retraining is needed.
            class_ids: (C,) ids of those rows (default ``0..C-1``, or the fit table's ids).

        Returns:
            (N, C) scores; higher means more compatible. Columns follow the table's rows.
        """
        S, _ = self._table(class_descriptions, class_ids)
        return self._scores(self._check_X(X), S)

    def predict(self, X: Any, class_descriptions: Any = None, class_ids: Any = None) -> np.ndarray:
        """Class id (N,) of the highest-scoring class for each image (see decision_function)."""
        _, ids = self._table(class_descriptions, class_ids)
        scores = self.decision_function(X, class_descriptions, class_ids)
        return ids[np.argmax(scores, axis=1)]

    def _table(self, class_descriptions: Any, class_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "classes_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        if class_descriptions is None:
            if class_ids is None:
                return self.class_descriptions_, self.classes_
            rows = rows_for(self.classes_, np.asarray(class_ids).ravel(), "class_ids")
            return self.class_descriptions_[rows], self.classes_[rows]
        return check_class_table(class_descriptions, class_ids, num_attributes=self.num_attributes_)

    # -- hyper-parameters on validation classes -------------------------------------------------
    def _select_hyperparameters(
        self, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray
    ) -> None:
        overrides = getattr(self, "param_grid", None) or {}
        unknown = set(overrides) - set(self._HYPER)
        if unknown:
            raise ValueError(
                f"param_grid: unknown hyper-parameter(s) {sorted(unknown)}; "
                f"expected some of {sorted(self._HYPER)}"
            )
        grid: dict[str, list[Any]] = {}
        for name, default in self._HYPER.items():
            value = getattr(self, name)
            if value is None:
                grid[name] = list(overrides.get(name, default))
            else:
                setattr(self, f"{name}_", value)
        self.cv_results_: list[dict[str, Any]] = []
        if not grid:
            return
        best = select_on_validation_classes(
            self,
            grid,
            X,
            y,
            S,
            ids,
            n_splits=getattr(self, "n_splits", 3),
            seed=getattr(self, "seed", 0),
            results=self.cv_results_,
        )
        for k, v in best.items():
            setattr(self, f"{k}_", v)

    def _clone_with(self, **params: Any) -> Self:
        """A shallow copy with resolved hyper-parameters ``name_`` set (for validation fits)."""
        clone = copy.copy(self)
        for k, v in params.items():
            setattr(clone, f"{k}_", v)
        return clone

    def _fit_grid(
        self,
        combos: list[dict[str, Any]],
        X: np.ndarray,
        y: np.ndarray,
        S: np.ndarray,
        ids: np.ndarray,
    ) -> Iterator[ZeroShotClassifier]:
        """One fitted copy per hyper-parameter combination (subclasses may share work)."""
        for params in combos:
            clone = self._clone_with(**params)
            clone._fit(X, y, S, ids)
            yield clone


def select_on_validation_classes(
    model: ZeroShotClassifier,
    grid: dict[str, list[Any]],
    X: np.ndarray,
    y: np.ndarray,
    S: np.ndarray,
    ids: np.ndarray,
    *,
    n_splits: int = 3,
    seed: int = 0,
    results: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Grid search where validation happens on *classes* held out of the seen ones.

    For each fold, the seen classes are split into fitting classes and validation classes; a
    model is fitted on images of the fitting classes only and scored by per-class mean top-1
    over the validation classes' images, predicting among the validation classes (zero-shot).
    The unseen classes are never touched. Returns the combination with the best mean accuracy
    over the folds (the first one listed among ties).
    """
    names = list(grid)
    combos = [dict(zip(names, v, strict=True)) for v in product(*(grid[n] for n in names))]
    folds = class_folds(np.unique(y), n_splits, seed)
    accs = np.zeros((len(combos), len(folds)))
    for f, val in enumerate(folds):
        fit_mask = ~np.isin(y, val)
        rows = rows_for(ids, val)
        fitted = model._fit_grid(combos, X[fit_mask], y[fit_mask], S, ids)
        for i, clone in enumerate(fitted):
            scores = clone._scores(X[~fit_mask], S[rows])
            pred = ids[rows][np.argmax(scores, axis=1)]
            accs[i, f] = mean_per_class_accuracy(y[~fit_mask], pred)
    mean = accs.mean(axis=1)
    if results is not None:
        results.extend({**p, "val_accuracy": float(a)} for p, a in zip(combos, mean, strict=True))
    return combos[int(np.argmax(mean))]
