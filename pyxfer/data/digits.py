"""scikit-learn's bundled UCI handwritten digits: the embedded default data set (no download).

1,797 grey 8×8 images with values 0..16 and labels 0..9; pixels are scaled to uint8 0..255 as
``round(v * 255 / 16)``.

``read_digits(frame="mnist")`` lays them out the way MNIST was made (LeCun et al. 1998: each
NIST digit size-normalised into a 20×20 box, then placed in a 28×28 image with its centre of
mass at the centre): every 8×8 digit is upscaled to 20×20 (bilinear) and centred by its centre
of mass on a black 28×28 canvas. Used as the target of MNIST -> digits adaptation, it removes
the framing difference (an 8 px digit stretched to 28 px fills the whole image, an MNIST digit
fills its middle 20 px) and leaves the difference in the digits themselves.
"""

from __future__ import annotations

import numpy as np

from pyxfer.data.store import ImageStore


def read_digits(frame: str | None = None) -> ImageStore:
    """The 1,797 digits, classes ``"0"``..``"9"``.

    Args:
        frame: ``None`` for the original dense (1797, 8, 8, 1) uint8 images, ``"mnist"`` for
            (1797, 28, 28, 1) images framed as MNIST's (see the module docstring).

    Returns:
        An in-memory :class:`ImageStore`.

    Raises:
        ValueError: ``frame`` is neither ``None`` nor ``"mnist"``.
    """
    from sklearn.datasets import load_digits

    if frame not in (None, "mnist"):
        raise ValueError(f"frame: expected None or 'mnist', received {frame!r}")
    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, np.float64) * (255.0 / 16.0))
    images = np.clip(images, 0, 255).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    info = {"reader": "digits", "origin": "sklearn.datasets"}
    if frame == "mnist":
        images = np.stack([_mnist_frame(im[..., 0]) for im in images])[..., None]
        info["frame"] = "mnist: 8 px -> 20 px bilinear, centre of mass at the centre of 28 px"
    return ImageStore(
        images,
        np.asarray(bunch.target, np.int64),
        [str(i) for i in range(10)],
        name="digits" if frame is None else f"digits-{frame}",
        source="digits" if frame is None else f"digits:{frame}",
        info=info,
    )


def _mnist_frame(img: np.ndarray, box: int = 20, canvas: int = 28) -> np.ndarray:
    """(8, 8) uint8 -> (canvas, canvas): upscaled to ``box`` px, centre of mass centred."""
    from PIL import Image

    big = np.asarray(Image.fromarray(img).resize((box, box), Image.Resampling.BILINEAR))
    out = np.zeros((canvas, canvas), np.uint8)
    mass = big.astype(np.float64)
    total = mass.sum()
    if total > 0:
        ys, xs = np.indices(big.shape)
        cy, cx = (ys * mass).sum() / total, (xs * mass).sum() / total
    else:
        cy = cx = (box - 1) / 2.0
    # top-left corner that puts the centre of mass at the canvas centre, kept inside the canvas
    top = int(np.clip(round((canvas - 1) / 2.0 - cy), 0, canvas - box))
    left = int(np.clip(round((canvas - 1) / 2.0 - cx), 0, canvas - box))
    out[top : top + box, left : left + box] = big
    return out
