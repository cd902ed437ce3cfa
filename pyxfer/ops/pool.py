"""pool_normalize: feature maps (N, C, H, W) -> pooled, optionally L2-normalised (N, C)."""

from __future__ import annotations

from typing import Any

from pyxfer import _C
from pyxfer._tensors import is_torch_tensor
from pyxfer.ops._features import check_cuda_features, cuda_stream, features_numpy, is_cuda


def pool_normalize(
    x: Any,
    mode: str = "avg",
    *,
    p: float = 3.0,
    eps: float = 1e-6,
    l2: bool = False,
    l2_eps: float = 1e-12,
    threads: int = 0,
) -> Any:
    """Global average or GeM pooling of feature maps, optionally L2-normalised, in one pass.

    GeM (Radenovic et al., TPAMI 2018) is ``mean(clamp(x, eps) ** p) ** (1 / p)`` over H, W;
    ``p = 1`` is average pooling of the clamped map and large ``p`` approaches max pooling.

    Args:
        x: float32 or float16 feature maps, shape (N, C, H, W) (numpy, CPU or CUDA tensor).
        mode: ``"avg"`` or ``"gem"``.
        p: GeM exponent (> 0); ignored for ``"avg"``.
        eps: GeM clamp floor (> 0).
        l2: divide each output row by ``max(||row||_2, l2_eps)``.
        l2_eps: norm floor of the L2 normalisation.
        threads: CPU threads (0 = all cores). Results do not depend on it.

    Returns:
        float32 (N, C), the same kind as ``x`` (numpy array or tensor on the same device).

    Examples:
        >>> import numpy as np
        >>> pool_normalize(np.ones((2, 8, 7, 7), np.float32), "gem", l2=True).shape
        (2, 8)
    """
    if is_cuda(x):
        return _pool_cuda(x, mode, p, eps, l2, l2_eps)
    arr = features_numpy(x, "x")
    out = _C.pool_normalize(arr, mode, float(p), float(eps), bool(l2), float(l2_eps), threads)
    if is_torch_tensor(x):
        import torch

        return torch.from_numpy(out)
    return out


def _pool_cuda(x: Any, mode: str, p: float, eps: float, l2: bool, l2_eps: float) -> Any:
    import torch

    x = check_cuda_features(x, "x", 4, "(N, C, H, W)", True)
    n, c, h, w = x.shape
    if h * w == 0:
        raise ValueError(f"x: expected H * W > 0, received shape {tuple(x.shape)}")
    out = torch.empty((n, c), dtype=torch.float32, device=x.device)
    if n * c == 0:
        return out
    with torch.cuda.device(x.device):
        _C.pool_normalize_cuda(
            x.data_ptr(),
            out.data_ptr(),
            n,
            c,
            h * w,
            x.dtype == torch.float16,
            mode,
            float(p),
            float(eps),
            bool(l2),
            float(l2_eps),
            cuda_stream(x.device),
        )
    return out
