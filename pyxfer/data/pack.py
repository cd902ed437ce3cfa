"""Pack any supported source into a fixed-size, memory-mappable store directory.

``pack("folder:photos/", "photos64", size=64)`` decodes, resizes to 64×64 (antialiased; the
``fit`` rules of :mod:`pyxfer.data.decode`) and writes ``photos64/{images.npy, labels.npy,
meta.json}`` atomically: nothing appears at the destination unless the whole pack succeeds.
Sources registered with ``resizes=True`` (``folder``, ``tar``) decode straight to the target
size; any other store (dense of another size, or ragged) is resized image by image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.data.decode import check_options, progress_bar, resize_array, resolve_threads
from pyxfer.data.store import PACKED_MARKER, ImageStore, write_packed
from pyxfer.fileio import check_replaceable

_CHUNK = 256


def _load_source(
    src: str | os.PathLike[str] | ImageStore,
    hw: tuple[int, int],
    channels: int | None,
    fit: str,
    on_error: str,
    threads: int,
    progress: bool | None,
) -> ImageStore:
    if isinstance(src, ImageStore):
        return src
    from pyxfer.data import load_dataset, parse_spec
    from pyxfer.pluginmanager import registry

    name, _ = parse_spec(os.fspath(src))
    options: dict[str, Any] = {}
    if registry("datasets").get(name).metadata.get("resizes"):
        options = {
            "size": hw,
            "fit": fit,
            "on_error": on_error,
            "threads": threads,
            "progress": progress,
        }
        if channels is not None:
            options["channels"] = channels
    elif on_error != "raise":
        raise ValueError(f"on_error: source {name!r} decodes nothing; only 'raise' applies")
    return load_dataset(src, **options)


def pack(
    src: str | os.PathLike[str] | ImageStore,
    dst: str | os.PathLike[str],
    size: int | tuple[int, int],
    channels: int | None = None,
    on_error: str = "raise",
    threads: int = 0,
    *,
    fit: str = "crop",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write ``src`` as a packed store of S×S images at ``dst`` (atomically).

    Args:
        src: a data-set spec (``"folder:DIR"``, ``"tar:FILE"``, ``"idx:DIR"``, ``"digits"``,
            ``"packed:DIR"``, ...) or an :class:`ImageStore`.
        dst: the directory to create; it must not exist unless ``overwrite``.
        size: S for S×S, or (H, W).
        channels: 1 or 3 to convert; ``None`` keeps the source's channels (RGB for files).
        on_error: ``"skip"`` leaves out unreadable files with a warning; ``"raise"`` stops.
        threads: decode/resize threads (0: one per core).
        fit: ``"crop"`` (centre crop to the target aspect, then resize) or ``"stretch"``.
        overwrite: replace an existing ``dst`` once the new store is complete; only a packed
            store (a directory whose ``meta.json`` pyxfer wrote) is ever replaced.
        progress: show a progress bar (``None``: only when stderr is a terminal).

    Returns:
        the path of the packed store.
    """
    hw = check_options(size, channels, fit, on_error)
    if hw is None:
        raise ValueError("size: expected a positive int S (S×S) or (H, W), received None")
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ValueError(f"dst: {str(dst)!r} already exists; choose a new path or overwrite it")
    check_replaceable(dst, PACKED_MARKER, "a packed store")  # never the source photos
    store = _load_source(src, hw, channels, fit, on_error, threads, progress)
    out_c = store.channels if channels is None else channels
    n = len(store)
    if n == 0:
        raise ValueError(f"src: {store.source or src!s} holds no images to pack")
    pool = ThreadPoolExecutor(max_workers=resolve_threads(threads))
    bar = progress_bar(n, f"packing {store.name or dst.name}", progress)

    def resize_one(i: int) -> np.ndarray:
        return resize_array(store.image(i), hw, out_c, fit)

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, n, _CHUNK):
            rows = range(start, min(start + _CHUNK, n))
            if store.is_dense and store.image_shape == (hw[0], hw[1], out_c):
                yield np.asarray(store.batch(np.asarray(rows)))
            else:
                yield np.stack(list(pool.map(resize_one, rows)))

    info = dict(store.info)
    info.update(
        packed_from=str(src) if not isinstance(src, ImageStore) else store.source,
        size=list(hw),
        fit=fit,
    )
    try:
        return write_packed(
            dst,
            (n, hw[0], hw[1], out_c),
            chunks(),
            store.labels,
            store.class_names,
            name=store.name,
            source=store.source,
            info=info,
            overwrite=overwrite,
            on_chunk=bar.update,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
