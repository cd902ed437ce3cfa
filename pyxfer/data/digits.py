"""scikit-learn's bundled UCI handwritten digits: the embedded default data set (no download).

1,797 grey 8×8 images with values 0..16 and labels 0..9; pixels are scaled to uint8 0..255 as
``round(v * 255 / 16)``.
"""

from __future__ import annotations

import numpy as np

from pyxfer.data.store import ImageStore


def read_digits() -> ImageStore:
    """The 1,797 digits as a dense (1797, 8, 8, 1) uint8 store, classes ``"0"``..``"9"``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, np.float64) * (255.0 / 16.0))
    images = np.clip(images, 0, 255).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    return ImageStore(
        images,
        np.asarray(bunch.target, np.int64),
        [str(i) for i in range(10)],
        name="digits",
        source="digits",
        info={"reader": "digits", "origin": "sklearn.datasets"},
    )
