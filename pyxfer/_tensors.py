"""Helpers shared by the op wrappers: accept numpy arrays or torch tensors, return the same kind."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch when it is not already loaded."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def as_numpy(x: Any, name: str) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor or array (C-contiguous copy only if needed)."""
    if is_torch_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor here, received device {x.device}")
        x = x.detach()
        if not x.is_contiguous():
            x = x.contiguous()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    raise ValueError(
        f"{name}: expected a numpy.ndarray or torch.Tensor, received {type(x).__name__}"
    )
