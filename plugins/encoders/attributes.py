"""Attribute-table class encoder: description rows -> normalised class embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np


class AttributeEncoder:
    """Turn attribute rows (C, A) into class embeddings (C, A).

    Args:
        normalize: ``"l2"`` scales each row to unit norm (zero rows stay zero), ``None`` keeps
            the values.
        center: subtract the mean row first (removes attributes shared by every class from the
            cosine geometry); the mean is that of the table being encoded.

    Examples:
        >>> import numpy as np
        >>> AttributeEncoder().encode(np.array([[3.0, 4.0], [0.0, 2.0]])).tolist()
        [[0.6, 0.8], [0.0, 1.0]]
    """

    def __init__(self, normalize: str | None = "l2", center: bool = False) -> None:
        if normalize not in ("l2", None):
            raise ValueError(f"normalize: expected 'l2' or None, received {normalize!r}")
        self.normalize = normalize
        self.center = center

    def encode(self, descriptions: Any) -> np.ndarray:
        """Class embeddings (C, A) from a (C, A) table or a ``ClassDescriptions``."""
        matrix = getattr(descriptions, "matrix", descriptions)
        S = np.asarray(matrix)
        if S.ndim != 2 or S.size == 0:
            raise ValueError(
                f"descriptions: expected a non-empty (classes, attributes) table, "
                f"received shape {S.shape}"
            )
        if not np.issubdtype(S.dtype, np.number):
            raise ValueError(f"descriptions: expected numbers, received dtype {S.dtype}")
        S = S.astype(np.float64)
        if not np.isfinite(S).all():
            raise ValueError("descriptions: expected finite values, received NaN/inf")
        if self.center:
            S = S - S.mean(axis=0, keepdims=True)
        if self.normalize == "l2":
            S = S / np.maximum(np.linalg.norm(S, axis=1, keepdims=True), 1e-12)
        return S
