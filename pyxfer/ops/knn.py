"""knn_classify: temperature-weighted kNN vote over a feature bank, fused with the top-k."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyxfer import _C
from pyxfer._tensors import as_numpy, is_torch_tensor
from pyxfer.ops._features import (
    check_cuda_features,
    check_same_cuda_device,
    check_topk_shapes,
    cuda_stream,
    features_numpy,
    is_cuda,
    l2_normalize_rows,
    same_device,
)
from pyxfer.ops.topk import SIMD_PATHS, resolve_simd


def knn_classify(
    queries: Any,
    bank: Any,
    bank_labels: Any,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    normalize: bool = False,
    return_predictions: bool = False,
    block: int = 0,
    simd: str = "auto",
    threads: int = 0,
) -> Any:
    """Weighted k-nearest-neighbour classification, the self-supervised evaluation protocol.

    Each of the k most similar bank rows votes for its label with weight
    ``exp(similarity / temperature)``; a class's score is the sum of its votes (Wu et al. 2018,
    InstDisc; Caron et al. 2021, DINO: k = 20 or 200, temperature = 0.07). The neighbour search is
    the blocked top-k of :func:`pyxfer.ops.cosine_topk` (same neighbours, same tie-breaking), fused
    with the vote, so memory stays O(M * num_classes + block).

    Args:
        queries: float32 (M, D) features to classify.
        bank: float32 or float16 (N, D) features of the labelled set.
        bank_labels: integer (N,) labels in [0, num_classes).
        k: neighbours per query, 1 <= k <= N.
        temperature: softmax temperature T > 0 of the vote weights.
        num_classes: number of classes (default: ``max(bank_labels) + 1``).
        normalize: L2-normalise queries and bank first (cosine similarity); otherwise they are
            assumed normalised by the caller.
        return_predictions: also return the arg-max class per query (ties to the lower class).
        block: bank rows per block (0 = automatic). Never changes the result.
        simd: CPU micro-kernel (see :func:`pyxfer.ops.cosine_topk`).
        threads: CPU threads (0 = all cores). Results do not depend on it.

    Returns:
        float32 scores (M, num_classes), or ``(scores, predictions int64 (M,))`` with
        ``return_predictions``; same kind and device as ``queries``.

    Examples:
        >>> import numpy as np
        >>> bank = np.eye(4, dtype=np.float32)
        >>> knn_classify(bank, bank, np.array([0, 0, 1, 1]), k=1, return_predictions=True)[1]
        array([0, 0, 1, 1])
    """
    simd = resolve_simd(simd)
    if simd not in SIMD_PATHS:
        raise ValueError(f"simd: expected one of {SIMD_PATHS}, received {simd!r}")
    if normalize:
        queries, bank = l2_normalize_rows(queries), l2_normalize_rows(bank)
    if is_cuda(queries) or is_cuda(bank):
        scores = _knn_cuda(queries, bank, bank_labels, int(k), float(temperature), num_classes)
    else:
        q = features_numpy(queries, "queries")
        b = features_numpy(bank, "bank")
        labels = _labels_numpy(bank_labels)
        if num_classes is None:
            num_classes = max(int(labels.max()) + 1, 1) if labels.size else 1
        scores = _C.knn_classify(
            q, b, labels, int(k), float(temperature), int(num_classes), int(block), simd, threads
        )
        if is_torch_tensor(queries):
            import torch

            scores = torch.from_numpy(scores)
    if not return_predictions:
        return scores
    return scores, scores.argmax(1)


def _labels_numpy(labels: Any) -> np.ndarray:
    arr = as_numpy(labels, "bank_labels")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"bank_labels: expected an integer array, received dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _knn_cuda(
    queries: Any, bank: Any, labels: Any, k: int, temperature: float, num_classes: int | None
) -> Any:
    import torch

    check_same_cuda_device(queries, bank)
    same_device("bank_labels", labels, queries.device)
    q = check_cuda_features(queries, "queries", 2, "(M, D)", False)
    b = check_cuda_features(bank, "bank", 2, "(N, D)", True)
    m, d = q.shape
    n = b.shape[0]
    check_topk_shapes(d, n, b.shape[1], k)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"bank_labels: expected an integer tensor, received {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise ValueError(
            f"bank_labels: expected one label per bank row ({n},), received {tuple(labels.shape)}"
        )
    # a copy owned by this call: the range check below holds for what the kernel indexes with,
    # whatever another thread or stream does to the caller's tensor afterwards
    labels = labels.to(torch.int64, copy=True).contiguous()
    lo, hi = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = max(hi + 1, 1)
    if num_classes <= 0:
        raise ValueError(f"num_classes: expected num_classes >= 1, received {num_classes}")
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"bank_labels: expected labels in [0, num_classes = {num_classes}), "
            f"received values in [{lo}, {hi}]"
        )
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: expected a finite value > 0, received {temperature}")
    scores = torch.empty((m, num_classes), dtype=torch.float32, device=q.device)
    if m == 0:
        return scores
    with torch.cuda.device(q.device):
        _C.knn_classify_cuda(
            q.data_ptr(),
            b.data_ptr(),
            labels.data_ptr(),
            scores.data_ptr(),
            m,
            n,
            d,
            k,
            b.dtype == torch.float16,
            int(num_classes),
            temperature,
            cuda_stream(q.device),
        )
    return scores
