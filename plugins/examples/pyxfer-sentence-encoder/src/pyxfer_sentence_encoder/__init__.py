"""Class encoder plugin: sentences -> embeddings with a locally installed model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyxfer import hookimpl

__version__ = "0.1.0"


class SentenceEncoder:
    """Embed class names or descriptions with a local sentence-transformers model.

    Args:
        model: directory of a sentence-transformers model on this machine (default: the
            ``PYXFER_SENTENCE_MODEL`` environment variable).
        device: ``"cpu"`` or ``"cuda"``.

    Examples:
        >>> enc = SentenceEncoder("/models/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> enc.encode(["a handwritten seven", "a handwritten one"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(self, model: str | None = None, device: str = "cpu") -> None:
        path = model or os.environ.get("PYXFER_SENTENCE_MODEL")
        if not path:
            raise ValueError(
                "model: expected a local model directory (or PYXFER_SENTENCE_MODEL), received none"
            )
        if not Path(path).is_dir():
            raise ValueError(f"model: expected a local model directory, {path!r} does not exist")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                "the 'sentence' class encoder needs sentence-transformers "
                "(pip install 'pyxfer-sentence-encoder[model]')"
            ) from exc
        self._model = SentenceTransformer(path, device=device)

    def encode(self, descriptions: Sequence[str]) -> np.ndarray:
        """(C,) strings -> (C, dim) float32 L2-normalised embeddings."""
        texts = [str(d) for d in descriptions]
        if not texts:
            raise ValueError("descriptions: expected at least one class description")
        emb = self._model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(emb, np.float32)


@hookimpl
def pyxfer_register_class_encoders(register):
    register("sentence", SentenceEncoder, description="local sentence-embedding model (example)")
