"""Nearest prototype in a shared embedding space (cosine similarity).

For class encoders that embed class names or sentences (or attribute rows), each class is a
prototype vector; an image is assigned the class whose prototype is most cosine-similar to its
embedding. When image features and class embeddings do not live in the same space, a linear
map from features to the class-embedding space is learned by ridge regression on the seen
classes (regress each image's feature onto its class's unit-norm embedding), the "linear
mapping" baseline of the zero-shot literature (e.g. Frome et al. 2013 with a ridge loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from pyxfer.zeroshot._base import ZeroShotClassifier, rows_for

#: ridge strengths searched on validation classes when ``alpha`` is None
DEFAULT_ALPHAS: tuple[float, ...] = tuple(10.0**b for b in range(-2, 5))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_similarity(queries: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Cosine similarity (N, C) between query rows (N, D) and bank rows (C, D)."""
    return (
        l2_normalize(np.asarray(queries, np.float64)) @ l2_normalize(np.asarray(bank, np.float64)).T
    )


def cosine_topk(queries: np.ndarray, bank: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each query in ``bank``.

    This is the one place nearest-prototype scoring goes through; it is written in numpy here
    and is meant to dispatch to the blocked C++ kernel ``pyxfer.ops.cosine_topk`` (which never
    materialises the full similarity matrix) for large banks.

    Args:
        queries: (N, D).
        bank: (C, D).
        k: neighbours per query (1 <= k <= C).

    Returns:
        ``(values, indices)``, each (N, k), sorted by decreasing similarity (ties: lower index).
    """
    bank = np.asarray(bank)
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k: expected 1 <= k <= {bank.shape[0]}, received {k}")
    sim = cosine_similarity(queries, bank)  # (N, C)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, axis=1), idx


class PrototypeZSL(ZeroShotClassifier):
    """Nearest class prototype by cosine, optionally after a learned ridge map.

    Args:
        mapping: ``"ridge"`` learns W (D, E) from standardised features to the class-embedding
            space; ``None`` compares features with class embeddings directly (they must have the
            same dimension, e.g. a joint image-text model).
        alpha: ridge strength; None chooses it on validation classes from ``param_grid`` or
            :data:`DEFAULT_ALPHAS`.
        param_grid: e.g. ``{"alpha": [1, 10, 100]}``.
        n_splits, seed: class folds of the search.

    Examples:
        >>> import numpy as np
        >>> E = np.eye(4)
        >>> model = PrototypeZSL(mapping=None).fit(np.eye(4)[:2], [0, 1], E)
        >>> model.predict(np.array([[0.1, 0.0, 0.9, 0.2]])).tolist()
        [2]
    """

    _HYPER: ClassVar[dict[str, tuple[Any, ...]]] = {"alpha": DEFAULT_ALPHAS}
    alpha_: float  # the resolved ridge strength (set by fit)

    def __init__(
        self,
        mapping: str | None = "ridge",
        alpha: float | None = None,
        *,
        param_grid: dict[str, Sequence[float]] | None = None,
        n_splits: int = 3,
        seed: int = 0,
    ) -> None:
        if mapping not in ("ridge", None):
            raise ValueError(f"mapping: expected 'ridge' or None, received {mapping!r}")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha: expected a positive number or None, received {alpha}")
        self.mapping = mapping
        self.alpha = alpha if mapping == "ridge" or alpha is not None else 1.0
        self.param_grid = param_grid
        self.n_splits = n_splits
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray) -> None:
        if self.mapping is None:
            if X.shape[1] != S.shape[1]:
                raise ValueError(
                    f"X: mapping=None compares features with class embeddings directly, so "
                    f"expected dim {S.shape[1]} like class_descriptions, received {X.shape[1]}"
                )
            return
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-8
        Z = (X - self.mean_) / self.scale_  # (N, D)
        T = l2_normalize(S)[rows_for(ids, y)]  # (N, E) target embedding of each image
        d = Z.shape[1]
        self.W_ = np.linalg.solve(Z.T @ Z + self.alpha_ * np.eye(d), Z.T @ T)  # (D, E)

    def embed(self, X: Any) -> np.ndarray:
        """Images mapped into the class-embedding space (N, E)."""
        X = self._check_X(X)
        if self.mapping is None:
            return X
        return ((X - self.mean_) / self.scale_) @ self.W_

    def _scores(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return cosine_similarity(self.embed(X), S)

    def predict(self, X: Any, class_descriptions: Any = None, class_ids: Any = None) -> np.ndarray:
        """Class id (N,) of the nearest prototype (via :func:`cosine_topk`)."""
        S, ids = self._table(class_descriptions, class_ids)
        _, idx = cosine_topk(self.embed(X), S, k=1)
        return ids[idx[:, 0]]
