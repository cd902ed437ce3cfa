"""Image decoding and resizing with Pillow, in a thread pool (shared by the folder/tar readers).

Resizing to a fixed size (``size=S`` gives S×S) has two modes:

- ``fit="crop"`` (default): the largest centred region with the target aspect ratio (the centre
  square for S×S) is cut out and resized to the target with Pillow's antialiased bilinear
  filter, in one step. Up to sub-pixel rounding this is "resize the shorter side to S, then
  centre-crop S×S", the usual evaluation transform; nothing is stretched.
- ``fit="stretch"``: the whole image is resized to S×S (aspect ratio not kept).

Image files are data and are decoded with bounded memory: an image whose header claims more
than :func:`max_image_pixels` pixels (default 89,478,485, Pillow's own default, about 9459²)
is refused before any pixel is decoded, with an error naming the file; Pillow's
``Image.MAX_IMAGE_PIXELS`` is set to the same value explicitly. Raise the limit with
:func:`set_max_image_pixels` or the environment variable ``PYXFER_MAX_IMAGE_PIXELS`` (read at
import). Threads decoding together hold at most twice the limit in pixels at once.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FITS = ("crop", "stretch")
_EXIF_ORIENTATION = 0x0112


#: the default pixel limit of one image: Pillow's own default, made explicit (and an error)
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_PIXELS_ENV = "PYXFER_MAX_IMAGE_PIXELS"
_max_pixels = DEFAULT_MAX_IMAGE_PIXELS


class ImageDecodeError(ValueError):
    """An image file could not be read or decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path


class ImageTooLargeError(ValueError):
    """An image has more pixels than :func:`max_image_pixels` allows."""


def max_image_pixels() -> int:
    """The largest number of pixels (width × height) an image may have to be decoded."""
    return _max_pixels


def set_max_image_pixels(pixels: int) -> None:
    """Set the pixel limit of one image (and Pillow's ``Image.MAX_IMAGE_PIXELS`` with it).

    Images over the limit are refused before they are decoded. The default, 89,478,485, is
    Pillow's (a 16-bit image that size is 179 MB decoded, an RGB one 268 MB); raise it for
    larger scans, e.g. ``set_max_image_pixels(300_000_000)``.
    """
    global _max_pixels
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"max_image_pixels: expected a positive int, received {pixels!r}")
    _max_pixels = pixels
    Image.MAX_IMAGE_PIXELS = pixels


def _limit_from_env() -> int:
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}: expected a positive integer, received {text!r}")
    return value


set_max_image_pixels(_limit_from_env())


def _too_large(pixels: int, size: tuple[int, int] | None = None) -> ImageTooLargeError:
    what = f"{size[0]}x{size[1]} = {pixels:,}" if size else f"{pixels:,}"
    return ImageTooLargeError(
        f"{what} pixels, over the limit of {_max_pixels:,} pixels (refused before decoding; "
        f"raise it with pyxfer.data.set_max_image_pixels(n) or {MAX_PIXELS_ENV}=n)"
    )


class PixelBudget:
    """Bounds the pixels decoded at once by several threads.

    :meth:`hold` waits until the pixels held by others plus its own fit in ``limit``; an
    image larger than ``limit`` on its own waits until it is alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._held = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._cond:
            while self._held and self._held + pixels > self.limit:
                self._cond.wait()
            self._held += pixels
        try:
            yield
        finally:
            with self._cond:
                self._held -= pixels
                self._cond.notify_all()


def _open(src: Any) -> Image.Image:
    """``Image.open`` with Pillow's decompression-bomb refusal turned into ours."""
    try:
        return Image.open(src)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(int(found.group(1)) if found else _max_pixels + 1) from exc


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with an image extension."""
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def check_options(size: Any, channels: Any, fit: str, on_error: str) -> tuple[int, int] | None:
    """Validate reader options; returns the target (height, width) or None."""
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, received {channels!r}")
    if fit not in FITS:
        raise ValueError(f"fit: expected one of {', '.join(FITS)}, received {fit!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', received {on_error!r}")
    if size is None:
        return None
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in hw):
        raise ValueError(f"size: expected a positive int S (S×S) or (H, W), received {size!r}")
    return int(hw[0]), int(hw[1])


def resolve_threads(threads: int) -> int:
    """``threads <= 0`` means one per CPU core (at most 16)."""
    if threads is None or threads <= 0:
        return max(1, min(16, os.cpu_count() or 1))
    return int(threads)


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar on stderr; ``progress=None`` shows it only when stderr is a terminal."""
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


