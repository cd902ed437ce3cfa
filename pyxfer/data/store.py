"""``ImageStore``: uint8 images with integer labels, dense (N×H×W×C) or ragged (a list).

A *dense* store holds one ``uint8`` array of shape (N, H, W, C), in memory or memory-mapped from
a packed directory; a *ragged* store holds a list of N ``uint8`` arrays of shape (H_i, W_i, C)
(photos of different sizes). Both answer ``store[i] -> (image HWC uint8, label int)``. Labels
are ``int64`` class ids, ``-1`` for an unlabelled image. Channels C are 1 (grey) or 3 (RGB)
and are the same for every image of a store.

The packed on-disk format is a directory::

    images.npy   uint8 (N, H, W, C), opened with np.load(mmap_mode="r")
    labels.npy   int64 (N,), -1 = unlabelled
    meta.json    {"format": "pyxfer.packed", "version": 1, "name", "source", "shape",
                  "class_names", "created", "info"}

A compressed store of JPEG bytes (``pyxfer pack --format jpeg``) is a directory of the same
format with ``"storage": "jpeg"`` in ``meta.json``; :func:`read_packed` opens it as a
:class:`pyxfer.data.jpegstore.JpegStore`.

Writing is atomic: everything is written into a hidden temporary sibling directory which is
renamed into place at the end; an exception or Ctrl-C on the way leaves nothing at the
destination and no temporary directory behind.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.fileio import atomic_directory

PACKED_FORMAT = "pyxfer.packed"
PACKED_VERSION = 1
#: an existing directory is replaced (overwrite) only if it is a store that pyxfer wrote
PACKED_MARKER = ("meta.json", PACKED_FORMAT)

IndexLike = Sequence[int] | np.ndarray | slice


def check_image(img: Any, where: str) -> np.ndarray:
    """One HWC uint8 image (H×W grey arrays gain a channel axis)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"{where}: expected dtype uint8, received {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(
            f"{where}: expected shape (H, W, C) with C in {{1, 3}}, received {arr.shape}"
        )
    return arr


