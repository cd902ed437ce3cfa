"""A labelled contact sheet of a store: a few samples per class, one row per class (Pillow)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pyxfer.data.decode import array_to_pil
from pyxfer.data.store import ImageStore

_BACKGROUND = (32, 32, 32)
_TEXT = (230, 230, 230)
_PAD = 4
_MIN_CELL = 64  # tiny images are upscaled (nearest neighbour) to at least this
_MAX_CELL = 128  # large ones are shrunk to fit this box


def _pick(
    store: ImageStore, per_class: int, max_rows: int, seed: int
) -> list[tuple[str, list[int]]]:
    rng = np.random.default_rng(seed)
    labels = store.labels
    rows: list[tuple[str, list[int]]] = []
    if store.is_labelled:
        for c, name in enumerate(store.class_names[:max_rows]):
            idx = np.flatnonzero(labels == c)
            take = np.sort(rng.choice(idx, size=min(per_class, idx.size), replace=False))
            rows.append((name, [int(i) for i in take]))
    else:
        n = min(len(store), per_class * max(1, min(max_rows, 4)))
        take = np.sort(rng.choice(len(store), size=n, replace=False))
        for r in range(0, n, per_class):
            rows.append(("", [int(i) for i in take[r : r + per_class]]))
    return rows


def _cell_size(store: ImageStore) -> tuple[int, int]:
    """(width, height) of one grid cell."""
    if store.is_dense and store.image_shape is not None:
        h, w = store.image_shape[:2]
        big = max(h, w)
        if big <= _MIN_CELL:
            f = math.ceil(_MIN_CELL / big)
            return w * f, h * f
        if big <= _MAX_CELL:
            return w, h
        s = _MAX_CELL / big
        return max(1, round(w * s)), max(1, round(h * s))
    return 96, 96


def _fit(img: Image.Image, cell: tuple[int, int]) -> Image.Image:
    w, h = img.size
    s = min(cell[0] / w, cell[1] / h)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    # integer upscale of tiny images stays crisp; everything else is resampled smoothly
    method = Image.Resampling.NEAREST if s >= 1 else Image.Resampling.BILINEAR
    return img.resize(size, method)


def sample_grid(
    store: ImageStore, *, per_class: int = 8, max_rows: int = 20, seed: int = 0
) -> Image.Image:
    """An RGB image with up to ``per_class`` random samples of each class (one row each).

    Rows are labelled with the class name; an unlabelled store gives a few unlabelled rows.
    Images of at most 64 pixels are upscaled with nearest neighbour so they stay visible;
    larger ones are shrunk to fit 128×128. The first ``max_rows`` classes are shown.
    """
    if len(store) == 0:
        raise ValueError("store: expected at least one image to draw, received an empty store")
    if per_class < 1:
        raise ValueError(f"per_class: expected an int >= 1, received {per_class}")
    rows = _pick(store, per_class, max_rows, seed)
    cw, ch = _cell_size(store)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((probe.textlength(name[:24], font=font) for name, _ in rows), default=0)
    label_w = int(label_w) + 2 * _PAD if label_w else 0
    cols = max(len(idx) for _, idx in rows)
    width = label_w + cols * (cw + _PAD) + _PAD
    height = len(rows) * (ch + _PAD) + _PAD
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, (name, idx) in enumerate(rows):
        y = _PAD + r * (ch + _PAD)
        if name:
            draw.text((_PAD, y + ch // 2), name[:24], fill=_TEXT, font=font, anchor="lm")
        for c, i in enumerate(idx):
            tile = _fit(array_to_pil(store.image(i)).convert("RGB"), (cw, ch))
            x = label_w + _PAD + c * (cw + _PAD)
            sheet.paste(tile, (x + (cw - tile.width) // 2, y + (ch - tile.height) // 2))
    return sheet
