"""cosine_topk: the k most similar bank rows per query, without the M x N similarity matrix."""

from __future__ import annotations

import os
from typing import Any

from pyxfer import _C
from pyxfer._tensors import is_torch_tensor
from pyxfer.ops._features import (
    check_cuda_features,
    check_same_cuda_device,
    check_topk_shapes,
    cuda_stream,
    features_numpy,
    is_cuda,
    l2_normalize_rows,
)

SIMD_PATHS = ("auto", "scalar", "avx2", "avx512")


def resolve_simd(simd: str) -> str:
    """``"auto"`` defers to the ``PYXFER_SIMD`` environment variable when it is set; as for the
    augmentation kernel, an empty value counts as unset and ``baseline`` means ``scalar``."""
    if simd != "auto":
        return simd
    env = os.environ.get("PYXFER_SIMD", "").strip()
    if not env:
        return "auto"
    return "scalar" if env == "baseline" else env


def cosine_topk(
    queries: Any,
    bank: Any,
    k: int,
    *,
    normalize: bool = False,
    block: int = 0,
    simd: str = "auto",
    threads: int = 0,
) -> tuple[Any, Any]:
    """Blocked inner-product top-k: for each query, the k bank rows with the largest similarity.

    The similarity is computed block by block by a cache-blocked micro-kernel (AVX-512, AVX2 or
    portable, picked at run time) and folded into a running top-k per query, so memory stays
    O(M * k + block) instead of the M x N matrix a plain ``queries @ bank.T`` would build.

    Args:
        queries: float32 (M, D).
        bank: float32 or float16 (N, D).
        k: neighbours per query, 1 <= k <= N.
        normalize: L2-normalise queries and bank rows first (then the score is the cosine
            similarity); otherwise they are assumed normalised by the caller.
        block: bank rows per block (0 = automatic). Never changes the result.
        simd: CPU micro-kernel, ``"auto"`` (best available), ``"scalar"``, ``"avx2"`` or
            ``"avx512"``; mainly for tests and benchmarks (see ``pyxfer._C.simd_paths()``).
            ``"auto"`` can be overridden process-wide with the ``PYXFER_SIMD`` environment
            variable (e.g. ``PYXFER_SIMD=scalar`` to run everything on the portable path).
        threads: CPU threads (0 = all cores). Results do not depend on it.

    Returns:
        ``(values, indices)``: float32 (M, k) sorted descending and int64 (M, k) bank rows;
        equal values are ordered by the lower index. Same kind and device as ``queries``.

    Examples:
        >>> import numpy as np
        >>> bank = np.eye(4, dtype=np.float32)
        >>> values, indices = cosine_topk(bank[:2], bank, k=1)
        >>> indices.ravel().tolist()
        [0, 1]
    """
    simd = resolve_simd(simd)
    if simd not in SIMD_PATHS:
        raise ValueError(f"simd: expected one of {SIMD_PATHS}, received {simd!r}")
    if normalize:
        queries, bank = l2_normalize_rows(queries), l2_normalize_rows(bank)
    if is_cuda(queries) or is_cuda(bank):
        return _topk_cuda(queries, bank, int(k))
    q = features_numpy(queries, "queries")
    b = features_numpy(bank, "bank")
    values, indices = _C.cosine_topk(q, b, int(k), int(block), simd, threads)
    if is_torch_tensor(queries):
        import torch

        return torch.from_numpy(values), torch.from_numpy(indices)
    return values, indices


def _topk_cuda(queries: Any, bank: Any, k: int) -> tuple[Any, Any]:
    import torch

    check_same_cuda_device(queries, bank)
    q = check_cuda_features(queries, "queries", 2, "(M, D)", False)
    b = check_cuda_features(bank, "bank", 2, "(N, D)", True)
    m, d = q.shape
    n = b.shape[0]
    check_topk_shapes(d, n, b.shape[1], k)
    values = torch.empty((m, k), dtype=torch.float32, device=q.device)
    indices = torch.empty((m, k), dtype=torch.int64, device=q.device)
    if m == 0:
        return values, indices
    with torch.cuda.device(q.device):
        _C.cosine_topk_cuda(
            q.data_ptr(),
            b.data_ptr(),
            values.data_ptr(),
            indices.data_ptr(),
            m,
            n,
            d,
            k,
            b.dtype == torch.float16,
            cuda_stream(q.device),
        )
    return values, indices
