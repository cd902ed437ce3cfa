"""Public wrappers over the compiled kernels in ``pyxfer._C``, one module per op stem.

Each wrapper takes numpy arrays or torch tensors and returns the same kind (zero-copy on CPU;
CUDA tensors pass device pointers and the current stream).
"""

from __future__ import annotations

from pyxfer.ops import augment
from pyxfer.ops.normalize import normalize
from pyxfer.ops.preprocess import preprocess

__all__ = ["augment", "normalize", "preprocess"]
