"""Tiny image data sets written on the fly for the data-layer tests."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def random_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)


def write_image(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    img.save(path)


def make_folder(
    root: Path,
    counts: dict[str, int],
    *,
    sizes: list[tuple[int, int]] | None = None,
    seed: int = 0,
    ext: str = ".png",
) -> dict[str, list[np.ndarray]]:
    """root/<class>/<i>.png with random RGB pixels; returns the arrays per class (file order)."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [(6, 6)]
    out: dict[str, list[np.ndarray]] = {}
    k = 0
    for cls, n in counts.items():
        out[cls] = []
        for i in range(n):
            h, w = sizes[k % len(sizes)]
            k += 1
            arr = random_image(rng, h, w)
            write_image(root / cls / f"{i:03d}{ext}", arr)
            out[cls].append(arr)
    return out


def write_idx(path: Path, arr: np.ndarray, *, compress: bool, magic: bytes | None = None) -> None:
    """An IDX file of uint8 data (magic 0x0000 08 ndim, big-endian dims)."""
    header = magic if magic is not None else bytes([0, 0, 0x08, arr.ndim])
    dims = np.asarray(arr.shape, ">u4").tobytes()
    data = header + dims + np.ascontiguousarray(arr, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def make_tar(archive: Path, folder: Path, arcname: str) -> None:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=arcname)
