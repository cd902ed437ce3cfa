"""Argument handling shared by the feature-kernel wrappers (pool, topk, knn)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyxfer._tensors import as_numpy, is_torch_tensor

_FLOAT_DTYPES = ("float32", "float16")


def is_cuda(x: Any) -> bool:
    """True for a torch tensor on a CUDA device."""
    return is_torch_tensor(x) and x.device.type == "cuda"


def features_numpy(x: Any, name: str) -> np.ndarray:
    """Zero-copy numpy view of a CPU array/tensor; dtypes numpy cannot hold raise ValueError."""
    if is_torch_tensor(x) and str(x.dtype).replace("torch.", "") not in (
        *_FLOAT_DTYPES,
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "float64",
        "bool",
    ):
        raise ValueError(f"{name}: expected float32 or float16, received {x.dtype}")
    return as_numpy(x, name)


def l2_normalize_rows(x: Any, eps: float = 1e-12) -> Any:
    """Rows divided by max(||row||, eps), in float32; numpy in -> numpy out, tensor -> tensor."""
    if is_torch_tensor(x):
        import torch

        x = x.float()
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps)
    arr = np.asarray(x, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64)).astype(np.float32)
    return arr / np.maximum(norm, eps)[:, None]


def check_cuda_features(x: Any, name: str, ndim: int, layout: str, allow_half: bool) -> Any:
    """Validate a CUDA feature tensor (dtype, rank, finite values) and return it contiguous."""
    import torch

    allowed = (torch.float32, torch.float16) if allow_half else (torch.float32,)
    if x.dtype not in allowed:
        want = "float32 or float16" if allow_half else "float32"
        raise ValueError(f"{name}: expected dtype {want}, received {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d tensor {layout}, received shape {tuple(x.shape)}"
        )
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, received NaN or inf")
    return x.contiguous()


def same_device(name: str, x: Any, device: Any) -> None:
    """Raise ValueError unless tensor `x` lives on `device`."""
    if not is_torch_tensor(x) or x.device != device:
        where = x.device if is_torch_tensor(x) else type(x).__name__
        raise ValueError(f"{name}: expected a tensor on {device}, received {where}")


def cuda_stream(device: Any) -> int:
    """Handle of the current CUDA stream on `device`."""
    import torch

    return torch.cuda.current_stream(device).cuda_stream


def check_topk_shapes(qd: int, n: int, d: int, k: int) -> None:
    """The (queries, bank, k) checks of the compiled bindings, for the CUDA path."""
    if qd != d:
        raise ValueError(
            f"bank: expected feature dimension D = {qd} (the queries' last axis), received {d}"
        )
    if d <= 0:
        raise ValueError(f"queries: expected feature dimension D > 0, received {d}")
    if n <= 0:
        raise ValueError("bank: expected at least one row, received an empty bank (N = 0)")
    if k <= 0:
        raise ValueError(f"k: expected k >= 1, received {k}")
    if k > n:
        raise ValueError(f"k: expected k <= N = {n} (bank rows), received {k}")


def check_same_cuda_device(queries: Any, bank: Any) -> None:
    """Raise ValueError unless queries and bank are tensors on the same CUDA device."""
    if is_cuda(queries):
        same_device("bank", bank, queries.device)
    else:
        same_device("queries", queries, bank.device)