def _crop_box(w: int, h: int, hw: tuple[int, int]) -> tuple[float, float, float, float]:
    th, tw = hw
    if w * th > h * tw:  # too wide: cut the sides
        cw = h * tw / th
        x0 = (w - cw) / 2
        return (x0, 0.0, x0 + cw, float(h))
    ch = w * th / tw
    y0 = (h - ch) / 2
    return (0.0, y0, float(w), y0 + ch)


def resize_pil(img: Image.Image, hw: tuple[int, int], fit: str = "crop") -> Image.Image:
    """Resize a Pillow image to (H, W) = ``hw`` (antialiased bilinear), see module docstring."""
    th, tw = hw
    if img.size == (tw, th):
        return img
    box = _crop_box(img.width, img.height, hw) if fit == "crop" else None
    return img.resize((tw, th), Image.Resampling.BILINEAR, box=box)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit grey (16-bit PNG, TIFF) -> 8-bit L by keeping the high byte (Pillow clips)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img)  # uint16, 2 bytes a pixel
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    if img.mode == "I":
        arr = np.clip(np.asarray(img), 0, 65535) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.clip(np.rint(np.asarray(img, np.float64)), 0, 255)
        return Image.fromarray(arr.astype(np.uint8), "L")
    return img


def pil_to_array(img: Image.Image, channels: int | None) -> np.ndarray:
    """Pillow image -> (H, W, C) uint8 with C = ``channels`` (None: 1 for grey, else 3)."""
    if channels is None:
        channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 -> Pillow image (mode L or RGB)."""
    return Image.fromarray(
        arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB"
    )


def resize_array(
    arr: np.ndarray, hw: tuple[int, int], channels: int | None = None, fit: str = "crop"
) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, channels) uint8 through Pillow (no-op when nothing changes)."""
    out_c = arr.shape[2] if channels is None else channels
    if arr.shape == (hw[0], hw[1], out_c):
        return arr
    img = resize_pil(array_to_pil(arr), hw, fit)
    return pil_to_array(img, out_c)


def decode_image(
    src: str | os.PathLike[str] | bytes,
    *,
    hw: tuple[int, int] | None = None,
    channels: int | None = 3,
    fit: str = "crop",
    draft: bool = True,
    budget: PixelBudget | None = None,
) -> np.ndarray:
    """Decode one file (path or bytes) to (H, W, C) uint8, optionally resized to ``hw``.

    The first frame of an animated GIF is used; EXIF orientation is applied. With ``draft`` a
    JPEG is decoded at a reduced scale that is still at least the target size (much faster for
    large photos). The size in the header is checked against :func:`max_image_pixels` before
    anything is decoded; with a ``budget`` the decoding waits for its pixels to fit in it.

    Raises:
        ImageTooLargeError: the image has more pixels than the limit.
    """
    fh = io.BytesIO(src) if isinstance(src, bytes) else src
    with _open(fh) as img:
        if draft and hw is not None and img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (hw[1], hw[0]))
        pixels = img.width * img.height
        if pixels > _max_pixels:
            raise _too_large(pixels, img.size)
        with budget.hold(pixels) if budget is not None else nullcontext():
            img.load()
            img = _to_8bit(img)
            if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            if hw is not None:
                img = resize_pil(img, hw, fit)
            return pil_to_array(img, channels)


