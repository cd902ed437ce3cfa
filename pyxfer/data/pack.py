"""Pack any supported source into a fixed-size, memory-mappable store directory.

``pack("folder:photos/", "photos64", size=64)`` decodes, resizes to 64×64 (antialiased; the
``fit`` rules of :mod:`pyxfer.data.decode`) and writes ``photos64/{images.npy, labels.npy,
meta.json}`` atomically: nothing appears at the destination unless the whole pack succeeds.
The source is read as a :mod:`stream <pyxfer.data.stream>`: one chunk of images is decoded,
written at its rows and dropped, so memory stays bounded by the chunk in flight whatever the
size of the data set. ``shard_size=N`` writes a directory of stores of N images each instead
(:mod:`pyxfer.data.shards`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pyxfer.data.decode import check_options, progress_bar
from pyxfer.data.shards import check_destination, packing
from pyxfer.data.store import ImageStore, ImagesWriter, write_packed_meta
from pyxfer.data.stream import Stream, open_stream


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
    shard_size: int | None = None,
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
        overwrite: replace an existing ``dst`` once the new store is complete; only a store
            pyxfer wrote (packed or sharded) is ever replaced.
        progress: show a progress bar (``None``: only when stderr is a terminal).
        shard_size: write a sharded store: ``dst/shard-00000/``, ... of at most this many
            images each (a shard loses the images ``on_error="skip"`` leaves out), with
            ``dst/shards.json`` and ``dst/labels.npy``; read it as ``packed:DST`` too.

    Returns:
        the path of the packed store.
    """
    hw = check_options(size, channels, fit, on_error)
    if hw is None:
        raise ValueError("size: expected a positive int S (S×S) or (H, W), received None")
    marker = check_destination(dst, overwrite, shard_size)
    stream = open_stream(src, hw, channels, fit, on_error, threads)
    n = stream.count
    if n == 0:
        raise ValueError(f"src: {stream.source or src!s} holds no images to pack")
    info = dict(stream.info)
    info.update(
        packed_from=str(src) if not isinstance(src, ImageStore) else stream.source,
        size=list(hw),
        fit=fit,
    )
    bar = progress_bar(n, f"packing {stream.name or Path(dst).name}", progress)
    try:
        with packing(dst, n, shard_size, overwrite=overwrite, marker=marker) as out:
            kept = _write_stream(stream, out.dirs, out.bounds, (*hw, stream.channels), bar.update)
            skipped = n - sum(len(k) for k in kept)
            for k, (root, rows) in enumerate(zip(out.dirs, kept, strict=True)):
                write_packed_meta(
                    root,
                    stream.labels[out.bounds[k] + rows],
                    stream.class_names,
                    name=stream.name,
                    source=stream.source,
                    info=out.part_info(info, k, skipped),
                )
            out.finish(
                stream.class_names,
                name=stream.name,
                source=stream.source,
                info=info,
                skipped=skipped,
            )
    finally:
        bar.close()
    return Path(dst)


def _write_stream(
    stream: Stream,
    dirs: list[Path],
    bounds: list[int],
    image_shape: tuple[int, int, int],
    on_rows: Callable[[int], object],
) -> list[np.ndarray]:
    """Write the stream's chunks into one ``images.npy`` per directory (rows ``bounds[k]`` to
    ``bounds[k+1]`` into ``dirs[k]``); returns the rows kept in each, relative to its start."""
    edges = np.asarray(bounds, np.int64)
    writers = []
    for root, a, b in zip(dirs, bounds[:-1], bounds[1:], strict=True):
        root.mkdir(parents=True, exist_ok=True)
        writers.append(ImagesWriter(root / "images.npy", b - a, image_shape))
    for rows, images in stream.chunks():
        shard = np.searchsorted(edges, rows, side="right") - 1
        for k in np.unique(shard):
            mine = shard == k
            writers[k].put(rows[mine] - edges[k], images[mine])
        on_rows(len(rows))
    return [w.finish() for w in writers]
