"""A compressed store: each image's JPEG bytes, memory-mapped, decoded when a batch needs it.

``pack_jpeg("folder:photos", "photos.px")`` (``pyxfer pack folder:photos photos.px --format
jpeg``) writes a directory::

    data.bin     the encoded images, one after another
    index.npy    int64 (N, 6): byte offset, byte size, height, width, CRC-32 and flags of each
                 image (flags: 1 re-encoded, 2 the picture really ends in a mid-grey row)
    labels.npy   int64 (N,), -1 = unlabelled
    names.json   the source file of each image (for errors)
    meta.json    {"format": "pyxfer.packed", "version": 2, "storage": "jpeg", "count",
                  "channels", "data_bytes", "source_bytes", "quality", "max_side",
                  "reencoded", "class_names", "name", "source", "created", "info"}

A JPEG file is kept byte for byte (the store is about the size of the JPEGs); everything else
is decoded and re-encoded at ``quality`` (default 90, 4:2:0 chroma, Pillow's libjpeg-turbo):
other formats (PNG, WebP, ...), CMYK JPEGs, JPEGs with an EXIF rotation (applied first, as the
readers do) and images whose longer side exceeds ``max_side`` (default 2048; resized to it,
antialiased, before re-encoding). Packing streams: one image at a time is read, checked by a
full decode, maybe re-encoded, and appended; the directory is written atomically like a raw
store. An unreadable source file stops the pack with an error naming it, or is skipped with a
warning (``on_error="skip"``).

``load_dataset("packed:photos.px")`` opens it as a :class:`JpegStore` (a ragged
:class:`~pyxfer.data.ImageStore` whose ``store[i]`` decodes image ``i``). The fused loader does
better: :meth:`JpegStore.decode_views` takes the views' crop boxes, sampled in the *original*
image's coordinates from the sizes in the index, decodes each image with libjpeg's DCT scaling
at the smallest scale (1/1, 1/2, 1/4 or 1/8) at which every crop still has at least the output's
pixels, and maps the boxes onto the decoded image (to the nearest decoded pixel: an edge moves
by at most half a decoded pixel, i.e. half an output pixel or less). Decoding runs in a thread
pool; Pillow releases the GIL while libjpeg works (the header parse and the packing of the
pixels into the array, one encoder call per image, hold it). libjpeg's accurate defaults are
kept (integer IDCT, fancy chroma upsampling): its fast settings save nothing measurable here
and move pixels by up to tens of grey levels.

``shard_size=N`` (``pack --format jpeg --shard-size N``) writes a directory of such stores with
one index (:mod:`pyxfer.data.shards`), read as one store by ``packed:``.

A store is data: opening it checks that the index and ``data.bin`` agree (offsets contiguous,
sizes adding up to the file, sizes within the pixel limit); decoding an image checks its CRC-32,
that its header has the size the index says, and decodes with truncation an error. Any
mismatch is a :class:`StoreCorruptError` naming the index and the source file — never a crash
and never a silently wrong image; with ``on_error="skip"`` the loader drops such an image from
its batch with a warning instead.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pyxfer.data.decode import (
    _EXIF_ORIENTATION,
    ImageDecodeError,
    PixelBudget,
    _open,
    _to_8bit,
    _too_large,
    check_options,
    max_image_pixels,
    progress_bar,
    resolve_threads,
    source_name,
)
from pyxfer.data.store import PACKED_FORMAT, ImageStore

JPEG_VERSION = 2
STORAGE = "jpeg"
DEFAULT_QUALITY = 90
DEFAULT_MAX_SIDE = 2048
#: the DCT scales libjpeg decodes at (denominators of 1/1, 1/2, 1/4, 1/8), largest first
SCALES = (8, 4, 2, 1)
_FILES = ("data.bin", "index.npy", "labels.npy", "names.json", "meta.json")
_MAX_SIDE_LIMIT = 1 << 24  # the kernels' largest image side


class StoreCorruptError(ValueError):
    """An image of a compressed store cannot be decoded as its index says; names both."""

    def __init__(self, root: str, index: int, name: str, reason: str) -> None:
        super().__init__(
            f"compressed store {root!r}: image {index} (from {name}) is corrupt: {reason}"
        )
        self.index = index
        self.name = name


# -- packing ----------------------------------------------------------------------------------
def _source_items(
    src: str | os.PathLike[str] | ImageStore,
) -> tuple[Callable[[], Iterator[tuple[str, Any]]], np.ndarray, list[str], str, str]:
    """(items, labels, class_names, name, source): ``items()`` yields (name, bytes or pixels).

    A ``folder:`` source yields each file's bytes, read when it is reached; any other source
    (an ImageStore, a raw packed store, ``idx:``, ``tar:`` ...) is loaded and yields pixels.
    """
    if not isinstance(src, ImageStore):
        from pyxfer.data import load_dataset, parse_spec

        kind, argument = parse_spec(os.fspath(src))
        if kind == "folder" and argument:
            from pyxfer.data.folder import scan_folder

            paths, labels, class_names = scan_folder(argument)
            if not paths:
                raise ValueError(f"src: no image files found under {argument!r}")

            def files() -> Iterator[tuple[str, Any]]:
                for p in paths:
                    yield str(p), p

            return files, labels, class_names, source_name(argument), f"folder:{argument}"
        src = load_dataset(src)
    store = src

    def pixels() -> Iterator[tuple[str, Any]]:
        for i in range(len(store)):
            yield f"{store.source or store.name}[{i}]", store.image(i)

    return pixels, store.labels, list(store.class_names), store.name, store.source


def _encode(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def ends_in_fill(rows: np.ndarray) -> bool:
    """True when the last row of a decoded JPEG is libjpeg's fill: uniform mid-grey (128 in every
    channel), what it decodes where the data ended before the rows the header claims."""
    return bool(rows.size) and bool((rows[-1] == 128).all())


def _last_row(img: Image.Image) -> np.ndarray:
    return np.asarray(img.crop((0, img.height - 1, img.width, img.height)))


#: index column 5, bit 0: pack re-encoded the image; bit 1: the image really ends in mid-grey
REENCODED, GREY_END = 1, 2


def _prepare(
    item: Any, channels: int, quality: int, max_side: int | None, budget: PixelBudget
) -> tuple[bytes, int, int, int, int]:
    """One source image -> (JPEG bytes, height, width, source bytes, flags).

    A JPEG is decoded in full (a truncated or lying file fails here, not in training) and kept
    as it is unless it needs re-encoding (see the module docstring).
    """
    if isinstance(item, np.ndarray):
        mode = "L" if item.shape[2] == 1 else "RGB"
        img = Image.fromarray(item[:, :, 0] if mode == "L" else item, mode)
        raw = b""
    else:
        raw = Path(item).read_bytes() if not isinstance(item, bytes) else item
        img = _open(io.BytesIO(raw))
    with img:
        pixels = img.width * img.height
        if pixels > max_image_pixels():
            raise _too_large(pixels, img.size)
        with budget.hold(pixels):
            keep = (
                bool(raw)
                and img.format == "JPEG"
                and img.mode in ("L", "RGB")
                and img.getexif().get(_EXIF_ORIENTATION, 1) == 1
                and (max_side is None or max(img.size) <= max_side)
            )
            img.load()  # the whole file: truncation and bad data fail now
            if img.format == "JPEG" and img.mode in ("L", "RGB") and ends_in_fill(_last_row(img)):
                raise ValueError(
                    "its last row is the uniform grey libjpeg fills in where the data ends "
                    "before the rows its header claims (a truncated or lying file); if the "
                    "picture really ends in mid-grey, save it as PNG to have it re-encoded"
                )
            if keep:
                return raw, img.height, img.width, len(raw), 0
            img = _to_8bit(img)
            if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            img = img.convert("L" if channels == 1 else "RGB")
            if max_side is not None and max(img.size) > max_side:
                f = max_side / max(img.size)
                size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
                img = img.resize(size, Image.Resampling.BILINEAR)
            data = _encode(img, quality)
            flags = REENCODED
            with Image.open(io.BytesIO(data)) as back:
                back.load()
                if ends_in_fill(_last_row(back)):
                    flags |= GREY_END  # a picture that really ends in grey: not a fill
            return data, img.height, img.width, len(raw) or len(data), flags


class _PartWriter:
    """One compressed store being written (a whole store, or one shard of it)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.file = open(root / "data.bin", "wb")  # noqa: SIM115 - closed by finish()
        self.index: list[tuple[int, int, int, int, int, int]] = []
        self.rows: list[int] = []
        self.names: list[str] = []
        self.data_bytes = 0
        self.source_bytes = 0
        self.reencoded = 0

    def add(
        self, row: int, member: str, data: bytes, h: int, w: int, nsrc: int, flags: int
    ) -> None:
        self.index.append((self.data_bytes, len(data), h, w, zlib.crc32(data), flags))
        self.file.write(data)
        self.data_bytes += len(data)
        self.rows.append(row)
        self.names.append(member)
        self.source_bytes += nsrc
        self.reencoded += flags & REENCODED

    def close(self) -> None:
        self.file.close()

    def finish(self, labels: np.ndarray, meta: dict[str, Any]) -> None:
        """Write the index, the labels of its rows (``labels`` of every source row), the names
        and ``meta.json`` (``meta`` plus this part's counts)."""
        self.file.close()
        np.save(self.root / "index.npy", np.asarray(self.index, np.int64).reshape(-1, 6))
        np.save(self.root / "labels.npy", labels[np.asarray(self.rows, np.int64)])
        (self.root / "names.json").write_text(json.dumps(self.names) + "\n")
        meta = dict(
            meta,
            count=len(self.index),
            data_bytes=self.data_bytes,
            source_bytes=self.source_bytes,
            reencoded=self.reencoded,
        )
        (self.root / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def pack_jpeg(
    src: str | os.PathLike[str] | ImageStore,
    dst: str | os.PathLike[str],
    *,
    channels: int = 3,
    quality: int = DEFAULT_QUALITY,
    max_side: int | None = DEFAULT_MAX_SIDE,
    on_error: str = "raise",
    threads: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
    shard_size: int | None = None,
) -> Path:
    """Write ``src`` as a compressed (JPEG) store at ``dst``, atomically, one image at a time.

    Args:
        src: a data-set spec or an :class:`ImageStore`. ``folder:DIR`` keeps each JPEG file's
            bytes; other sources are re-encoded from their pixels.
        dst: the store directory to create; it must not exist unless ``overwrite``.
        channels: 3 (RGB) or 1 (grey): what the store decodes to.
        quality: JPEG quality (1-95) of the images that are re-encoded.
        max_side: images with a longer side above it are resized to it and re-encoded; ``None``
            keeps every size.
        on_error: ``"skip"`` leaves out unreadable files with a warning; ``"raise"`` stops.
        threads: threads that read, check and re-encode (0: one per core); at most twice as
            many images as threads are in flight, so memory stays bounded.
        overwrite: replace an existing packed store (sharded or not) at ``dst``.
        progress: show a progress bar (``None``: only when stderr is a terminal).
        shard_size: write a sharded store (:mod:`pyxfer.data.shards`): ``dst/shard-00000/``,
            ... compressed stores of at most this many images each (a shard loses the images
            ``on_error="skip"`` leaves out), with ``dst/shards.json`` and ``dst/labels.npy``.

    Returns:
        the path of the store.
    """
    from pyxfer.data.shards import check_destination, packing

    check_options(None, channels, "crop", on_error)
    if channels is None:
        channels = 3
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"quality: expected an int in [1, 95], received {quality!r}")
    if max_side is not None and (
        isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1
    ):
        raise ValueError(f"max_side: expected a positive int or None, received {max_side!r}")
    marker = check_destination(dst, overwrite, shard_size)
    items, labels, class_names, name, source = _source_items(src)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if n == 0:
        raise ValueError(f"src: {source or src!s} holds no images to pack")
    workers = resolve_threads(threads)
    budget = PixelBudget(2 * max_image_pixels())
    pool = ThreadPoolExecutor(max_workers=workers)
    bar = progress_bar(n, f"packing {name or Path(dst).name}", progress)
    window: list[tuple[int, str, Future]] = []
    info = {"packed_from": str(src) if not isinstance(src, ImageStore) else source, "files": n}
    meta = {
        "format": PACKED_FORMAT,
        "version": JPEG_VERSION,
        "storage": STORAGE,
        "channels": channels,
        "quality": quality,
        "max_side": max_side,
        "name": name,
        "source": source,
        "class_names": [str(c) for c in class_names],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }

    def work(item: Any) -> tuple[bytes, int, int, int, int]:
        return _prepare(item, channels, quality, max_side, budget)

    parts: list[_PartWriter] = []
    try:
        with packing(dst, n, shard_size, overwrite=overwrite, marker=marker) as out:
            # the images come back in source order: one part (shard) is open at a time
            parts.append(_PartWriter(out.dirs[0]))

            def drain_one() -> None:
                i, member, fut = window.pop(0)
                while out.shard_of(i) >= len(parts):
                    parts[-1].close()
                    parts.append(_PartWriter(out.dirs[len(parts)]))
                try:
                    data, h, w, nsrc, flags = fut.result()
                except Exception as exc:
                    err = ImageDecodeError(member, f"{type(exc).__name__}: {exc}")
                    if on_error == "raise":
                        raise err from exc
                    warnings.warn(f"skipping unreadable image: {err}", stacklevel=4)
                else:
                    parts[-1].add(i, member, data, h, w, nsrc, flags)
                bar.update(1)

            for i, (member, item) in enumerate(items()):
                window.append((i, member, pool.submit(work, item)))
                if len(window) >= 2 * workers:
                    drain_one()
            while window:
                drain_one()
            while len(parts) < len(out.dirs):  # trailing shards whose images were all skipped
                parts[-1].close()
                parts.append(_PartWriter(out.dirs[len(parts)]))
            kept = sum(len(p.index) for p in parts)
            if not kept:
                raise ValueError(f"src: none of the {n} images of {source or src!s} could be read")
            for k, part in enumerate(parts):
                part.finish(labels, dict(meta, info=out.part_info(info, k, n - kept)))
            total = {
                "quality": quality,
                "max_side": max_side,
                "source_bytes": sum(p.source_bytes for p in parts),
                "reencoded": sum(p.reencoded for p in parts),
            }
            out.finish(
                class_names, name=name, source=source, info=dict(info, **total), skipped=n - kept
            )
    finally:
        for part in parts:
            part.close()
        for _, _, fut in window:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return Path(dst)


