"""Inference preprocessing of the runtime: resize the shorter side, centre crop, normalise.

Everything the runtime does to an image before the model sits behind :func:`preprocess`
(normalised float out) and :func:`resize_crop` (uint8 out, for bundles that normalise inside
the graph). Both run the fused C++ kernel ``pyxfer._C.preprocess`` (through
:func:`pyxfer.ops.preprocess.preprocess`, which imports no torch): torchvision's evaluation
transform ``Resize(resize)`` on the shorter side with antialiasing, ``CenterCrop(crop)`` with
torchvision's offset rounding ``int(round((H - crop) / 2))``, then ``(x / 255 - mean) / std``,
in one pass per image over a ragged batch, GIL released.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pyxfer.data.channels import convert_channels
from pyxfer.ops.preprocess import preprocess as _fused_preprocess


def _with_channels(arr: np.ndarray, channels: int, where: str) -> np.ndarray:
    """(H, W, C) uint8 with C in {1, 3} -> (H, W, channels) uint8."""
    if arr.dtype != np.uint8:
        raise ValueError(f"{where}: expected dtype uint8, received {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(
            f"{where}: expected uint8 (H, W, C) images with C in {{1, 3}}, received shape "
            f"{tuple(arr.shape)}"
        )
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"{where}: expected non-empty images, received shape {tuple(arr.shape)}")
    if arr.shape[2] == channels:
        return arr
    return convert_channels(arr, channels)


def _batch(images: np.ndarray | Sequence[np.ndarray], channels: int) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(_with_channels(np.asarray(a), channels, f"images[{i}]"))
        for i, a in enumerate(images)
    ]


def preprocess(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    resize: int,
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    threads: int = 0,
) -> np.ndarray:
    """uint8 images of any sizes -> normalised float32 (N, C, crop, crop), C = ``len(mean)``.

    Args:
        images: an (N, H, W, C) uint8 array or a list of (H, W, C) uint8 arrays of any sizes
            (C in {1, 3}; grey is expanded to RGB and RGB reduced to grey as needed).
        resize: target length of the shorter side (antialiased).
        crop: side of the centred square crop (``crop <= resize``).
        mean, std: per-channel normalisation in [0, 1] units.
        threads: CPU threads (0 = all cores); the result does not depend on it.
    """
    if crop > resize:
        raise ValueError(f"crop: expected <= resize={resize}, received {crop}")
    channels = len(mean)
    if len(images) == 0:
        return np.empty((0, channels, crop, crop), np.float32)
    return _fused_preprocess(
        _batch(images, channels), resize, crop, tuple(mean), tuple(std), threads=threads
    )


def resize_crop(
    images: np.ndarray | Sequence[np.ndarray], *, resize: int, crop: int, channels: int
) -> np.ndarray:
    """uint8 images of any sizes -> (N, crop, crop, channels) uint8 (resize + crop only).

    The fused kernel rounds its resize to uint8 levels (as torchvision's uint8 path does), so
    normalising with mean 0 and std 1/255 returns those levels exactly, up to float rounding
    that ``rint`` removes.
    """
    x = preprocess(
        images, resize=resize, crop=crop, mean=(0.0,) * channels, std=(1.0 / 255.0,) * channels
    )
    return np.rint(x).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
