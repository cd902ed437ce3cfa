"""Type stubs of ``pyxfer._C``, the compiled kernels (C++17, optional CUDA).

Use the wrappers in :mod:`pyxfer.ops` (numpy or torch in, the same kind out); these bindings
take numpy arrays (or raw device pointers for the ``*_cuda`` variants) and validate everything.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import numpy
import numpy.typing

__all__: list[str] = [
    "AUGMENT_PARAM_COUNT",
    "augment_apply",
    "augment_apply_cuda",
    "augment_sample",
    "build_info",
    "cosine_topk",
    "cosine_topk_cuda",
    "half_bits",
    "hardware_threads",
    "knn_classify",
    "knn_classify_cuda",
    "normalize",
    "normalize_cuda",
    "philox4x32_10",
    "pool_normalize",
    "pool_normalize_cuda",
    "preprocess",
    "preprocess_cuda",
    "simd_best",
    "simd_paths",
]

def augment_apply(
    images: typing.Any,
    params: numpy.ndarray,
    out: numpy.ndarray,
    views: int,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
    quantize: bool = True,
    threads: int = 0,
) -> None:
    """
    Apply parameter rows to uint8 images (dense (N, H, W, C) or a list of (H, W, C)), writing
    float32/float16 views into `out`.
    """

def augment_apply_cuda(
    ptrs: Sequence[int],
    heights: Sequence[int],
    widths: Sequence[int],
    channels: int,
    params: numpy.ndarray,
    out: int,
    views: int,
    out_h: int,
    out_w: int,
    mean: Sequence[float],
    std: Sequence[float],
    half: bool,
    channels_last: bool,
    quantize: bool,
    stream: int,
) -> None:
    """
    CUDA variant of augment_apply on raw device pointers (used by pyxfer.ops.augment).
    """

def augment_sample(
    configs: list[dict[str, float]],
    heights: numpy.ndarray,
    widths: numpy.ndarray,
    indices: numpy.ndarray,
    seed: int,
    epoch: int,
    threads: int = 0,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Sample float32 (N * V, P) view parameters; row n * V + v is view v of image n.
    """

def build_info() -> dict[str, typing.Any]:
    """
    What was compiled in: version, compiler, SIMD level, threading, CUDA (compiled / devices).
    """

def cosine_topk(
    queries: numpy.ndarray,
    bank: numpy.ndarray,
    k: int,
    block: int = 0,
    simd: str = "auto",
    threads: int = 0,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    queries float32 (M, D), bank float32/float16 (N, D) -> (values float32 (M, k), indices int64 (M,
    k)): the k largest inner products per query, sorted descending, ties to the lower index.
    Blocked; never forms the M x N matrix.
    """

def cosine_topk_cuda(
    queries: int,
    bank: int,
    values: int,
    indices: int,
    m: int,
    n: int,
    d: int,
    k: int,
    half: bool,
    stream: int,
) -> None:
    """
    CUDA variant of cosine_topk on raw device pointers (used by pyxfer.ops.topk).
    """

def half_bits(
    values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
) -> numpy.typing.NDArray[numpy.uint16]:
    """
    float32 values -> IEEE binary16 bit patterns (the kernels' float16 store).
    """

def hardware_threads() -> int:
    """
    Number of hardware threads.
    """

def _parallel_check(
    n: int, threads: int, grain: int = 1, fail_at: int = -1, nested: bool = False
) -> list[int]:
    """
    Test hook of the thread pool: [i * i (+ 28 from a nested parallel_for)] for i < n;
    raises RuntimeError from item fail_at.
    """

def knn_classify(
    queries: numpy.ndarray,
    bank: numpy.ndarray,
    bank_labels: numpy.ndarray,
    k: int,
    temperature: float,
    num_classes: int,
    block: int = 0,
    simd: str = "auto",
    threads: int = 0,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Weighted kNN vote fused with the blocked top-k: scores float32 (M, num_classes), score[c] = sum
    over the k nearest bank rows labelled c of exp(similarity / T).
    """

def knn_classify_cuda(
    queries: int,
    bank: int,
    bank_labels: int,
    scores: int,
    m: int,
    n: int,
    d: int,
    k: int,
    half: bool,
    num_classes: int,
    temperature: float,
    stream: int,
) -> None:
    """
    CUDA variant of knn_classify on raw device pointers.
    """

def normalize(
    images: numpy.ndarray,
    out: numpy.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
    threads: int = 0,
) -> None:
    """
    uint8 (N, H, W, C) -> out float32/float16 (N, C, H, W) or (N, H, W, C): (x / 255 - mean) / std.
    Writes into `out`.
    """

def normalize_cuda(
    src: int,
    dst: int,
    n: int,
    h: int,
    w: int,
    c: int,
    mean: Sequence[float],
    std: Sequence[float],
    half: bool,
    channels_last: bool,
    stream: int,
) -> None:
    """
    CUDA variant of normalize on raw device pointers (used by pyxfer.ops.normalize).
    """

def philox4x32_10(
    counters: numpy.ndarray, key0: int, key1: int
) -> numpy.typing.NDArray[numpy.uint32]:
    """
    Philox4x32-10 of each uint32 counter row (N, 4) under key (key0, key1) -> (N, 4).
    """

def pool_normalize(
    x: numpy.ndarray,
    mode: str = "avg",
    p: float = 3.0,
    eps: float = 1e-06,
    l2: bool = False,
    l2_eps: float = 1e-12,
    threads: int = 0,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    float32/float16 (N, C, H, W) -> float32 (N, C): average or GeM pooling over H, W, optionally
    L2-normalised rows.
    """

def pool_normalize_cuda(
    x: int,
    out: int,
    n: int,
    c: int,
    hw: int,
    half: bool,
    mode: str,
    p: float,
    eps: float,
    l2: bool,
    l2_eps: float,
    stream: int,
) -> None:
    """
    CUDA variant of pool_normalize on raw device pointers (used by pyxfer.ops.pool).
    """

def preprocess(
    images: typing.Any,
    out: numpy.ndarray,
    resize: int,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
    quantize: bool = True,
    threads: int = 0,
) -> None:
    """
    uint8 images (dense (N, H, W, C) or a list of (H, W, C)) -> resize shorter side to `resize` ->
    centre crop to out's size -> normalize, written into `out`.
    """

def preprocess_cuda(
    ptrs: Sequence[int],
    heights: Sequence[int],
    widths: Sequence[int],
    channels: int,
    out: int,
    resize: int,
    crop_h: int,
    crop_w: int,
    mean: Sequence[float],
    std: Sequence[float],
    half: bool,
    channels_last: bool,
    quantize: bool,
    stream: int,
) -> None:
    """
    CUDA variant of preprocess on raw device pointers (used by pyxfer.ops.preprocess).
    """

def simd_best() -> str:
    """
    The micro-kernel simd='auto' runs on this CPU.
    """

def simd_paths() -> list:
    """
    Inner-product micro-kernels usable on this CPU, e.g. ['scalar', 'avx2', 'avx512'].
    """

AUGMENT_PARAM_COUNT: int = 20
