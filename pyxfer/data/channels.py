"""Grey <-> RGB: the one definition used by training, evaluation, export and the runtime.

Grey becomes RGB by repetition; RGB becomes grey by ITU-R 601-2 luma with torchvision's
weights (``rgb_to_grayscale``: 0.2989, 0.587, 0.114 — the same as the augmentation kernel's
grayscale in ``cpp/include/pyxfer/augment.h``), rounded to the nearest grey level. numpy only,
so the torch-free runtime uses it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: RGB -> grey weights (torchvision's ``rgb_to_grayscale``; the augmentation kernel's)
LUMA = np.array([0.2989, 0.587, 0.114], np.float32)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """One uint8 (H, W, C) image with C in {1, 3} -> (H, W, ``channels``) uint8."""
    c = image.shape[-1]
    if c == channels:
        return image
    if c == 1:
        return np.repeat(image, channels, axis=-1)
    grey = np.rint(image.astype(np.float32) @ LUMA).clip(0, 255).astype(np.uint8)
    return grey[..., None]


def convert_all(images: Any, channels: int) -> Any:
    """:func:`convert_channels` over an (N, H, W, C) array (or one image) or a list of them."""
    if isinstance(images, np.ndarray):
        return convert_channels(images, channels)
    return [convert_channels(im, channels) for im in images]