class ImageStore:
    """Images (uint8, HWC) with int64 labels and class names, dense or ragged.

    Args:
        images: a uint8 array (N, H, W, C) or (N, H, W) for a dense store (a ``np.memmap`` stays
            memory-mapped), or a sequence of N uint8 arrays (H_i, W_i, C) for a ragged store.
        labels: int class ids, shape (N,); ``-1`` marks an unlabelled image; ``None`` means
            all unlabelled.
        class_names: one name per class id; default ``["0", "1", ...]`` up to the largest label.
        name: a short name for the data set (shown by ``pyxfer data``).
        source: where the images came from (a spec, path or archive), for provenance.
        info: extra provenance (reader options, file names), stored in ``meta.json``.

    Examples:
        >>> store = ImageStore(np.zeros((4, 8, 8, 1), np.uint8), [0, 1, 1, -1])
        >>> image, label = store[1]
        >>> image.shape, label, store.num_classes, store.class_counts().tolist()
        ((8, 8, 1), 1, 2, [1, 2])
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        *,
        name: str = "",
        source: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        self._index: np.ndarray | None = None  # dense subsets: rows of self._base
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8:
                raise ValueError(f"images: expected dtype uint8, received {images.dtype}")
            if images.ndim == 3:
                images = images[..., None]
            if images.ndim != 4 or images.shape[3] not in (1, 3):
                raise ValueError(
                    "images: expected a uint8 array of shape (N, H, W, C) with C in {1, 3}, "
                    f"received shape {images.shape}"
                )
            self._base: np.ndarray | None = images
            self._ragged: list[np.ndarray] | None = None
            n = images.shape[0]
            channels = int(images.shape[3])
        else:
            ragged = [check_image(im, f"images[{i}]") for i, im in enumerate(images)]
            chans = {im.shape[2] for im in ragged}
            if len(chans) > 1:
                raise ValueError(
                    f"images: expected one channel count for all images, received {sorted(chans)}"
                )
            self._base = None
            self._ragged = ragged
            n = len(ragged)
            channels = chans.pop() if chans else 3
        self._channels = channels

        if labels is None:
            lab = np.full(n, -1, np.int64)
        else:
            lab = np.asarray(labels)
            if lab.ndim != 1 or lab.shape[0] != n:
                raise ValueError(f"labels: expected shape ({n},), received {lab.shape}")
            if lab.size and not np.issubdtype(lab.dtype, np.integer):
                raise ValueError(f"labels: expected integers, received dtype {lab.dtype}")
            lab = lab.astype(np.int64, copy=False)
            if lab.size and lab.min() < -1:
                raise ValueError(f"labels: expected values >= -1, received {int(lab.min())}")
        if class_names is None:
            top = int(lab.max()) + 1 if lab.size else 0
            class_names = [str(i) for i in range(max(top, 0))]
        self.class_names: list[str] = [str(c) for c in class_names]
        if lab.size and lab.max() >= len(self.class_names):
            raise ValueError(
                f"labels: expected values < {len(self.class_names)} (the number of class names), "
                f"received {int(lab.max())}"
            )
        self._labels = lab
        self.name = name
        self.source = source
        self.info: dict[str, Any] = dict(info or {})

    # -- shape -------------------------------------------------------------------------------
    @property
    def is_dense(self) -> bool:
        """True when every image has the same size and ``images`` is one array."""
        return self._base is not None

    @property
    def channels(self) -> int:
        """C: 1 (grey) or 3 (RGB)."""
        return self._channels

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) of a dense store, ``None`` for a ragged one."""
        if self._base is None:
            return None
        return tuple(int(s) for s in self._base.shape[1:])  # type: ignore[return-value]

    def image_sizes(self) -> np.ndarray:
        """(N, 2) int array of (H, W) per image."""
        if self._base is not None:
            return np.tile(np.asarray(self._base.shape[1:3], np.int64), (len(self), 1))
        assert self._ragged is not None
        return np.asarray([im.shape[:2] for im in self._ragged], np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        if self._base is not None:
            return len(self._index) if self._index is not None else int(self._base.shape[0])
        assert self._ragged is not None
        return len(self._ragged)

    # -- pixels and labels -------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray:
        """The dense (N, H, W, C) uint8 array (memory-mapped if opened so).

        For a subset of a dense store the selected rows are gathered (a copy). A ragged store
        has no such array: use ``store[i]`` or ``batch``.
        """
        if self._base is None:
            raise ValueError(
                "images: this store is ragged (images of different sizes); use store[i], "
                "store.batch(indices) or pack it to a fixed size (pyxfer pack --size S)"
            )
        return self._base if self._index is None else self._base[self._index]

    @property
    def ragged_images(self) -> list[np.ndarray]:
        """The list of (H_i, W_i, C) arrays of a ragged store."""
        if self._ragged is None:
            raise ValueError("ragged_images: this store is dense; use store.images")
        return self._ragged

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) class ids, -1 for unlabelled images."""
        return self._labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_labelled(self) -> bool:
        """True when at least one image has a label."""
        return bool(self._labels.size and self._labels.max() >= 0)

    def class_counts(self) -> np.ndarray:
        """int64 (num_classes,) number of labelled images per class."""
        lab = self._labels[self._labels >= 0]
        return np.bincount(lab, minlength=self.num_classes).astype(np.int64)

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a store of {n} images")
        i %= n
        return int(self._index[i]) if self._index is not None else i

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as (H, W, C) uint8."""
        j = self._row(int(i))
        if self._base is not None:
            return np.asarray(self._base[j])
        assert self._ragged is not None
        return self._ragged[j]

    def __getitem__(self, i: int | IndexLike) -> Any:
        """``store[i] -> (image (H, W, C) uint8, label int)``; a slice gives a subset."""
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        if isinstance(i, (int, np.integer)):
            return self.image(int(i)), int(self._labels[int(i)])
        raise TypeError(f"index: expected an int or a slice, received {type(i).__name__}")

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for i in range(len(self)):
            yield self[i]

    def batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Images at ``indices``: a (B, H, W, C) array when dense, else a list of arrays."""
        idx = self._check_indices(indices)
        if self._base is not None:
            rows = self._index[idx] if self._index is not None else idx
            return self._base[rows]
        assert self._ragged is not None
        return [self._ragged[j] for j in idx]

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"indices: a boolean mask must have shape ({len(self)},), received {idx.shape}"
                )
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"indices: expected a 1-D array of ints or a boolean mask, received dtype "
                f"{idx.dtype} shape {idx.shape}"
            )
        n = len(self)
        if idx.min() < -n or idx.max() >= n:
            raise ValueError(
                f"indices: expected values in [{-n}, {n}), received range "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        return idx.astype(np.int64) % max(n, 1)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageStore:
        """A store of the images at ``indices`` (ints or a boolean mask), sharing pixel memory.

        A dense subset keeps an index into the same (possibly memory-mapped) array; a ragged
        subset holds references to the same image arrays. Class names are kept, so labels keep
        their meaning.
        """
        idx = self._check_indices(indices)
        out = object.__new__(ImageStore)
        out.__dict__.update(self.__dict__)
        out.info = dict(self.info)
        out.class_names = list(self.class_names)
        out._labels = self._labels[idx]
        if self._base is not None:
            out._index = self._index[idx] if self._index is not None else idx
        else:
            assert self._ragged is not None
            out._ragged = [self._ragged[j] for j in idx]
        return out

    # -- pickling (worker processes) ----------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """A memory-mapped packed store pickles as its path, not its pixels."""
        state = self.__dict__.copy()
        path = self.info.get("packed_path")
        if path and isinstance(self._base, np.memmap):
            state["_base"] = None
            state["_reopen"] = str(Path(path) / "images.npy")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        reopen = state.pop("_reopen", None)
        self.__dict__.update(state)
        if reopen is not None:
            self._base = np.load(reopen, mmap_mode="r")

    # -- description -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary: count, classes with counts, sizes, provenance."""
        sizes = self.image_sizes()
        counts = self.class_counts()
        d: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "count": len(self),
            "dense": self.is_dense,
            "channels": self.channels,
            "labelled": int((self._labels >= 0).sum()),
            "unlabelled": int((self._labels < 0).sum()),
            "num_classes": self.num_classes,
            "classes": {c: int(n) for c, n in zip(self.class_names, counts, strict=True)},
        }
        if self.is_dense:
            d["image_shape"] = list(self.image_shape or ())
        elif len(sizes):
            uniq, freq = np.unique(sizes, axis=0, return_counts=True)
            order = np.argsort(-freq, kind="stable")[:5]
            d["size_min"] = [int(sizes[:, 0].min()), int(sizes[:, 1].min())]
            d["size_max"] = [int(sizes[:, 0].max()), int(sizes[:, 1].max())]
            d["common_sizes"] = [[int(uniq[k][0]), int(uniq[k][1]), int(freq[k])] for k in order]
        return d

    def __repr__(self) -> str:
        kind = f"dense {self.image_shape}" if self.is_dense else f"ragged, C={self.channels}"
        return (
            f"ImageStore(name={self.name!r}, n={len(self)}, {kind}, "
            f"classes={self.num_classes}, source={self.source!r})"
        )

    # -- packed format -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a dense store as a packed directory (atomically); returns the path.

        A ragged store must be resized first: ``pyxfer.data.pack(store, path, size=S)``.
        """
        if not self.is_dense:
            raise ValueError(
                "save: a ragged store has no fixed image size; use "
                "pyxfer.data.pack(store, path, size=S) to resize and pack it"
            )
        chunk = 1024

        def chunks() -> Iterator[np.ndarray]:
            for start in range(0, len(self), chunk):
                yield np.asarray(self.batch(np.arange(start, min(start + chunk, len(self)))))

        shape = (len(self), *(self.image_shape or ()))
        return write_packed(
            path,
            shape,
            chunks(),
            self._labels,
            self.class_names,
            name=self.name,
            source=self.source,
            info=self.info,
            overwrite=overwrite,
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> ImageStore:
        """Open a packed directory (``images.npy`` memory-mapped unless ``mmap=False``)."""
        return read_packed(path, mmap=mmap)


# -- atomic directory writing ------------------------------------------------------------------
def write_packed(
    path: str | os.PathLike[str],
    shape: tuple[int, ...],
    chunks: Iterable[np.ndarray],
    labels: np.ndarray | Sequence[int],
    class_names: Sequence[str],
    *,
    name: str = "",
    source: str = "",
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Write a packed store from ``chunks`` of uint8 (B, H, W, C) arrays, atomically.

    Args:
        path: the store directory to create.
        shape: (N, H, W, C) of the whole store; the chunks must add up to it exactly.
        chunks: uint8 arrays of shape (B_k, H, W, C), in order.
        labels: int (N,), -1 = unlabelled.
        class_names: one name per class id.
        on_chunk: called with B_k after each chunk is written (progress bars).
    """
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ValueError(f"shape: expected (N, H, W, C) with C in {{1, 3}}, received {shape}")
    lab = np.asarray(labels, np.int64)
    if lab.shape != (shape[0],):
        raise ValueError(f"labels: expected shape ({shape[0]},), received {lab.shape}")
    with atomic_directory(
        path, overwrite=overwrite, marker=PACKED_MARKER, what="a packed store"
    ) as tmp:
        writer = ImagesWriter(tmp / "images.npy", int(shape[0]), tuple(int(s) for s in shape[1:]))
        pos = 0
        for chunk in chunks:
            b = int(np.shape(chunk)[0])
            if pos + b > shape[0]:
                raise ValueError(f"chunks: more than the {shape[0]} images declared in shape")
            writer.put(np.arange(pos, pos + b), chunk)
            pos += b
            if on_chunk is not None:
                on_chunk(b)
        if pos != shape[0]:
            raise ValueError(f"chunks: expected {shape[0]} images, received {pos}")
        writer.finish()
        write_packed_meta(tmp, lab, class_names, name=name, source=source, info=info)
    return Path(path)


