"""Hashed text class encoder: class names or sentences -> vectors, with nothing to download.

Each text is lower-cased and split into words; every word and every character n-gram of the
padded words (``" two "`` -> ``" tw"``, ``"two"``, ``"wo "`` for n = 3) is hashed (BLAKE2b, so
the result is the same in every process and on every machine) to a signed bucket of a
``dim``-sized vector; the counts are log-scaled and the vector L2-normalised.

It captures **lexical overlap only**: texts that share words or word pieces get similar
vectors, synonyms and paraphrases do not. It is a dependency-free baseline; for meaning, plug in
a sentence-embedding model as another class encoder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


def _bucket(token: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


class HashedTextEncoder:
    """Hashed bag of words + character n-grams, L2-normalised, deterministic.

    Args:
        dim: embedding size (number of hash buckets).
        ngram_range: (min, max) character n-gram lengths; ``(0, 0)`` turns n-grams off.
        word_weight: weight of whole-word features relative to n-grams.

    Examples:
        >>> enc = HashedTextEncoder(dim=256)
        >>> E = enc.encode(["a closed loop", "two closed loops", "a straight bar"])
        >>> E.shape, bool(E[0] @ E[1] > E[0] @ E[2])
        ((3, 256), True)
    """

    def __init__(
        self, dim: int = 1024, ngram_range: tuple[int, int] = (3, 5), word_weight: float = 1.0
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim: expected a positive integer, received {dim}")
        lo, hi = ngram_range
        if lo < 0 or hi < lo:
            raise ValueError(f"ngram_range: expected 0 <= min <= max, received {ngram_range}")
        self.dim = dim
        self.ngram_range = (lo, hi)
        self.word_weight = word_weight

    def _features(self, text: str) -> dict[str, float]:
        feats: dict[str, float] = {}
        lo, hi = self.ngram_range
        for word in _WORD.findall(text.lower()):
            key = "w:" + word
            feats[key] = feats.get(key, 0.0) + self.word_weight
            if hi == 0:
                continue
            padded = f" {word} "
            for n in range(max(lo, 1), hi + 1):
                for i in range(len(padded) - n + 1):
                    key = "c:" + padded[i : i + n]
                    feats[key] = feats.get(key, 0.0) + 1.0
        return feats

    def encode(self, descriptions: Sequence[str]) -> np.ndarray:
        """Embeddings (C, dim) of C texts (class names or sentences)."""
        if isinstance(descriptions, str):
            raise ValueError(
                "descriptions: expected a sequence of texts (one per class), "
                "received a single string"
            )
        texts = list(getattr(descriptions, "names", descriptions))
        if not texts:
            raise ValueError("descriptions: expected at least one text, received none")
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"descriptions: expected texts, item {row} is {type(text).__name__}"
                )
            for token, count in self._features(text).items():
                j, sign = _bucket(token, self.dim)
                out[row, j] += sign * np.log1p(count)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
