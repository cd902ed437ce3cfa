"""Inference preprocessing of the runtime: resize the shorter side, centre crop, normalise.

Everything the runtime does to an image before the model sits behind :func:`resize_crop`
(uint8 out, for bundles that normalise inside the graph) and :func:`preprocess` (normalised
float out). Both follow torchvision's evaluation transform: ``Resize(resize)`` on the shorter
side with antialiasing (Pillow's bilinear filter, which widens its support when reducing), then
``CenterCrop(crop)`` with torchvision's offset rounding ``int(round((H - crop) / 2))``, then
``(x / 255 - mean) / std`` by ``pyxfer._C.normalize``.

The resize and crop run in Pillow for now; once the fused ``pyxfer._C.preprocess`` kernel
(decode-free resize + crop + normalise of ragged batches in one pass) is available, these two
functions call it instead and keep their signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from pyxfer import _C


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    mode = "L" if channels == 1 else "RGB"
    return img if img.mode == mode else img.convert(mode)


def _resize_crop_one(arr: np.ndarray, resize: int, crop: int, channels: int) -> np.ndarray:
    """(H, W, C) uint8 -> (crop, crop, channels) uint8."""
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(
            f"images: expected uint8 (H, W, C) images with C in {{1, 3}}, received shape "
            f"{tuple(arr.shape)}"
        )
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise ValueError(f"images: expected non-empty images, received shape {tuple(arr.shape)}")
    if h == w == crop == resize and arr.shape[2] == channels:
        return arr
    img = _to_channels(Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr), channels)
    if min(h, w) != resize:
        if h <= w:
            h, w = resize, int(resize * w / h)
        else:
            h, w = int(resize * h / w), resize
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    if (h, w) != (crop, crop):
        top, left = round((h - crop) / 2), round((w - crop) / 2)
        img = img.crop((left, top, left + crop, top + crop))
    out = np.asarray(img, dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def resize_crop(
    images: np.ndarray | Sequence[np.ndarray], *, resize: int, crop: int, channels: int
) -> np.ndarray:
    """uint8 images of any sizes -> (N, crop, crop, channels) uint8.

    Args:
        images: an (N, H, W, C) uint8 array or a list of (H, W, C) uint8 arrays of any sizes
            (C in {1, 3}; grey is expanded to RGB and RGB reduced to grey as needed).
        resize: target length of the shorter side (antialiased bilinear).
        crop: side of the centred square crop (``crop <= resize``).
        channels: channels of the output, 1 or 3.
    """
    if crop > resize:
        raise ValueError(f"crop: expected <= resize={resize}, received {crop}")
    out = np.empty((len(images), crop, crop, channels), np.uint8)
    for i, arr in enumerate(images):
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            raise ValueError(f"images[{i}]: expected dtype uint8, received {arr.dtype}")
        out[i] = _resize_crop_one(arr, resize, crop, channels)
    return out


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

    See :func:`resize_crop` for ``images``, ``resize`` and ``crop``; ``threads`` is passed to
    the normalisation kernel (0 = all cores).
    """
    batch = resize_crop(images, resize=resize, crop=crop, channels=len(mean))
    n, h, w, c = batch.shape
    out = np.empty((n, c, h, w), np.float32)
    if n:
        _C.normalize(batch, out, [float(m) for m in mean], [float(s) for s in std], False, threads)
    return out
