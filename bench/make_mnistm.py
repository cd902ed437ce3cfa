"""Build an MNIST-M-style adaptation pair from the MNIST test digits and photos (no download).

MNIST-M (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation") blends
each MNIST digit with a random colour patch of a photograph: the digit is binarised (pixel > 0
-> 255, on all three channels) and the image is ``|patch - digit|`` per channel, so the stroke
takes the inverted colours of the photo and the background keeps them. Ganin used BSDS500
photos; the photos here are the 10,000 CIFAR-10 test images (32 px, so a 28 px patch is most of
an image: each digit gets a random photo and a random offset in 0..4).

Source and target must not share a digit, so the 10,000 MNIST test digits are split in two
halves (stratified by class, seeded): half ``a`` is written as the grey source ``mnist-a/``,
half ``b`` is blended and written as the RGB target ``mnistm-b/`` (labels kept: ``pyxfer
adapt`` holds out a labelled test part of it and strips the labels of the rest). Both are
packed stores (``packed:DIR``)::

    python bench/make_mnistm.py --out data          # data/mnist-a, data/mnistm-b
    pyxfer adapt --source-data packed:data/mnist-a --target-data packed:data/mnistm-b ...

Every choice is drawn from ``numpy.random.default_rng(seed)`` (``--seed``, default 0): the
same inputs and seed give byte-identical stores. Inputs default to ``../shared/data`` next to
the project (or ``$PYXFER_SHARED_DATA``): ``--mnist`` an MNIST IDX directory, ``--photos`` any
data-set spec of RGB photos (``tar:.../cifar10-test/cifar10-test.tar.gz``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

#: the side of an MNIST digit
SIDE = 28


def binarised_rgb(digits: np.ndarray) -> np.ndarray:
    """(N, H, W[, 1]) grey uint8 -> (N, H, W, 3) uint8: 255 where the pixel is > 0, else 0."""
    d = np.asarray(digits)
    if d.ndim == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 3 or d.dtype != np.uint8:
        raise ValueError(
            f"digits: expected uint8 (N, H, W) or (N, H, W, 1), received {d.dtype} {d.shape}"
        )
    mask = np.where(d > 0, np.uint8(255), np.uint8(0))
    return np.repeat(mask[..., None], 3, axis=-1)


def blend(digits: np.ndarray, photos: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    """MNIST-M blending: each digit ``|patch - binarised digit|`` with a random photo patch.

    Args:
        digits: uint8 (N, H, W) or (N, H, W, 1) grey digits.
        photos: uint8 (M, PH, PW, 3) RGB photos, PH >= H and PW >= W.
        seed: seed of the photo and offset choices.

    Returns:
        (images (N, H, W, 3) uint8, draws): ``draws`` holds the chosen ``photo`` index and the
        ``top`` / ``left`` offset of each patch (int arrays (N,)).
    """
    mask = binarised_rgb(digits)
    n, h, w, _ = mask.shape
    photos = np.asarray(photos)
    if photos.ndim != 4 or photos.shape[-1] != 3 or photos.dtype != np.uint8 or len(photos) == 0:
        raise ValueError(
            f"photos: expected uint8 (M >= 1, H, W, 3), received {photos.dtype} {photos.shape}"
        )
    ph, pw = photos.shape[1:3]
    if ph < h or pw < w:
        raise ValueError(f"photos: expected at least {h}x{w} px, received {ph}x{pw}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(photos), n)
    top = rng.integers(0, ph - h + 1, n)
    left = rng.integers(0, pw - w + 1, n)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        patch = photos[which[i], top[i] : top[i] + h, left[i] : left[i] + w].astype(np.int16)
        out[i] = np.abs(patch - mask[i].astype(np.int16)).astype(np.uint8)
    return out, {"photo": which, "top": top, "left": left}


def build(
    mnist: Any, photos: Any, out: str | os.PathLike[str], seed: int = 0, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``out/mnist-a`` (grey source half) and ``out/mnistm-b`` (blended target half).

    Args:
        mnist: an MNIST data-set spec or :class:`pyxfer.data.ImageStore` (grey 28 px digits).
        photos: a data-set spec or store of RGB photos of at least 28 px.
        out: the folder to write the two stores in.
        seed: seed of the split and of the blending.
        overwrite: replace existing stores.
    """
    from pyxfer.data import load_dataset, stratified_split, write_packed

    digits = load_dataset(mnist)
    pics = load_dataset(photos)
    if digits.channels != 1:
        raise ValueError(f"mnist: expected grey digits, received {digits.channels} channels")
    if pics.channels != 3:
        raise ValueError(f"photos: expected RGB photos, received {pics.channels} channels")
    a, b = stratified_split(digits.labels, (0.5, 0.5), seed=seed)
    d_img = digits.batch(np.arange(len(digits)))
    p_img = np.asarray(pics.batch(np.arange(len(pics))))
    blended, _ = blend(d_img[b], p_img, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = {"builder": "bench/make_mnistm.py", "seed": seed, "mnist": digits.source}
    src = write_packed(
        out / "mnist-a",
        d_img[a].shape,
        [d_img[a]],
        digits.labels[a],
        digits.class_names,
        name="mnist-a",
        source=f"packed:{out / 'mnist-a'}",
        info={**common, "half": "a", "indices": a.tolist()},
        overwrite=overwrite,
    )
    tgt = write_packed(
        out / "mnistm-b",
        blended.shape,
        [blended],
        digits.labels[b],
        digits.class_names,
        name="mnistm-b",
        source=f"packed:{out / 'mnistm-b'}",
        info={
            **common,
            "half": "b",
            "indices": b.tolist(),
            "photos": pics.source,
            "blend": "|photo patch - binarised digit| (Ganin & Lempitsky 2015)",
        },
        overwrite=overwrite,
    )
    return src, tgt


def _shared() -> Path:
    env = os.environ.get("PYXFER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", default=f"idx:{_shared() / 'mnist-test'}", help="MNIST spec")
    photos = _shared() / "cifar10-test" / "cifar10-test.tar.gz"
    ap.add_argument("--photos", default=f"tar:{photos}", help="photos spec")
    ap.add_argument("--out", default="data", help="folder of mnist-a/ and mnistm-b/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    src, tgt = build(args.mnist, args.photos, args.out, args.seed, args.overwrite)
    print(f"source: packed:{src}\ntarget: packed:{tgt}")


if __name__ == "__main__":
    main()
