"""normalize: uint8 images (N, H, W, C) -> normalised float (N, C, H, W)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyxfer import _C
from pyxfer._tensors import as_numpy, is_torch_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(
    images: Any,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    dtype: str = "float32",
    channels_last: bool = False,
    out: Any = None,
    threads: int = 0,
) -> Any:
    """Convert uint8 images to normalised floats in one pass: ``(x / 255 - mean) / std``.

    Args:
        images: uint8 array or tensor, shape (N, H, W, C) with C in {1, 3}; a single
            (H, W, C) image is accepted and returns (C, H, W).
        mean: per-channel mean in [0, 1] units, one value per channel.
        std: per-channel standard deviation, one non-zero value per channel.
        dtype: ``"float32"`` or ``"float16"`` output.
        channels_last: write (N, H, W, C) instead of (N, C, H, W).
        out: optional preallocated output of the right shape and dtype.
        threads: CPU threads (0 = all cores). Results do not depend on it.

    Returns:
        The same kind as ``images`` (numpy array or torch tensor, same device).

    Examples:
        >>> x = np.zeros((2, 32, 32, 3), np.uint8)
        >>> normalize(x).shape
        (2, 3, 32, 32)
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', received {dtype!r}")
    single = getattr(images, "ndim", None) == 3
    if single:
        images = images[None]
    if is_torch_tensor(images) and images.device.type == "cuda":
        result = _normalize_cuda(images, mean, std, dtype, channels_last, out)
    else:
        arr = as_numpy(images, "images")
        if arr.ndim != 4:
            raise ValueError(
                f"images: expected shape (N, H, W, C) or (H, W, C), received {tuple(arr.shape)}"
            )
        n, h, w, c = arr.shape
        shape = (n, h, w, c) if channels_last else (n, c, h, w)
        if out is None:
            out_np = np.empty(shape, dtype=np.float16 if dtype == "float16" else np.float32)
            result = out_np
            if is_torch_tensor(images):
                import torch

                result = torch.from_numpy(out_np)
        else:
            out_np = as_numpy(out, "out")
            result = out
        _C.normalize(arr, out_np, list(mean), list(std), channels_last, threads)
    return result[0] if single else result


def _normalize_cuda(images: Any, mean: Any, std: Any, dtype: str, channels_last: bool, out: Any):
    import torch

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images: expected a uint8 (N, H, W, C) tensor, received {images.dtype} "
            f"{tuple(images.shape)}"
        )
    images = images.contiguous()
    n, h, w, c = images.shape
    shape = (n, h, w, c) if channels_last else (n, c, h, w)
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    if out is None:
        out = torch.empty(shape, dtype=tdtype, device=images.device)
    elif tuple(out.shape) != shape or out.dtype != tdtype or out.device != images.device:
        raise ValueError(
            f"out: expected {tdtype} {shape} on {images.device}, received {out.dtype} "
            f"{tuple(out.shape)} on {out.device}"
        )
    stream = torch.cuda.current_stream(images.device).cuda_stream
    with torch.cuda.device(images.device):
        _C.normalize_cuda(
            images.data_ptr(),
            out.data_ptr(),
            n,
            h,
            w,
            c,
            list(mean),
            list(std),
            dtype == "float16",
            channels_last,
            stream,
        )
    return out