# -- reading ----------------------------------------------------------------------------------
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A decode pool of ``threads`` workers, shared by the stores of this process."""
    n = resolve_threads(threads)
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="pyxfer-jpeg")
        return _POOLS[n]


def _pixels(img: Image.Image) -> np.ndarray:
    """The (H, W, C) uint8 pixels of a loaded L or RGB image (read-only, as ``np.asarray``).

    Pillow keeps RGB as 4 bytes a pixel, so some pass must pack it. ``np.asarray(img)`` packs
    it in 64 KiB pieces and joins them (a second copy, both under the GIL); here Pillow's raw
    encoder packs the whole image in one call into the bytes the array wraps.
    """
    w, h = img.size
    c = 1 if img.mode == "L" else 3
    enc = Image._getencoder(img.mode, "raw", img.mode)
    try:
        enc.setimage(img.im, (0, 0, w, h))
        _, status, data = enc.encode(w * h * c)
    finally:
        enc.cleanup()
    if status != 1 or len(data) != w * h * c:  # not done in one call: the documented way
        return np.asarray(img, dtype=np.uint8).reshape(h, w, c)
    return np.frombuffer(data, np.uint8).reshape(h, w, c)


def is_jpeg_store(root: str | os.PathLike[str]) -> bool:
    """True when ``root/meta.json`` describes a compressed store."""
    try:
        meta = json.loads((Path(root) / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("storage") == STORAGE


def _fail(root: Path, reason: str) -> ValueError:
    return ValueError(f"compressed store {str(root)!r}: {reason}")


def read_jpeg_store(
    path: str | os.PathLike[str], *, mmap: bool = True, on_error: str = "raise"
) -> JpegStore:
    """Open a compressed store directory written by :func:`pack_jpeg` (see the module doc)."""
    root = Path(path)
    missing = [f for f in _FILES if not (root / f).is_file()]
    if missing:
        raise _fail(root, f"expected {', '.join(_FILES)}, missing {', '.join(missing)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', received {on_error!r}")
    meta = json.loads((root / "meta.json").read_text())
    if (
        meta.get("format") != PACKED_FORMAT
        or meta.get("storage") != STORAGE
        or int(meta.get("version", 0)) > JPEG_VERSION
    ):
        raise _fail(
            root,
            f"expected format {PACKED_FORMAT!r} storage {STORAGE!r} version <= {JPEG_VERSION}, "
            f"received {meta.get('format')!r} {meta.get('storage')!r} {meta.get('version')!r}",
        )
    index = np.load(root / "index.npy", allow_pickle=False)
    labels = np.load(root / "labels.npy", allow_pickle=False)
    names = json.loads((root / "names.json").read_text())
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise _fail(root, "names.json: expected a list of file names")
    n = int(meta.get("count", -1))
    if index.dtype != np.int64 or index.ndim != 2 or index.shape[1] != 6:
        raise _fail(root, f"index.npy: expected int64 (N, 6), received {index.dtype} {index.shape}")
    if index.shape[0] != n or labels.shape != (n,) or len(names) != n:
        raise _fail(
            root,
            f"meta.json counts {n} images, index.npy has {index.shape[0]}, labels.npy "
            f"{labels.shape[0] if labels.ndim == 1 else labels.shape}, names.json {len(names)}",
        )
    size = (root / "data.bin").stat().st_size
    off, nbytes, h, w, crc = (index[:, k] for k in range(5))
    ends = np.concatenate([[0], np.cumsum(nbytes)]) if n else np.zeros(1, np.int64)
    bad = np.flatnonzero((nbytes < 4) | (off != ends[:-1]))
    if bad.size or int(ends[-1]) != size or size != int(meta.get("data_bytes", -1)):
        where = f"image {int(bad[0])} ({names[int(bad[0])]})" if bad.size else "the index"
        raise _fail(
            root,
            f"index.npy and data.bin disagree at {where}: expected contiguous members adding up "
            f"to data.bin's {size} bytes (meta.json: {meta.get('data_bytes')}), index adds up to "
            f"{int(ends[-1])}",
        )
    bad = np.flatnonzero(
        (h < 1)
        | (w < 1)
        | (h > _MAX_SIDE_LIMIT)
        | (w > _MAX_SIDE_LIMIT)
        | (crc < 0)
        | (crc > 0xFFFFFFFF)
    )
    if bad.size:
        i = int(bad[0])
        raise _fail(root, f"index.npy: image {i} ({names[i]}) has a bad size {h[i]}x{w[i]}")
    over = np.flatnonzero(h * w > max_image_pixels())
    if over.size:
        i = int(over[0])
        raise _fail(root, f"image {i} ({names[i]}): {_too_large(int(h[i] * w[i]), (w[i], h[i]))}")
    if meta.get("channels") not in (1, 3):
        raise _fail(root, f"meta.json: expected channels 1 or 3, received {meta.get('channels')!r}")
    if size:
        data = (
            np.memmap(root / "data.bin", np.uint8, "r")
            if mmap
            else np.fromfile(root / "data.bin", np.uint8)
        )
    else:
        data = np.zeros(0, np.uint8)
    return JpegStore(root, data, index, labels, names, meta, on_error=on_error)


class JpegStore(ImageStore):
    """A compressed store opened from disk: a ragged :class:`ImageStore` decoded on demand.

    ``store[i]`` and ``store.batch(idx)`` decode whole images; :meth:`decode_views` (used by
    :class:`~pyxfer.engine.FusedLoader`) decodes at the scale the views need. Subsets share the
    memory-mapped bytes. ``on_error="skip"`` lets :meth:`decode_views` drop corrupt images
    (with a warning) instead of raising.
    """

    def __init__(
        self,
        root: Path,
        data: np.ndarray,
        index: np.ndarray,
        labels: np.ndarray,
        names: Sequence[str],
        meta: dict[str, Any],
        *,
        on_error: str = "raise",
    ) -> None:
        super().__init__(
            [],
            None,
            meta.get("class_names") or [],
            name=meta.get("name", ""),
            source=meta.get("source", ""),
            info=dict(meta.get("info") or {}),
        )
        self._ragged = None
        self._channels = int(meta["channels"])
        self._root = root
        self._data = data
        self._table = index
        self._names = list(names)
        self._rows = np.arange(len(index), dtype=np.int64)
        self._meta = meta
        self.on_error = on_error
        lab = np.asarray(labels, np.int64)
        if lab.size and (lab.min() < -1 or lab.max() >= len(self.class_names)):
            raise _fail(root, f"labels.npy: expected values in [-1, {len(self.class_names)})")
        self._labels = lab
        self.info.update(
            packed_path=str(root),
            packed_created=meta.get("created", ""),
            storage=STORAGE,
            quality=meta.get("quality"),
            max_side=meta.get("max_side"),
        )

    # -- shape ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def image_sizes(self) -> np.ndarray:
        """(N, 2) int64 (H, W) of the original (encoded) images, from the index."""
        return self._table[self._rows][:, 2:4].copy()

    def original_sizes(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(len(indices), 2) int64 (H, W) of the images at ``indices``, from the index."""
        return self._table[self._rows[self._check_indices(indices)]][:, 2:4].copy()

    @property
    def ragged_images(self) -> list[np.ndarray]:
        """Every image decoded (all of them in memory: prefer ``store[i]`` or a loader)."""
        return [self.image(i) for i in range(len(self))]

    def disk_bytes(self) -> int:
        """Bytes of the store's files on disk."""
        return sum((self._root / f).stat().st_size for f in _FILES)

    # -- decoding ---------------------------------------------------------------------------
    def _decode_row(self, row: int, scale: int = 1) -> np.ndarray:
        """Image at store row ``row`` decoded at 1/``scale`` (H, W, C) uint8; checked."""
        off, nbytes, h, w, crc, flags = (int(v) for v in self._table[row])
        name = self._names[row]

        def corrupt(reason: str) -> StoreCorruptError:
            return StoreCorruptError(str(self._root), row, name, reason)

        buf = self._data[off : off + nbytes]
        if len(buf) != nbytes:
            raise corrupt(f"data.bin ends before its {nbytes} bytes at offset {off}")
        raw = buf.tobytes()
        if zlib.crc32(raw) != crc:
            raise corrupt("its bytes do not match the CRC-32 in index.npy")
        try:
            with Image.open(io.BytesIO(raw), formats=("JPEG",)) as img:
                if img.size != (w, h):
                    raise corrupt(f"its header says {img.width}x{img.height}, index.npy {w}x{h}")
                if img.mode not in ("L", "RGB"):
                    raise corrupt(f"mode {img.mode}, expected L or RGB")
                mode = "L" if self._channels == 1 else "RGB"
                # the scale, and for a grey store libjpeg's own luma output (no colour pass)
                img.draft(mode, (max(1, w // scale), max(1, h // scale)))
                want = (-(-w // scale), -(-h // scale))
                if img.size != want:
                    raise corrupt(f"decodes to {img.size} at 1/{scale}, expected {want}")
                img.load()
                arr = _pixels(img if img.mode == mode else img.convert(mode))
        except StoreCorruptError:
            raise
        except Exception as exc:
            raise corrupt(f"{type(exc).__name__}: {exc}") from exc
        if arr.shape[:2] != (want[1], want[0]):
            raise corrupt(f"decoded to {arr.shape[:2]}, expected {(want[1], want[0])}")
        if not flags & GREY_END and ends_in_fill(arr):
            raise corrupt(
                "its data ends before the rows its header claims (libjpeg filled the rest with "
                "grey)"
            )
        return arr

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` decoded in full, (H, W, C) uint8."""
        return self._decode_row(self._row(int(i)))

    def batch(
        self, indices: Sequence[int] | np.ndarray, min_side: int | None = None, threads: int = 0
    ) -> list[np.ndarray]:
        """The images at ``indices`` decoded in the decode threads, as a list: in full, or with
        ``min_side`` at the smallest DCT scale whose shorter side is still at least it (what
        resizing the shorter side to ``min_side`` needs, as eval preprocessing does)."""
        rows = self._rows[self._check_indices(indices)]
        scales = np.ones(len(rows), np.int64)
        if min_side is not None:
            short = self._table[rows][:, 2:4].min(axis=1)
            for s in SCALES[:-1]:
                scales[(short >= s * min_side) & (scales == 1)] = s
        return list(_pool(threads).map(self._decode_row, rows, scales))

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a store of {n} images")
        return int(self._rows[i % n])

    def decode_views(
        self,
        indices: Sequence[int] | np.ndarray,
        params: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        threads: int = 0,
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Decode the images at ``indices`` just large enough for their views.

        Args:
            indices: N store indices.
            params: float32 (N * V, P) view parameters sampled on the original sizes
                (:meth:`original_sizes`); row ``n * V + v`` is view v of image n.
            sizes: the output (h, w) of each of the V views.
            threads: decode threads (0: one per core).

        Returns:
            (images, params, kept): the decoded images, the parameter rows with the crop boxes
            mapped onto them, and the positions in ``indices`` they belong to (all unless
            ``on_error="skip"`` dropped corrupt images).
        """
        from pyxfer.ops.augment import COL

        idx = self._check_indices(indices)
        rows = self._rows[idx]
        v = len(sizes)
        prm = np.array(params, np.float32, copy=True)
        if prm.ndim != 2 or prm.shape[0] != len(idx) * v:
            raise ValueError(
                f"params: expected {len(idx) * v} rows ({len(idx)} images x {v} views), received "
                f"shape {prm.shape}"
            )
        prm = prm.reshape(len(idx), v, prm.shape[1])
        out_h = np.asarray([s[0] for s in sizes], np.float64)
        out_w = np.asarray([s[1] for s in sizes], np.float64)
        top, left = prm[..., COL["top"]], prm[..., COL["left"]]
        ch, cw = prm[..., COL["crop_h"]], prm[..., COL["crop_w"]]
        scale = np.ones(len(idx), np.int64)
        for s in SCALES[:-1]:  # the largest scale at which every view keeps its output pixels
            ok = ((ch >= s * out_h) & (cw >= s * out_w)).all(axis=1) & (scale == 1)
            scale[ok] = s
        sizes_hw = self._table[rows][:, 2:4]
        dh = -(-sizes_hw[:, 0] // scale)
        dw = -(-sizes_hw[:, 1] // scale)
        sc = scale[:, None].astype(np.float64)

        def edges(lo: np.ndarray, extent: np.ndarray, dim: np.ndarray) -> tuple[Any, Any]:
            a = np.floor(lo / sc + 0.5)
            b = np.floor((lo + extent) / sc + 0.5)
            b = np.minimum(np.maximum(b, a + 1), dim[:, None])
            a = np.minimum(a, b - 1)
            return a, b - a

        prm[..., COL["top"]], prm[..., COL["crop_h"]] = edges(top, ch, dh)
        prm[..., COL["left"]], prm[..., COL["crop_w"]] = edges(left, cw, dw)
        futures = [
            _pool(threads).submit(self._decode_row, int(r), int(s))
            for r, s in zip(rows, scale, strict=True)
        ]
        images: list[np.ndarray] = []
        kept: list[int] = []
        error: BaseException | None = None
        for k, fut in enumerate(futures):
            try:
                images.append(fut.result())
                kept.append(k)
            except StoreCorruptError as exc:
                if self.on_error == "raise":
                    error = error or exc
                else:
                    warnings.warn(f"skipping corrupt image: {exc}", stacklevel=2)
        if error is not None:
            raise error
        keep = np.asarray(kept, np.int64)
        return images, np.ascontiguousarray(prm[keep].reshape(-1, prm.shape[2])), keep

    # -- subsets and pickling ---------------------------------------------------------------
    def subset(self, indices: Sequence[int] | np.ndarray) -> JpegStore:
        idx = self._check_indices(indices)
        out = object.__new__(JpegStore)
        out.__dict__.update(self.__dict__)
        out.info = dict(self.info)
        out.class_names = list(self.class_names)
        out._labels = self._labels[idx]
        out._rows = self._rows[idx]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self._data, np.memmap):
            state["_data"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._data is None:
            self._data = np.memmap(self._root / "data.bin", np.uint8, "r")

    # -- description ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(self.storage_info())
        return d

    def storage_info(self) -> dict[str, Any]:
        """Format, size on disk and decode settings (``pyxfer data``, the report)."""
        return {
            "storage": STORAGE,
            "disk_bytes": self.disk_bytes(),
            "source_bytes": int(self._meta.get("source_bytes", 0)),
            "quality": self._meta.get("quality"),
            "max_side": self._meta.get("max_side"),
            "reencoded": int(self._meta.get("reencoded", 0)),
            "decode": decode_text(),
        }

    def __repr__(self) -> str:
        return (
            f"JpegStore(name={self.name!r}, n={len(self)}, C={self.channels}, "
            f"classes={self.num_classes}, path={str(self._root)!r})"
        )


def decode_text() -> str:
    """How a compressed store is decoded here: the library and the DCT scaling."""
    from PIL import features

    turbo = features.check_feature("libjpeg_turbo")
    lib = f"libjpeg-turbo {features.version('libjpeg_turbo')}" if turbo else "libjpeg"
    return f"Pillow {Image.__version__} ({lib}), DCT scaling 1/1-1/8 to each batch's crops"


def storage_text(d: dict[str, Any]) -> str:
    """One line on a compressed store from :meth:`JpegStore.storage_info` (or describe())."""
    mib = d["disk_bytes"] / 2**20
    ratio = (
        f", {d['disk_bytes'] / d['source_bytes']:.2f}x the source files"
        if d.get("source_bytes")
        else ""
    )
    kept = (
        f"re-encoded {d['reencoded']} at quality {d['quality']}"
        if d.get("reencoded")
        else ("every JPEG kept as it was")
    )
    side = f", max side {d['max_side']}" if d.get("max_side") else ""
    return f"JPEG, {mib:,.1f} MiB on disk{ratio}; {kept}{side}; decoded with {d['decode']}"


__all__ = [
    "JpegStore",
    "StoreCorruptError",
    "is_jpeg_store",
    "pack_jpeg",
    "read_jpeg_store",
    "storage_text",
]
