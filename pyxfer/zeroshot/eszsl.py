"""ESZSL: embarrassingly simple zero-shot learning (Romera-Paredes & Torr, ICML 2015).

The paper writes features as columns, X (d, m), labels Y (m, z) in {-1, 1}, and class
signatures as columns, S (a, z), and learns V (d, a) minimising

    ||X^T V S - Y||^2 + gamma ||V S||^2 + lambda ||X^T V||^2 + gamma * lambda ||V||^2

whose normal equations (X X^T + gamma I) V (S S^T + lambda I) = X Y S^T give the closed form
(their Eq. 5)

    V = (X X^T + gamma I)^-1  X Y S^T  (S S^T + lambda I)^-1.

This module keeps scikit-learn's row layout instead: X (N, D) has one image per row and the
class table S (C, A) one class per row, so the same solution reads

    V = (X^T X + gamma I)^-1  X^T Y S  (S^T S + lambda I)^-1,    V: (D, A)

and an image scores ``x^T V s_c`` against class c. Unseen classes only need their row s_c.

By default the features are centred (the training mean is subtracted, here and at predict
time). With centred features the constant part of the {-1, 1} targets cannot be fitted, so it
no longer biases the scores towards classes with large description rows; without centring,
raw all-positive features and attributes make that bias dominate (on synthetic problems it
costs up to half of the zero-shot accuracy). ``center=False`` gives the paper's solution on
the raw features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from pyxfer.zeroshot._base import ZeroShotClassifier, rows_for

#: Default grid for both regularisers: 10^b, b = -3..3 (the range searched in the paper).
DEFAULT_GRID: tuple[float, ...] = tuple(10.0**b for b in range(-3, 4))


def eszsl_solve(
    X: np.ndarray, Y: np.ndarray, S: np.ndarray, gamma: float, lam: float
) -> np.ndarray:
    """Closed-form ESZSL weights.

    Args:
        X: (N, D) features, one image per row.
        Y: (N, Z) targets, +1 for the image's class and -1 elsewhere.
        S: (Z, A) class descriptions of the Z training classes, one per row.
        gamma: regulariser on the feature side (> 0).
        lam: regulariser on the description side (> 0).

    Returns:
        V (D, A) with scores ``X @ V @ S.T``.
    """
    d, a = X.shape[1], S.shape[1]
    left = X.T @ X + gamma * np.eye(d)  # (D, D)
    right = S.T @ S + lam * np.eye(a)  # (A, A)
    middle = X.T @ Y @ S  # (D, A)
    tmp = np.linalg.solve(left, middle)  # (D, A) = left^-1 middle
    return np.linalg.solve(right.T, tmp.T).T  # tmp @ right^-1 (right is symmetric)


class ESZSL(ZeroShotClassifier):
    """Embarrassingly simple zero-shot learning, closed form.

    Args:
        gamma: feature-side regulariser; None chooses it on validation classes.
        lam: description-side regulariser (the paper's lambda); None chooses it likewise.
        param_grid: candidates for the searched regularisers, e.g.
            ``{"gamma": [0.1, 1, 10]}``; default :data:`DEFAULT_GRID` (10^-3 .. 10^3) for both.
        center: subtract the training mean from features (see the module docstring).
        n_splits: number of class folds for the search (validation classes are split off the
            seen classes; unseen classes are never used).
        seed: seed of the class folds.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> S = rng.normal(size=(10, 4)); A = rng.normal(size=(4, 8))
        >>> y = np.repeat(np.arange(8), 20); X = S[y] @ A + 0.01 * rng.normal(size=(160, 8))
        >>> model = ESZSL(gamma=1.0, lam=1.0).fit(X, y, S)  # rows 8 and 9 are unseen
        >>> model.predict(S[8:] @ A, S[8:], class_ids=[8, 9]).tolist()
        [8, 9]
    """

    _HYPER: ClassVar[dict[str, tuple[Any, ...]]] = {"gamma": DEFAULT_GRID, "lam": DEFAULT_GRID}
    # resolved hyper-parameters and the fitted solution (set by fit)
    gamma_: float
    lam_: float
    mean_: np.ndarray
    V_: np.ndarray

    def __init__(
        self,
        gamma: float | None = None,
        lam: float | None = None,
        *,
        param_grid: dict[str, Sequence[float]] | None = None,
        center: bool = True,
        n_splits: int = 3,
        seed: int = 0,
    ) -> None:
        for name, value in (("gamma", gamma), ("lam", lam)):
            if value is not None and not value > 0:
                raise ValueError(f"{name}: expected a positive number or None, received {value}")
        self.gamma = gamma
        self.lam = lam
        self.param_grid = param_grid
        self.center = center
        self.n_splits = n_splits
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray) -> None:
        train = np.unique(y)
        St = S[rows_for(ids, train)]  # (Z, A)
        Y = np.where(y[:, None] == train[None, :], 1.0, -1.0)  # (N, Z)
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1])
        self.V_ = eszsl_solve(X - self.mean_, Y, St, self.gamma_, self.lam_)

    def _fit_grid(
        self,
        combos: list[dict[str, Any]],
        X: np.ndarray,
        y: np.ndarray,
        S: np.ndarray,
        ids: np.ndarray,
    ) -> Iterator[ESZSL]:
        """All (gamma, lam) of a grid from one eigendecomposition of X^T X and of S^T S.

        With X^T X = Qx diag(ex) Qx^T and S^T S = Qs diag(es) Qs^T,
        V = Qx [(Qx^T X^T Y S Qs) / ((ex + gamma)(es + lam))] Qs^T (element-wise division).
        """
        train = np.unique(y)
        St = S[rows_for(ids, train)]  # (Z, A)
        Y = np.where(y[:, None] == train[None, :], 1.0, -1.0)  # (N, Z)
        mean = X.mean(axis=0) if self.center else np.zeros(X.shape[1])
        Xc = X - mean
        ex, Qx = np.linalg.eigh(Xc.T @ Xc)  # (D,), (D, D)
        es, Qs = np.linalg.eigh(St.T @ St)  # (A,), (A, A)
        M = Qx.T @ (Xc.T @ Y @ St) @ Qs  # (D, A)
        for params in combos:
            clone = self._clone_with(**params)
            scale = (ex[:, None] + clone.gamma_) * (es[None, :] + clone.lam_)
            clone.mean_ = mean
            clone.V_ = Qx @ (M / scale) @ Qs.T
            yield clone

    def _scores(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.V_ @ S.T  # (N, C)

    def get_params(self) -> dict[str, Any]:
        return {
            "gamma": self.gamma,
            "lam": self.lam,
            "param_grid": self.param_grid,
            "center": self.center,
            "n_splits": self.n_splits,
            "seed": self.seed,
        }