def write_packed_meta(
    root: Path,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    name: str = "",
    source: str = "",
    info: dict[str, Any] | None = None,
) -> None:
    """``labels.npy`` and ``meta.json`` beside a finished ``images.npy`` (its shape is read
    back from its header)."""
    with open(root / "images.npy", "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
    lab = np.asarray(labels, np.int64)
    if lab.shape != (shape[0],):
        raise ValueError(f"labels: expected shape ({shape[0]},), received {lab.shape}")
    np.save(root / "labels.npy", lab)
    meta = {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "name": name,
        "source": source,
        "shape": [int(s) for s in shape],
        "class_names": [str(c) for c in class_names],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "info": info or {},
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def _npy_header(shape: tuple[int, ...], length: int = 0) -> bytes:
    """An ``.npy`` version 1.0 header of a C-order uint8 array, padded to ``length`` bytes (at
    least the smallest multiple of 64 that holds it)."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(int(s) for s in shape)}, }}"
    total = max(int(length), -(-(10 + len(text) + 1) // 64) * 64)
    if 10 + len(text) + 1 > total:
        raise ValueError(f"shape: {shape} does not fit a header of {length} bytes")
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", total - 10)
        + (text.ljust(total - 11) + "\n").encode("latin1")
    )


class ImagesWriter:
    """``images.npy`` of ``count`` uint8 images of one shape, written at any rows.

    Rows are written with positioned plain writes (no shared memory map: a full disk is an
    ``OSError``, not a SIGBUS), the file's whole size reserved first where the file system can,
    so a disk too small fails before the first image is written. Memory is that of the rows
    handed to :meth:`put`. :meth:`finish` closes the gaps of rows never written (images a
    reader skipped), keeping the order of the others, and writes the final shape.

    Args:
        path: the file to create.
        count: rows reserved (the most the store can hold).
        image_shape: (H, W, C) of every row.
    """

    def __init__(self, path: Path, count: int, image_shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.count = int(count)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.row_bytes = int(np.prod(self.image_shape))
        self.header = _npy_header((self.count, *self.image_shape))
        self.written = np.zeros(self.count, bool)
        with open(self.path, "wb") as f:
            f.write(self.header)
            total = len(self.header) + self.count * self.row_bytes
            try:
                os.posix_fallocate(f.fileno(), 0, total)
            except (AttributeError, OSError) as exc:  # not on this system / file system
                if isinstance(exc, OSError) and exc.errno in (
                    errno.ENOSPC,
                    errno.EFBIG,
                    errno.EDQUOT,
                ):
                    raise
                f.truncate(total)

    def _offset(self, row: int) -> int:
        return len(self.header) + row * self.row_bytes

    def put(self, rows: Sequence[int] | np.ndarray, images: Any) -> None:
        """Write ``images`` (B, H, W, C) uint8 (an array or a list of arrays) at ``rows`` (B,)."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        if isinstance(images, np.ndarray):
            arr = images
        else:
            arr = np.stack(list(images)) if len(images) else np.zeros((0, *self.image_shape))
        if arr.dtype != np.uint8 or tuple(arr.shape) != (len(rows), *self.image_shape):
            raise ValueError(
                f"images: expected uint8 ({len(rows)}, {', '.join(map(str, self.image_shape))})"
                f", received {arr.dtype} {arr.shape}"
            )
        if rows.size and (rows.min() < 0 or rows.max() >= self.count):
            raise ValueError(
                f"rows: expected values in [0, {self.count}), received range "
                f"[{int(rows.min())}, {int(rows.max())}]"
            )
        if not rows.size:
            return
        arr = np.ascontiguousarray(arr)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            # one write per run of consecutive rows
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            for a, b in zip(
                np.concatenate([[0], breaks]), np.concatenate([breaks, [len(rows)]]), strict=True
            ):
                chunk = np.ascontiguousarray(arr[a:b])
                _pwrite_all(fd, memoryview(chunk.data).cast("B"), self._offset(int(rows[a])))
        finally:
            os.close(fd)
        self.written[rows] = True

    def finish(self) -> np.ndarray:
        """Close the gaps of unwritten rows (moving the rows after each, in order), cut the
        file and write the final shape; returns the int64 rows kept, in order."""
        kept = np.flatnonzero(self.written).astype(np.int64)
        n = len(kept)
        block = max(1, (64 << 20) // max(self.row_bytes, 1))  # move at most 64 MiB at once
        with open(self.path, "r+b") as f:
            fd = f.fileno()
            moved = kept != np.arange(n)  # kept[i] >= i: once a row moves, all after it do
            i = int(np.argmax(moved)) if moved.any() else n
            while i < n:  # rows kept[i:] move down to i..: runs of consecutive rows at a time
                j = i + 1
                while j < n and j - i < block and kept[j] == kept[j - 1] + 1:
                    j += 1
                data = os.pread(fd, (j - i) * self.row_bytes, self._offset(int(kept[i])))
                _pwrite_all(fd, memoryview(data), self._offset(i))
                i = j
            f.truncate(self._offset(n))
            f.seek(0)
            f.write(_npy_header((n, *self.image_shape), len(self.header)))
        return kept


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        k = os.pwrite(fd, data, offset)
        data, offset = data[k:], offset + k


def check_images_file(path: Path, where: str) -> tuple[int, ...]:
    """The shape in an ``images.npy`` header, checked against the file's size (a truncated
    or padded file is an error naming ``where``)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise ValueError(f"{where}: images.npy has no readable .npy header ({exc})") from None
    if dtype != np.uint8 or fortran or len(shape) != 4:
        raise ValueError(
            f"{where}: images.npy holds {dtype} {shape}; expected a C-order uint8 (N, H, W, C)"
        )
    expected = offset + int(np.prod(shape))
    size = path.stat().st_size
    if size != expected:
        raise ValueError(
            f"{where}: images.npy is {size:,} bytes, its header says {tuple(shape)} uint8 = "
            f"{expected:,} bytes (truncated or damaged; pack it again)"
        )
    return tuple(int(s) for s in shape)


def read_packed(path: str | os.PathLike[str], *, mmap: bool = True) -> ImageStore:
    """Open a packed store directory written by :func:`write_packed`."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"packed store: no directory at {str(root)!r}")
    from pyxfer.data.jpegstore import is_jpeg_store, read_jpeg_store

    if is_jpeg_store(root):  # a compressed store (pyxfer pack --format jpeg)
        return read_jpeg_store(root, mmap=mmap)
    missing = [f for f in ("images.npy", "labels.npy", "meta.json") if not (root / f).is_file()]
    if missing:
        raise ValueError(
            f"packed store {str(root)!r}: expected images.npy, labels.npy and meta.json, "
            f"missing {', '.join(missing)}"
        )
    meta = json.loads((root / "meta.json").read_text())
    if meta.get("format") != PACKED_FORMAT or int(meta.get("version", 0)) > PACKED_VERSION:
        raise ValueError(
            f"packed store {str(root)!r}: expected format {PACKED_FORMAT!r} version <= "
            f"{PACKED_VERSION}, received {meta.get('format')!r} version {meta.get('version')!r}"
        )
    where = f"packed store {str(root)!r}"
    shape = check_images_file(root / "images.npy", where)
    if list(shape) != list(meta["shape"]):
        raise ValueError(f"{where}: images.npy has shape {shape}, meta.json says {meta['shape']}")
    images = np.load(root / "images.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    labels = np.load(root / "labels.npy", allow_pickle=False)
    if labels.shape != (shape[0],):
        raise ValueError(
            f"{where}: labels.npy holds {labels.shape} labels, images.npy {shape[0]} images"
        )
    info = dict(meta.get("info") or {})
    info["packed_path"] = str(root)
    info["packed_created"] = meta.get("created", "")
    return ImageStore(
        images,
        labels,
        meta["class_names"],
        name=meta.get("name", ""),
        source=meta.get("source", ""),
        info=info,
    )
