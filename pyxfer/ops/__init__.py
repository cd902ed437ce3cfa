"""Public wrappers over the compiled kernels in ``pyxfer._C``, one module per op stem.

Each wrapper takes numpy arrays or torch tensors and returns the same kind (zero-copy on CPU;
CUDA tensors pass device pointers and the current stream).
"""

from __future__ import annotations

from pyxfer.ops import augment
from pyxfer.ops.knn import knn_classify
from pyxfer.ops.normalize import normalize
from pyxfer.ops.pool import pool_normalize
from pyxfer.ops.preprocess import preprocess
from pyxfer.ops.topk import cosine_topk

__all__ = ["augment", "cosine_topk", "knn_classify", "normalize", "pool_normalize", "preprocess"]