def decode_many(
    sources: Sequence[str | os.PathLike[str] | bytes],
    names: Sequence[str],
    *,
    hw: tuple[int, int] | None = None,
    channels: int | None = 3,
    fit: str = "crop",
    threads: int = 0,
    on_error: str = "raise",
    progress: bool | None = None,
    desc: str = "decoding",
    draft: bool = True,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Decode many images in a thread pool, in order.

    Returns:
        (images, kept): the decoded (H, W, C) uint8 arrays and the int64 indices into
        ``sources`` they came from (all of them unless ``on_error="skip"`` dropped some).

    Raises:
        ImageDecodeError: naming the file, for the first unreadable one (``on_error="raise"``);
        with ``on_error="skip"`` each is skipped with a warning naming the file instead.
    """
    if len(sources) != len(names):
        raise ValueError(f"names: expected {len(sources)} names, received {len(names)}")
    budget = PixelBudget(2 * _max_pixels)

    def work(src: Any) -> np.ndarray:
        return decode_image(src, hw=hw, channels=channels, fit=fit, draft=draft, budget=budget)

    images: list[np.ndarray] = []
    kept: list[int] = []
    bar = progress_bar(len(sources), desc, progress)
    pool = ThreadPoolExecutor(max_workers=resolve_threads(threads))
    try:
        futures: list[Future[np.ndarray]] = [pool.submit(work, s) for s in sources]
        for i, fut in enumerate(futures):
            try:
                images.append(fut.result())
                kept.append(i)
            except Exception as exc:
                err = ImageDecodeError(str(names[i]), f"{type(exc).__name__}: {exc}")
                if on_error == "raise":
                    raise err from exc
                warnings.warn(f"skipping unreadable image: {err}", stacklevel=3)
            bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return images, np.asarray(kept, np.int64)


def stack_if_uniform(
    images: list[np.ndarray], channels: int | None = 3
) -> np.ndarray | list[np.ndarray]:
    """One (N, H, W, C) array when all images share a shape (or there are none), else the list."""
    if not images:
        return np.zeros((0, 1, 1, channels or 3), np.uint8)
    first = images[0].shape
    if all(im.shape == first for im in images):
        return np.stack(images)
    return images


def source_name(path: str | os.PathLike[str]) -> str:
    """A short data-set name from a path: its last component without archive suffixes."""
    name = Path(path).name or Path(path).resolve().name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def decode_to_store(
    reader: str,
    path: str | os.PathLike[str],
    sources: Sequence[Any],
    names: Sequence[str],
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    hw: tuple[int, int] | None,
    channels: int | None,
    fit: str,
    threads: int,
    on_error: str,
    progress: bool | None,
    draft: bool,
    info: dict[str, Any] | None = None,
) -> Any:
    """Decode image files (paths or bytes) in threads and build the labelled ``ImageStore``.

    Shared by the file readers: ``reader`` names the source (``"folder"``, ``"tar"``) in
    errors, in ``info`` and in the store's ``source`` (``"reader:path"``); files that could not
    be read (``on_error="skip"``) drop their labels too.
    """
    from pyxfer.data.store import ImageStore

    images, kept = decode_many(
        sources,
        names,
        hw=hw,
        channels=channels,
        fit=fit,
        threads=threads,
        on_error=on_error,
        progress=progress,
        desc=f"reading {source_name(path)}",
        draft=draft,
    )
    if not images:
        raise ValueError(f"{reader}: none of the {len(sources)} image files could be read")
    meta: dict[str, Any] = {
        "reader": reader,
        "files": len(sources),
        "skipped": len(sources) - len(kept),
    }
    if hw is not None:
        meta.update(size=list(hw), fit=fit)
    meta.update(info or {})
    return ImageStore(
        stack_if_uniform(images, channels),
        labels[kept],
        class_names,
        name=source_name(path),
        source=f"{reader}:{path}",
        info=meta,
    )
