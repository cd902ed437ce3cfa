"""Sources read a chunk at a time, for writers whose memory must not grow with the data set.

:func:`open_stream` lists a source (file names, labels, class names: small) and hands out its
images in chunks of ``chunk`` rows, decoded and resized to the target size, each tagged with
its row in the listing. ``pyxfer pack`` writes each chunk and drops it, so packing holds the
chunk in flight (plus the images being decoded), whatever the number of images:

- ``folder:DIR`` decodes the listed files chunk by chunk, in order;
- ``tar:ARCHIVE`` lists the members in one pass over the archive (headers only) and decodes
  them in a second pass, in archive order; each image keeps its row in the sorted listing
  that ``tar:`` loading gives, so the written store has the same order;
- any other source (``idx``, ``digits``, ``packed``, a plugin's, an ``ImageStore``) is opened
  as a store, read and resized chunk by chunk.

Rows an unreadable file leaves out (``on_error="skip"``) are simply absent from the chunks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.data.decode import decode_many, resize_array, resolve_threads, source_name
from pyxfer.data.store import ImageStore

#: rows decoded and written at once
CHUNK = 256

Chunks = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass
class Stream:
    """A listed source whose images come in chunks.

    Attributes:
        count: rows listed (the most images the source can give).
        labels: int64 (count,) label of each row (-1 unlabelled).
        class_names: one name per class id.
        channels: C of every image the chunks hold.
        name, source, info: the store's name, provenance and extra information.
        chunks: a callable giving the chunks ``(rows int64 (B,), images uint8 (B, H, W, C))``,
            every listed row at most once (in any order).
    """

    count: int
    labels: np.ndarray
    class_names: list[str]
    channels: int
    name: str
    source: str
    chunks: Callable[[], Chunks]
    info: dict[str, Any] = field(default_factory=dict)


def _decoded(
    sources: list[Any],
    names: list[str],
    rows: np.ndarray,
    hw: tuple[int, int],
    channels: int,
    fit: str,
    threads: int,
    on_error: str,
) -> tuple[np.ndarray, np.ndarray]:
    images, kept = decode_many(
        sources,
        names,
        hw=hw,
        channels=channels,
        fit=fit,
        threads=threads,
        on_error=on_error,
        progress=False,
    )
    if not images:
        return rows[:0], np.zeros((0, hw[0], hw[1], channels), np.uint8)
    return rows[kept], np.stack(images)


def _folder(
    argument: str,
    hw: tuple[int, int],
    channels: int,
    fit: str,
    on_error: str,
    threads: int,
    chunk: int,
    **options: Any,
) -> Stream:
    from pyxfer.data.folder import scan_folder

    unlabelled = bool(options.pop("unlabelled", False))
    if options:
        raise ValueError(
            f"options: folder streaming takes only unlabelled, received {sorted(options)}"
        )
    paths, labels, class_names = scan_folder(argument, unlabelled=unlabelled)
    if not paths:
        raise ValueError(f"folder: no image files found under {argument!r}")
    files = [str(p) for p in paths]

    def chunks() -> Chunks:
        for start in range(0, len(files), chunk):
            part = files[start : start + chunk]
            rows = np.arange(start, start + len(part), dtype=np.int64)
            yield _decoded(part, part, rows, hw, channels, fit, threads, on_error)

    return Stream(
        len(files),
        labels,
        class_names,
        channels,
        source_name(argument),
        f"folder:{argument}",
        chunks,
        {"reader": "folder", "files": len(files)},
    )


def _tar(
    argument: str,
    hw: tuple[int, int],
    channels: int,
    fit: str,
    on_error: str,
    threads: int,
    chunk: int,
    **options: Any,
) -> Stream:
    from pyxfer.data.tar import MAX_MEMBER_BYTES, label_members, walk_tar

    root = options.pop("root", None)
    unlabelled = bool(options.pop("unlabelled", False))
    max_member_bytes = int(options.pop("max_member_bytes", MAX_MEMBER_BYTES))
    options.pop("max_total_bytes", None)  # nothing is kept: no total to bound
    if options:
        raise ValueError(f"options: tar streaming takes no {sorted(options)}")
    path = Path(argument)
    if not path.is_file():
        raise FileNotFoundError(f"tar: no file at {str(path)!r}")
    walk = dict(root=root, max_member_bytes=max_member_bytes, max_total_bytes=None)
    parts = [p for p, _ in walk_tar(path, read=False, **walk)]
    if not parts:
        raise ValueError(f"tar: no image members found in {str(path)!r}")
    order, labels, class_names = label_members(parts, path, unlabelled)
    row_of: dict[tuple[str, ...], list[int]] = {}  # a name twice: both, in archive order
    for r, i in enumerate(order.tolist()):
        row_of.setdefault(parts[i], []).append(r)

    def chunks() -> Chunks:
        pending: list[tuple[int, bytes, str]] = []

        def flush() -> tuple[np.ndarray, np.ndarray]:
            rows = np.asarray([r for r, _, _ in pending], np.int64)
            out = _decoded(
                [b for _, b, _ in pending],
                [n for _, _, n in pending],
                rows,
                hw,
                channels,
                fit,
                threads,
                on_error,
            )
            pending.clear()
            return out

        for p, data in walk_tar(path, read=True, **walk):
            rows = row_of.get(p)
            if not rows or data is None:
                continue
            r = rows.pop(0)
            if not rows:
                del row_of[p]
            pending.append((r, data, f"{path}/{'/'.join(p)}"))
            if len(pending) == chunk:
                yield flush()
        if pending:
            yield flush()
        if row_of:
            raise ValueError(
                f"tar: {str(path)!r} changed while it was read ({len(row_of)} listed members "
                "were not found again)"
            )

    info = {"reader": "tar", "files": len(order)}
    if root:
        info["root"] = root
    return Stream(
        len(order), labels, class_names, channels, source_name(path), f"tar:{path}", chunks, info
    )


def _store(
    store: ImageStore, hw: tuple[int, int], channels: int, fit: str, threads: int, chunk: int
) -> Stream:
    n = len(store)
    same = store.is_dense and store.image_shape == (hw[0], hw[1], channels)

    def chunks() -> Chunks:
        with ThreadPoolExecutor(max_workers=resolve_threads(threads)) as pool:
            for start in range(0, n, chunk):
                rows = np.arange(start, min(start + chunk, n), dtype=np.int64)
                if same:
                    yield rows, np.asarray(store.batch(rows))
                else:
                    one = lambda i: resize_array(store.image(int(i)), hw, channels, fit)  # noqa: E731
                    yield rows, np.stack(list(pool.map(one, rows)))

    return Stream(
        n,
        np.asarray(store.labels, np.int64),
        list(store.class_names),
        channels,
        store.name,
        store.source,
        chunks,
        dict(store.info),
    )


_STREAMING: dict[str, Callable[..., Stream]] = {"folder": _folder, "tar": _tar}


def open_stream(
    src: str | os.PathLike[str] | ImageStore,
    hw: tuple[int, int],
    channels: int | None,
    fit: str = "crop",
    on_error: str = "raise",
    threads: int = 0,
    *,
    chunk: int = CHUNK,
    **options: Any,
) -> Stream:
    """List ``src`` and return its :class:`Stream` of images resized to ``hw``.

    Args:
        src: a data-set spec or an :class:`ImageStore`.
        hw: the target (height, width).
        channels: 1 or 3 to convert; ``None`` keeps the source's (RGB for image files).
        fit, on_error, threads: as for :func:`pyxfer.data.folder.read_folder`.
        chunk: rows per chunk.
        options: the source's own options (``unlabelled``, ``root``, ...).
    """
    if isinstance(src, ImageStore):
        if options:
            raise ValueError(f"options: an ImageStore takes no options, received {sorted(options)}")
        return _store(src, hw, src.channels if channels is None else channels, fit, threads, chunk)
    from pyxfer.data import load_dataset, parse_spec
    from pyxfer.pluginmanager import registry

    spec = os.fspath(src)
    name, argument = parse_spec(spec)
    if name in _STREAMING and argument:
        return _STREAMING[name](
            argument,
            hw,
            3 if channels is None else channels,
            fit,
            on_error,
            threads,
            chunk,
            **options,
        )
    if registry("datasets").get(name).metadata.get("resizes"):  # a plugin's decoding source
        options.update(size=hw, fit=fit, on_error=on_error, threads=threads, progress=False)
        if channels is not None:
            options["channels"] = channels
    elif on_error != "raise":
        raise ValueError(f"on_error: source {name!r} decodes nothing; only 'raise' applies")
    store = load_dataset(spec, **options)
    return _store(store, hw, store.channels if channels is None else channels, fit, threads, chunk)
