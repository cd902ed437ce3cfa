"""Generalised zero-shot learning by calibrated stacking (Chao et al., ECCV 2016).

A zero-shot model scores seen classes higher than unseen ones (it was trained on them), so when
predicting over all classes nearly everything lands on a seen class. Calibrated stacking
subtracts a constant ``gamma`` from every seen-class score. ``gamma`` is chosen without touching
the unseen classes: some seen classes are set aside as validation "unseen" classes, a copy of
the model (same hyper-parameters) is fitted on the other seen classes with part of their images
held out, and the ``gamma`` maximising the harmonic mean H of seen / validation-unseen accuracy
on the held-out images is kept: the ``gamma`` with the best mean H over the class folds, taken
in the middle of the range of equally good values.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pyxfer._checks import check_class_ids
from pyxfer.zeroshot._base import ZeroShotClassifier, class_folds, rows_for
from pyxfer.zeroshot.metrics import (
    SeenUnseenCurve,
    calibrated_stacking,
    harmonic_mean,
    seen_unseen_curve,
)

log = logging.getLogger("pyxfer.zeroshot")


def _holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask holding out ``fraction`` of each class's images (at least one each)."""
    mask = np.zeros(y.shape[0], dtype=bool)
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        if idx.size < 2:
            raise ValueError(
                f"y: class {int(c)} needs at least 2 images to hold one out for choosing gamma"
            )
        k = min(idx.size - 1, max(1, round(fraction * idx.size)))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


def choose_gamma(curves: list[SeenUnseenCurve]) -> tuple[float, float, list[tuple[float, float]]]:
    """The ``gamma`` maximising the mean harmonic mean over validation folds.

    Candidates lie between consecutive thresholds of all folds (plus one below and one above
    them all); among equally good candidates the middle one is taken.

    Returns:
        ``(gamma, mean_h, [(s, u) per fold at gamma])``.
    """
    t = np.unique(np.concatenate([c.gammas[1:] for c in curves]))
    spread = float(t[-1] - t[0]) if t.size > 1 else 1.0
    pad = max(spread, 1e-6)
    cand = np.concatenate([[t[0] - pad], (t[:-1] + t[1:]) / 2, [t[-1] + pad]])
    hs = np.zeros(cand.size)
    for c in curves:
        k = np.searchsorted(c.gammas, cand, side="right") - 1  # last threshold <= candidate
        hs += [harmonic_mean(c.unseen[i], c.seen[i]) for i in k]
    hs /= len(curves)
    best = np.flatnonzero(hs >= hs.max() - 1e-12)
    gamma = float(cand[best[best.size // 2]])
    per_fold = []
    for c in curves:
        i = int(np.searchsorted(c.gammas, gamma, side="right") - 1)
        per_fold.append((float(c.seen[i]), float(c.unseen[i])))
    return gamma, float(hs.max()), per_fold


class CalibratedStacking:
    """Wrap a zero-shot classifier for generalised zero-shot prediction.

    Args:
        model: an unfitted :class:`~pyxfer.zeroshot._base.ZeroShotClassifier` (ESZSL, DAP,
            BilinearZSL, PrototypeZSL, ...).
        gamma: the calibration constant; None chooses it on validation classes.
        n_splits: class folds for choosing gamma.
        holdout: fraction of each fitting class's images held out as "seen test" images.
        seed: seed of the folds and hold-out.

    Examples:
        >>> import numpy as np
        >>> from pyxfer.zeroshot import ESZSL
        >>> rng = np.random.default_rng(0)
        >>> S = rng.normal(size=(8, 6)); A = rng.normal(size=(6, 10))
        >>> y = np.repeat(np.arange(6), 25); X = S[y] @ A + 0.3 * rng.normal(size=(150, 10))
        >>> gz = CalibratedStacking(ESZSL(gamma=1.0, lam=1.0)).fit(X, y, S)
        >>> bool(np.isfinite(gz.gamma_))
        True
    """

    def __init__(
        self,
        model: ZeroShotClassifier,
        gamma: float | None = None,
        *,
        n_splits: int = 3,
        holdout: float = 0.2,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, ZeroShotClassifier):
            raise ValueError(
                "model: expected a zero-shot classifier from pyxfer.zeroshot, "
                f"received {type(model).__name__}"
            )
        if not 0 < holdout < 1:
            raise ValueError(f"holdout: expected a fraction in (0, 1), received {holdout}")
        self.model = model
        self.gamma = gamma
        self.n_splits = n_splits
        self.holdout = holdout
        self.seed = seed

    def fit(
        self, X: Any, y: Any, class_descriptions: Any, class_ids: Any = None
    ) -> CalibratedStacking:
        """Fit the model on the seen classes, then choose gamma (see the module docstring)."""
        self.model.fit(X, y, class_descriptions, class_ids)
        m = self.model
        if self.gamma is not None:
            self.gamma_ = float(self.gamma)
            return self
        X = m._check_X(X)
        y = check_class_ids(y, X.shape[0], "y")
        S, ids = m.class_descriptions_, m.classes_
        resolved = {k: getattr(m, f"{k}_") for k in m._HYPER}
        if hasattr(m, "epochs_"):
            resolved["epochs"] = m.epochs_
        rng = np.random.default_rng(self.seed)
        curves, self.fold_results_ = [], []
        for val in class_folds(m.seen_classes_, self.n_splits, self.seed, "gamma"):
            fit_classes = np.setdiff1d(m.seen_classes_, val)
            in_fit = np.isin(y, fit_classes)
            held = np.zeros_like(in_fit)
            held[in_fit] = _holdout(y[in_fit], self.holdout, rng)
            train = in_fit & ~held
            clone = m._clone_with(**resolved)
            clone._fit(X[np.nonzero(train)[0]], y[train], S, ids)
            test = held | ~in_fit
            rows = rows_for(ids, np.concatenate([fit_classes, val]))
            scores = clone._scores(X[np.nonzero(test)[0]], S[rows])
            curves.append(seen_unseen_curve(scores, y[test], ids[rows], fit_classes, val))
            self.fold_results_.append({"val_classes": val.tolist()})
        self.gamma_, mean_h, per_fold = choose_gamma(curves)
        for res, (s_acc, u_acc) in zip(self.fold_results_, per_fold, strict=True):
            res.update(s=s_acc, u=u_acc, h=harmonic_mean(u_acc, s_acc))
        log.info(
            "calibrated stacking: gamma %.4g (validation H %.3f, folds %s)",
            self.gamma_,
            mean_h,
            self.fold_results_,
        )
        return self

    def decision_function(
        self, X: Any, class_descriptions: Any = None, class_ids: Any = None
    ) -> np.ndarray:
        """Scores (N, C) with gamma subtracted from the seen classes (those fitted on)."""
        if not hasattr(self, "gamma_"):
            raise RuntimeError("CalibratedStacking is not fitted; call fit first")
        _, ids = self.model._table(class_descriptions, class_ids)
        scores = self.model.decision_function(X, class_descriptions, class_ids)
        return calibrated_stacking(scores, ids, self.model.seen_classes_, self.gamma_)

    def predict(self, X: Any, class_descriptions: Any = None, class_ids: Any = None) -> np.ndarray:
        """Class ids (N,) predicted over all classes of the table, seen and unseen."""
        _, ids = self.model._table(class_descriptions, class_ids)
        return ids[np.argmax(self.decision_function(X, class_descriptions, class_ids), axis=1)]
