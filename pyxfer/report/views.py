"""A grid of augmented views: each original image beside the views the run's preset draws."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

_CELL = 84  # display side of one cell (tiny images are upscaled with nearest neighbour)
_GAP = 6
_TINY = 24  # images up to this side are shown as crisp pixels
_SEPARATOR = 14  # extra space between the original and its views
_BACKGROUND = (255, 255, 255)


def _view_specs(views: Any, size: int, options: dict[str, Any]) -> list[Any]:
    """ViewSpecs from a preset name or a list of ViewSpec field dicts (as in a config)."""
    from pyxfer.ops.augment import ViewSpec, preset

    if isinstance(views, str):
        return preset(views, size=size, **options)
    if isinstance(views, list) and views and all(isinstance(v, dict) for v in views):
        fields: list[dict[str, Any]] = [
            {k: tuple(x) if isinstance(x, list) else x for k, x in v.items()} for v in views
        ]
        return [ViewSpec(**f) for f in fields]
    raise ValueError(f"views: expected a preset name or a list of view specs, received {views!r}")


def _pick(labels: np.ndarray, count: int, seed: int) -> list[int]:
    """One image from each of the first classes, topped up with random ones."""
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(labels) if c >= 0][:count]
    picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes]
    if len(picks) < count:
        rest = np.setdiff1d(np.arange(len(labels)), picks)
        more = rng.choice(rest, size=min(count - len(picks), len(rest)), replace=False)
        picks += [int(i) for i in np.sort(more)]
    return picks


def _to_pil(img: np.ndarray) -> Image.Image:
    """uint8 (H, W, C) with C in {1, 3} -> RGB image."""
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(img), "RGB")


def _fit(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = _CELL / max(w, h)
    if max(w, h) <= _TINY:  # upscale by a whole factor so every pixel stays a clean square
        s = float(int(s))
        method = Image.Resampling.NEAREST
    else:
        method = Image.Resampling.BICUBIC if s > 1 else Image.Resampling.LANCZOS
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), method)


def views_grid(
    images: Sequence[np.ndarray],
    indices: Sequence[int],
    views: Any,
    *,
    size: int,
    seed: int = 0,
    preset_options: dict[str, Any] | None = None,
) -> tuple[bytes, int]:
    """Render each image followed by its augmented views as one PNG.

    The views are drawn with :func:`pyxfer.ops.augment.augment` keyed by the images' data-set
    indices and the run's seed (epoch 0), normalised with mean 0 and std 1 so the output is
    already the un-normalised picture in [0, 1].

    Args:
        images: uint8 (H, W, C) images, C in {1, 3}.
        indices: their indices in the data set.
        views: a preset name or a list of view-spec dicts.
        size: output side of the (global) views.
        seed: the run's seed.
        preset_options: more arguments of :func:`pyxfer.ops.augment.preset` (``local_size``,
            ``n_local``).

    Returns:
        (PNG bytes, number of views per image).
    """
    from pyxfer.ops.augment import augment

    specs = _view_specs(views, size, preset_options or {})
    channels = int(images[0].shape[-1])
    outs = augment(
        list(images),
        specs,
        indices=list(indices),
        seed=seed,
        size=size,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
    )
    n = len(images)
    per_image: list[list[np.ndarray]] = [[] for _ in range(n)]
    for out in outs:  # (n * v, C, h, w) per distinct view size, image-major
        out = np.asarray(out)
        v = out.shape[0] // n
        pix = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for i in range(n):
            per_image[i].extend(pix[i * v : (i + 1) * v])
    n_views = len(per_image[0])
    width = _CELL * (1 + n_views) + _GAP * n_views + _SEPARATOR
    height = _CELL * n + _GAP * (n - 1)
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    for i, img in enumerate(images):
        y = i * (_CELL + _GAP)
        cells = [_fit(_to_pil(img))] + [_fit(_to_pil(v)) for v in per_image[i]]
        x = 0
        for j, cell in enumerate(cells):
            sheet.paste(cell, (x + (_CELL - cell.width) // 2, y + (_CELL - cell.height) // 2))
            x += _CELL + _GAP + (_SEPARATOR if j == 0 else 0)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue(), n_views


def sample_images(store: Any, count: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """A few images of a data set (one per class when labelled) and their indices."""
    picks = _pick(np.asarray(store.labels), min(count, len(store)), seed)
    images = [np.asarray(store.image(i)) for i in picks]
    return images, picks
