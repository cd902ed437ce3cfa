"""The IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
the dimensions as big-endian uint32, then the data. Images are ``idx3`` uint8 (N, H, W) and
labels ``idx1`` uint8 (N,). Raw (uncompressed) image files are memory-mapped; gzip files
(detected by their content, not their name) are decompressed into memory, with bounded
memory: the header is read first, a header claiming more than ``max_bytes`` (default 4 GiB)
of data is refused before the rest is decompressed, and exactly the announced bytes are read
(a stream holding more, such as a gzip bomb behind a small header, is refused).

``read_idx(path)`` accepts a directory holding one ``*images*idx3-ubyte[.gz]`` file and its
``*labels*idx1-ubyte[.gz]`` (use ``split="train"`` / ``"t10k"`` when a directory holds both
splits), or the images file itself (the labels file is found by name).
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.data.store import ImageStore

_UBYTE = 0x08
_TYPES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"
#: default cap on the data bytes of a compressed IDX file (EMNIST ByClass images: 547 MB)
MAX_BYTES = 4 * 2**30
_CHUNK = 1 << 24


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _read_exactly(fh: Any, count: int) -> bytearray:
    """``count`` bytes from a stream, in bounded reads (fewer at the end of the stream)."""
    out = bytearray()
    while len(out) < count:
        block = fh.read(min(_CHUNK, count - len(out)))
        if not block:
            break
        out += block
    return out


def read_idx_array(
    path: str | os.PathLike[str], *, ndim: int | None = None, max_bytes: int = MAX_BYTES
) -> np.ndarray:
    """One IDX file as a uint8 array (memory-mapped when the file is not compressed).

    Args:
        path: the IDX file, raw or gzip-compressed.
        ndim: the number of dimensions expected (3 images, 1 labels).
        max_bytes: the most data bytes a compressed file may announce in its header.

    Raises:
        ValueError: naming the file, for a bad magic number, an unsupported type, a
            dimension count other than ``ndim``, a header announcing more than
            ``max_bytes``, or a data size that does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx: no file at {str(path)!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes: expected a positive int, received {max_bytes!r}")
    compressed = _is_gzip(path)
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as fh:
            header = fh.read(4)
            nd = _check_header(path, header, ndim)
            dims_bytes = fh.read(4 * nd)
            if len(dims_bytes) != 4 * nd:
                raise ValueError(f"idx: {str(path)!r} is truncated inside its header")
            dims = tuple(int(d) for d in np.frombuffer(dims_bytes, ">u4"))
            expected = math.prod(dims)
            if not compressed:
                size = path.stat().st_size - 4 - 4 * nd
            elif expected > max_bytes:
                raise ValueError(
                    f"idx: {str(path)!r}: its header claims {expected} data bytes (dimensions "
                    f"{dims}), more than max_bytes={max_bytes}; refused before decompressing "
                    "(pass a larger max_bytes if the file is genuine)"
                )
            else:
                data = _read_exactly(fh, expected)
                size = len(data)
                if size == expected and fh.read(1):
                    raise ValueError(
                        f"idx: {str(path)!r} holds more data than its header dimensions {dims} "
                        f"announce ({expected} bytes); refused (corrupt or a decompression bomb)"
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"idx: {str(path)!r} is not a readable gzip file: {exc}") from exc
    if size != expected:
        raise ValueError(
            f"idx: {str(path)!r} has {size} data bytes; its header dimensions {dims} need "
            f"{expected}"
        )
    if compressed:
        return np.frombuffer(data, np.uint8).reshape(dims)
    if expected == 0:
        return np.zeros(dims, np.uint8)
    return np.memmap(path, np.uint8, mode="r", offset=4 + 4 * nd, shape=dims)


def _check_header(path: Path, header: bytes, ndim: int | None) -> int:
    """The number of dimensions of a valid uint8 IDX magic number, else a ValueError."""
    if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] not in _TYPES:
        raise ValueError(
            f"idx: {str(path)!r} is not an IDX file: expected a magic number 0x0000TTDD "
            f"(TT a type code, DD the number of dimensions), received 0x{header.hex():0<8}"
        )
    if header[2] != _UBYTE:
        raise ValueError(
            f"idx: {str(path)!r} holds {_TYPES[header[2]]} data; expected uint8 (type 0x08)"
        )
    nd = header[3]
    if ndim is not None and nd != ndim:
        raise ValueError(
            f"idx: {str(path)!r} has {nd} dimension(s); expected {ndim} "
            f"({'images N×H×W' if ndim == 3 else 'labels N'})"
        )
    return nd


def _find(directory: Path, kind: str, split: str | None) -> Path:
    pat = re.compile(rf"{kind}[.\-_]idx{3 if kind == 'images' else 1}[.\-_]ubyte(\.gz)?$")
    found = sorted(p for p in directory.iterdir() if p.is_file() and pat.search(p.name))
    if split:
        found = [p for p in found if p.name.startswith(split)]
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        hint = " (pass split='train' or 't10k' to choose)" if len(found) > 1 else ""
        raise ValueError(
            f"idx: expected one *{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz] file in "
            f"{str(directory)!r}{f' starting with {split!r}' if split else ''}, "
            f"found {names}{hint}"
        )
    return found[0]


def read_idx(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    split: str | None = None,
    class_names: list[str] | None = None,
    transpose: bool = False,
    max_bytes: int = MAX_BYTES,
) -> ImageStore:
    """Read an IDX images file and its labels into a dense (N, H, W, 1) store.

    Args:
        path: a directory (see the module docstring) or an ``*images*idx3-ubyte[.gz]`` file.
        labels: the labels file, when it cannot be found by name.
        split: the file-name prefix to pick in a directory holding several splits.
        class_names: names of the label ids; default ``"0"``, ``"1"``, ... up to the largest
            label, at least ``"0"``..``"9"`` (MNIST and its relatives have ten classes).
        transpose: swap H and W (EMNIST files store images transposed).
        max_bytes: the most data bytes a compressed file may announce (see the module
            docstring); raise it for a genuine larger file.
    """
    path = Path(path)
    if path.is_dir():
        images_path = _find(path, "images", split)
        labels_path = Path(labels) if labels else _find(path, "labels", split)
    else:
        images_path = path
        if labels:
            labels_path = Path(labels)
        else:
            guess = re.sub(r"images([.\-_])idx3", r"labels\1idx1", path.name)
            labels_path = path.with_name(guess)
            if guess == path.name or not labels_path.is_file():
                raise ValueError(
                    f"idx: cannot find the labels file for {str(path)!r} (looked for "
                    f"{labels_path.name!r}); pass labels=PATH"
                )
    images = read_idx_array(images_path, ndim=3, max_bytes=max_bytes)
    lab = read_idx_array(labels_path, ndim=1, max_bytes=max_bytes)
    if lab.shape[0] != images.shape[0]:
        raise ValueError(
            f"idx: {images_path.name} has {images.shape[0]} images but {labels_path.name} has "
            f"{lab.shape[0]} labels"
        )
    if transpose:
        images = images.transpose(0, 2, 1)
    images = images[..., None]  # (N, H, W, 1)
    if class_names is None:
        top = int(lab.max()) + 1 if lab.size else 0
        class_names = [str(i) for i in range(max(top, 10))]
    name = re.sub(r"[.\-_]?images.*$", "", images_path.name) or images_path.parent.name
    return ImageStore(
        images,
        np.asarray(lab, np.int64),
        class_names,
        name=f"{path.name if path.is_dir() else images_path.parent.name}/{name}",
        source=f"idx:{path}",
        info={"reader": "idx", "images": str(images_path), "labels": str(labels_path)},
    )
