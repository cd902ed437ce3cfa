"""Sharded stores: a directory of stores read as one, for data sets spread over many machines.

``pyxfer pack SRC DST --size S --shard-size N`` (raw shards) or ``pyxfer pack SRC DST --format
jpeg --shard-size N`` (compressed shards, :mod:`pyxfer.data.jpegstore`) writes::

    DST/shards.json      {"format": "pyxfer.sharded", "version": 1, "count", "class_names",
                          "image_shape", "channels", "name", "source", "created", "info",
                          "shards": [{"path": "shard-00000", "count", "files":
                                      {"images.npy": {"bytes", "sha256"}, ...}}, ...]}
    DST/labels.npy       int64 (count,): every label, shard after shard
    DST/shard-00000/     a store of N images (any format ``packed:`` reads)
    DST/shard-00001/     ...

``load_dataset("packed:DST")`` opens it as a :class:`ShardedStore`: one store of ``count``
images, image ``i`` in the shard that holds row ``i`` of ``labels.npy``. Opening checks
every shard from the index alone (that its directory and files are there, with the sizes and,
for the small files, the SHA-256 recorded), so a shard missing in the middle, truncated or
replaced is an error naming it before any batch; a shard's pixels are opened on the first
batch that touches it, where its image count, labels and image size are checked against the
index. ``verify=True`` also hashes the large files. A shard path is a plain name inside DST:
an index naming anything else (``..``, an absolute path, a link out) is refused.

Under ``torchrun`` each rank reads only the shards the epoch gives it (see
:func:`pyxfer.engine.loader.epoch_order`): :attr:`ShardedStore.shard_bounds` tells the
loader where each shard's images start.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.data import jpegstore
from pyxfer.data.store import PACKED_MARKER, ImageStore

SHARDED_FORMAT = "pyxfer.sharded"
#: the ``storage`` of a sharded store in ``describe()`` and ``storage_info()``
STORAGE = "sharded"
SHARDED_VERSION = 1
SHARDS_FILE = "shards.json"
#: an existing directory is replaced (overwrite) only if it is a sharded store pyxfer wrote
SHARDED_MARKER = (SHARDS_FILE, SHARDED_FORMAT)
#: files up to this size are hashed when a store is opened; larger ones with verify=True
SMALL_FILE = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def shard_name(k: int) -> str:
    """The directory name of shard ``k``."""
    return f"shard-{k:05d}"


def is_sharded(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a sharded store's index."""
    return (Path(path) / SHARDS_FILE).is_file()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.iterdir()):
        if p.is_file():
            out[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return out


def write_index(
    root: Path,
    shards: Sequence[Path],
    class_names: Sequence[str],
    *,
    name: str = "",
    source: str = "",
    info: dict[str, Any] | None = None,
) -> None:
    """``shards.json`` and ``labels.npy`` of the finished stores ``shards`` (directories in
    ``root``), each file of each shard hashed."""
    from pyxfer.data import load_dataset

    entries, labels, shapes = [], [], set()
    channels = set()
    for path in shards:
        store = load_dataset(f"packed:{path}")
        kind = (storage_info(store) or {}).get("storage", "raw")
        entries.append(
            {"path": path.name, "count": len(store), "storage": kind, "files": _files(path)}
        )
        labels.append(np.asarray(store.labels, np.int64))
        shapes.add(store.image_shape)
        channels.add(store.channels)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    np.save(root / "labels.npy", all_labels)
    shape = shapes.pop() if len(shapes) == 1 else None
    doc = {
        "format": SHARDED_FORMAT,
        "version": SHARDED_VERSION,
        "name": name,
        "source": source,
        "count": len(all_labels),
        "image_shape": None if shape is None else [int(s) for s in shape],
        "channels": int(channels.pop()) if len(channels) == 1 else 3,
        "class_names": [str(c) for c in class_names],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "info": info or {},
        "shards": entries,
    }
    (root / SHARDS_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")


# -- writing ----------------------------------------------------------------------------------
def check_destination(
    dst: str | os.PathLike[str], overwrite: bool, shard_size: int | None
) -> tuple[str, str]:
    """The checks every pack makes before reading its source: ``dst`` is new (or ``overwrite``
    and a store pyxfer wrote, sharded or not), ``shard_size`` a positive int or None. Returns
    the marker that an existing ``dst`` must carry to be replaced."""
    from pyxfer._checks import check_int
    from pyxfer.fileio import check_replaceable, is_owned

    if shard_size is not None:
        check_int("shard_size", shard_size, 1)
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ValueError(f"dst: {str(dst)!r} already exists; choose a new path or overwrite it")
    marker = SHARDED_MARKER if is_owned(dst, SHARDED_MARKER) else PACKED_MARKER
    check_replaceable(dst, marker, "a packed store")  # never the source photos
    return marker


class Layout:
    """Where a pack of ``n`` source rows writes: the store directory itself, or with
    ``shard_size`` one directory per shard (rows ``bounds[k]:bounds[k+1]`` in ``dirs[k]``)."""

    def __init__(self, root: Path, n: int, shard_size: int | None) -> None:
        self.root, self.shard_size = root, shard_size
        self.bounds = [0, n] if shard_size is None else [*range(0, n, shard_size), n]
        self.dirs = (
            [root]
            if shard_size is None
            else [root / shard_name(k) for k in range(len(self.bounds) - 1)]
        )

    @property
    def sharded(self) -> bool:
        return self.shard_size is not None

    def shard_of(self, row: int) -> int:
        """The part (shard) that source row ``row`` goes to."""
        return int(np.searchsorted(self.bounds, row, side="right") - 1)

    def part_info(self, info: dict[str, Any], k: int, skipped: int) -> dict[str, Any]:
        """The ``info`` of part ``k``'s own ``meta.json``."""
        return dict(info, skipped=skipped) if not self.sharded else dict(info, shard=k)

    def finish(
        self,
        class_names: Sequence[str],
        *,
        name: str,
        source: str,
        info: dict[str, Any],
        skipped: int,
    ) -> None:
        """Once every part is written: a sharded store's index (nothing for a plain store)."""
        if self.sharded:
            write_index(
                self.root,
                self.dirs,
                class_names,
                name=name,
                source=source,
                info=dict(info, skipped=skipped, shard_size=self.shard_size),
            )


@contextlib.contextmanager
def packing(
    dst: str | os.PathLike[str],
    n: int,
    shard_size: int | None,
    *,
    overwrite: bool,
    marker: tuple[str, str],
) -> Iterator[Layout]:
    """The :class:`Layout` of a pack into ``dst``, written atomically: nothing appears at
    ``dst`` (and an old store there stays) unless the block completes."""
    from pyxfer.fileio import atomic_directory

    with atomic_directory(dst, overwrite=overwrite, marker=marker, what="a packed store") as tmp:
        yield Layout(tmp, n, shard_size)


class _Shards:
    """The shards of one sharded store, opened on first use (shared by its subsets)."""

    def __init__(
        self,
        root: Path,
        entries: list[dict[str, Any]],
        labels: np.ndarray,
        image_shape: tuple[int, ...] | None,
        channels: int,
        on_error: str = "raise",
    ) -> None:
        self.root = root
        self.on_error = on_error
        self.entries = entries
        self.labels = labels
        self.image_shape = image_shape
        self.channels = channels
        kinds = {str(e.get("storage", "raw")) for e in entries}
        #: the storage kind of the shards ("raw", or a compressed store's)
        self.member = kinds.pop() if len(kinds) == 1 else "mixed"
        counts = np.asarray([int(e["count"]) for e in entries], np.int64)
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.opened: dict[int, ImageStore] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["opened"], state["_lock"] = {}, None  # reopened where unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def where(self, k: int) -> str:
        return f"sharded store {str(self.root)!r}: shard {k} ({self.entries[k]['path']})"

    def get(self, k: int) -> ImageStore:
        """Shard ``k`` as a store, opened and checked against the index on first use."""
        store = self.opened.get(k)
        if store is not None:
            return store
        with self._lock:
            if k not in self.opened:
                self.opened[k] = self._open(k)
            return self.opened[k]

    def _open(self, k: int) -> ImageStore:
        from pyxfer.data import load_dataset

        where = self.where(k)
        path = self.root / self.entries[k]["path"]
        options = {} if self.on_error == "raise" else {"on_error": self.on_error}
        try:
            store = load_dataset(f"packed:{path}", **options)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: cannot be read: {exc}") from exc
        a, b = int(self.bounds[k]), int(self.bounds[k + 1])
        if len(store) != b - a:
            raise ValueError(
                f"{where}: holds {len(store)} images, {SHARDS_FILE} says {b - a} (the shard "
                "and the index disagree; pack it again)"
            )
        if not np.array_equal(np.asarray(store.labels, np.int64), self.labels[a:b]):
            raise ValueError(
                f"{where}: its labels differ from rows {a}..{b - 1} of labels.npy (the shard "
                "and the index disagree; pack it again)"
            )
        if store.channels != self.channels or (
            self.image_shape is not None and store.image_shape != self.image_shape
        ):
            raise ValueError(
                f"{where}: holds images of shape {store.image_shape} (C={store.channels}), "
                f"{SHARDS_FILE} says {self.image_shape} (C={self.channels})"
            )
        return store


def _member_path(root: Path, entry: Any, k: int) -> Path:
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"sharded store {str(root)!r}: shard {k} has path {name!r}; expected a plain "
            "directory name inside the store"
        )
    path = root / name
    if path.is_symlink() or not path.is_dir():
        raise ValueError(
            f"sharded store {str(root)!r}: shard {k} ({name}) is missing (expected a "
            "directory in the store, not a link); every shard listed in "
            f"{SHARDS_FILE} must be there"
        )
    return path


def _check_files(root: Path, entry: dict[str, Any], k: int, verify: bool) -> None:
    path = root / entry["path"]
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"sharded store {str(root)!r}: shard {k} lists no files")
    for fname, rec in files.items():
        f = path / str(fname)
        if not isinstance(rec, dict):
            raise ValueError(
                f"sharded store {str(root)!r}: shard {k} lists {fname!r} as {rec!r}; expected "
                '{"bytes": ..., "sha256": ...}'
            )
        if not _NAME.match(str(fname)) or f.is_symlink() or not f.is_file():
            raise ValueError(
                f"sharded store {str(root)!r}: shard {k} ({entry['path']}) has no file "
                f"{fname!r} (expected by {SHARDS_FILE})"
            )
        size = f.stat().st_size
        if size != int(rec.get("bytes", -1)):
            raise ValueError(
                f"sharded store {str(root)!r}: {entry['path']}/{fname} is {size:,} bytes, "
                f"{SHARDS_FILE} says {int(rec.get('bytes', -1)):,} (truncated or replaced)"
            )
        if (verify or size <= SMALL_FILE) and _sha256(f) != rec.get("sha256"):
            raise ValueError(
                f"sharded store {str(root)!r}: {entry['path']}/{fname} does not have the "
                f"SHA-256 recorded in {SHARDS_FILE} (changed or damaged since it was packed)"
            )


def read_sharded(
    path: str | os.PathLike[str], *, verify: bool = False, on_error: str = "raise"
) -> ShardedStore:
    """Open a sharded store directory (see the module docstring).

    Args:
        path: the directory holding ``shards.json``.
        verify: also check the SHA-256 of every large file (reads the whole store once).
        on_error: ``"skip"`` lets the loader drop corrupt images of compressed (JPEG) shards
            with a warning, as for one compressed store; raw shards decode nothing and take
            only ``"raise"``.

    Raises:
        ValueError: naming the shard, for a shard missing or not matching the index.
    """
    root = Path(path)
    index = root / SHARDS_FILE
    if not index.is_file():
        raise FileNotFoundError(f"sharded store: no {SHARDS_FILE} in {str(root)!r}")
    try:
        doc = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"sharded store {str(root)!r}: unreadable {SHARDS_FILE}: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != SHARDED_FORMAT
        or int(doc.get("version", 0)) > SHARDED_VERSION
    ):
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(
            f"sharded store {str(root)!r}: expected format {SHARDED_FORMAT!r} version <= "
            f"{SHARDED_VERSION}, received {got!r}"
        )
    entries = doc.get("shards")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"sharded store {str(root)!r}: {SHARDS_FILE} lists no shards")
    for k, entry in enumerate(entries):
        _member_path(root, entry, k)
        if not isinstance(entry.get("count"), int) or entry["count"] < 0:
            raise ValueError(
                f"sharded store {str(root)!r}: shard {k} has count {entry.get('count')!r}; "
                "expected an integer >= 0"
            )
        _check_files(root, entry, k, verify)
    labels = np.load(root / "labels.npy", allow_pickle=False)
    total = sum(int(e["count"]) for e in entries)
    if labels.shape != (total,) or total != int(doc.get("count", -1)):
        raise ValueError(
            f"sharded store {str(root)!r}: labels.npy holds {labels.shape} labels, the shards "
            f"add up to {total} images, {SHARDS_FILE} says {doc.get('count')!r}"
        )
    shape = doc.get("image_shape")
    shards = _Shards(
        root,
        entries,
        labels.astype(np.int64, copy=False),
        None if shape is None else tuple(int(s) for s in shape),
        int(doc.get("channels", 3)),
        on_error,
    )
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', received {on_error!r}")
    if on_error != "raise" and shards.member != jpegstore.STORAGE:
        raise ValueError(
            f"on_error: the shards of {str(root)!r} are {shards.member}, which decode nothing; "
            f"only compressed (jpeg) shards take 'skip', received {on_error!r}"
        )
    info = dict(doc.get("info") or {})
    info.update(
        sharded_path=str(root),
        packed_created=doc.get("created", ""),
        shards=len(entries),
        disk_bytes=sum(int(r["bytes"]) for e in entries for r in e["files"].values())
        + sum(p.stat().st_size for p in root.iterdir() if p.is_file()),
    )
    cls = ShardedStore if shards.member == "raw" else DecodingShardedStore
    return cls(
        shards,
        doc.get("class_names") or [],
        name=doc.get("name", ""),
        source=doc.get("source", ""),
        info=info,
    )


class ShardedStore(ImageStore):
    """Several stores (shards) read as one :class:`ImageStore`; see the module docstring.

    Shards are opened on the first access to one of their images and stay open; a subset
    shares them. Batches gather from each shard they touch.
    """

    def __init__(
        self,
        shards: _Shards,
        class_names: Sequence[str],
        *,
        rows: np.ndarray | None = None,
        name: str = "",
        source: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        labels = shards.labels if rows is None else shards.labels[rows]
        # a zero-byte stand-in for the pixels: the checks of labels and class names run as
        # for any store
        blank = np.broadcast_to(
            np.zeros((1, 1, 1, shards.channels), np.uint8), (len(labels), 1, 1, shards.channels)
        )
        super().__init__(blank, labels, class_names, name=name, source=source, info=info)
        self._base = None  # no pixels of its own
        self._shards = shards
        self._rows = rows  # rows of the whole store (a subset), or None for all of them

    # -- shape ---------------------------------------------------------------------------
    @property
    def is_dense(self) -> bool:
        return self._shards.image_shape is not None

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        s = self._shards.image_shape
        return None if s is None else (int(s[0]), int(s[1]), int(s[2]))

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def num_shards(self) -> int:
        return len(self._shards.entries)

    @property
    def shard_bounds(self) -> np.ndarray | None:
        """int64 (shards + 1,): the images of shard ``k`` are ``bounds[k]:bounds[k+1]``; for a
        subset whose rows are not in store order, ``None`` (no shard order to keep)."""
        if self._rows is None:
            return self._shards.bounds
        if len(self._rows) > 1 and np.any(np.diff(self._rows) < 0):
            return None
        return np.searchsorted(self._rows, self._shards.bounds).astype(np.int64)

    def shards_of(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The sorted shard numbers holding the images at ``indices``."""
        rows = self._global(self._check_indices(indices))
        return np.unique(np.searchsorted(self._shards.bounds, rows, side="right") - 1)

    def _global(self, idx: np.ndarray) -> np.ndarray:
        return idx if self._rows is None else self._rows[idx]

    def image_sizes(self) -> np.ndarray:
        if self.image_shape is not None:
            return np.tile(np.asarray(self.image_shape[:2], np.int64), (len(self), 1))
        return np.asarray([self.image(i).shape[:2] for i in range(len(self))], np.int64)

    # -- pixels ---------------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray:
        """Every image gathered into one (N, H, W, C) array (all in memory)."""
        if not self.is_dense:
            return super().images
        return np.asarray(self.batch(np.arange(len(self))))

    @property
    def ragged_images(self) -> list[np.ndarray]:
        if self.is_dense:
            raise ValueError("ragged_images: this store is dense; use store.images")
        return list(self.batch(np.arange(len(self))))

    def image(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"index {i} is out of range for a store of {n} images")
        row = int(self._global(np.asarray([int(i) % n]))[0])
        k = int(np.searchsorted(self._shards.bounds, row, side="right") - 1)
        return self._shards.get(k).image(row - int(self._shards.bounds[k]))

    def batch(
        self, indices: Sequence[int] | np.ndarray, **options: Any
    ) -> np.ndarray | list[np.ndarray]:
        """Images at ``indices`` gathered from their shards; ``options`` go to each shard's
        ``batch`` (a compressed store's decode options)."""
        rows = self._global(self._check_indices(indices))
        bounds = self._shards.bounds
        shard = np.searchsorted(bounds, rows, side="right") - 1
        parts: list[Any] = [None] * len(rows)
        dense = None
        if self.is_dense:
            dense = np.empty((len(rows), *self._shards.image_shape), np.uint8)  # type: ignore[misc]
        for k in np.unique(shard):
            mine = np.flatnonzero(shard == k)
            got = self._shards.get(int(k)).batch(rows[mine] - bounds[k], **options)
            if dense is not None:
                dense[mine] = got
            else:
                for j, im in zip(mine, got, strict=True):
                    parts[j] = im
        return dense if dense is not None else parts

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShardedStore:
        idx = self._check_indices(indices)
        return type(self)(
            self._shards,
            self.class_names,
            rows=self._global(idx),
            name=self.name,
            source=self.source,
            info=dict(self.info),
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(self.storage_info())
        return d

    def storage_info(self) -> dict[str, Any]:
        """Storage kind, shard count, the kind of the shards and the bytes on disk."""
        return {
            "storage": STORAGE,
            "shards": self.num_shards,
            "member": self._shards.member,
            "disk_bytes": int(self.info.get("disk_bytes", 0)),
        }

    def __repr__(self) -> str:
        kind = f"dense {self.image_shape}" if self.is_dense else f"ragged, C={self.channels}"
        return (
            f"ShardedStore(name={self.name!r}, n={len(self)}, {self.num_shards} shards, {kind}, "
            f"classes={self.num_classes}, source={self.source!r})"
        )


class DecodingShardedStore(ShardedStore):
    """A sharded store whose shards decode at load time (compressed stores): the loader's
    decode-aware calls (``original_sizes``, ``decode_views``) are split by shard too."""

    def _split(self, indices: Sequence[int] | np.ndarray) -> list[tuple[int, np.ndarray, Any]]:
        """(shard, positions in ``indices``, rows in the shard) for each shard touched."""
        rows = self._global(self._check_indices(indices))
        bounds = self._shards.bounds
        shard = np.searchsorted(bounds, rows, side="right") - 1
        out = []
        for k in np.unique(shard):
            mine = np.flatnonzero(shard == k)
            out.append((int(k), mine, rows[mine] - bounds[k]))
        return out

    def original_sizes(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(len(indices), 2) int64 (H, W) of the stored images, from each shard's index."""
        out = np.zeros((len(np.asarray(indices).reshape(-1)), 2), np.int64)
        for k, mine, local in self._split(indices):
            out[mine] = self._shards.get(k).original_sizes(local)  # type: ignore[attr-defined]
        return out

    def decode_views(
        self,
        indices: Sequence[int] | np.ndarray,
        params: np.ndarray,
        sizes: Sequence[tuple[int, int]],
        threads: int = 0,
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Each shard's ``decode_views`` on its images (row ``n * V + v`` of ``params`` is view
        v of image n); returns (images, params, kept positions) in the order of ``indices``."""
        v = len(sizes)
        prm = np.asarray(params)
        cols = prm.shape[-1]
        prm = prm.reshape(len(prm) // max(v, 1), v, cols)
        images: list[Any] = [None] * len(prm)
        out = prm.copy()
        keep = np.zeros(len(prm), bool)
        for k, mine, local in self._split(indices):
            got, p, kept = self._shards.get(k).decode_views(  # type: ignore[attr-defined]
                local, prm[mine].reshape(len(mine) * v, cols), sizes, threads=threads
            )
            pos = mine[np.asarray(kept, np.int64)]
            out[pos] = np.asarray(p).reshape(len(pos), v, cols)
            keep[pos] = True
            for j, im in zip(pos, got, strict=True):
                images[j] = im
        kept_all = np.flatnonzero(keep)
        return [images[j] for j in kept_all], out[kept_all].reshape(-1, cols), kept_all

    def storage_info(self) -> dict[str, Any]:
        """As :meth:`ShardedStore.storage_info`, with the compressed shards' settings (what
        ``pyxfer data`` and the report print: quality, size cap, decoder)."""
        d = super().storage_info()
        if self._shards.member == jpegstore.STORAGE:
            for key in ("source_bytes", "quality", "max_side", "reencoded"):
                if key in self.info:
                    d[key] = self.info[key]
            d["decode"] = jpegstore.decode_text()
        return d


def storage_info(store: Any) -> dict[str, Any] | None:
    """Where a store's pixels live: its own ``storage_info()`` when it has one (a sharded or
    compressed store), ``{"storage": "raw", "disk_bytes"}`` for a raw packed store, ``None``
    for a store held in memory."""
    own = getattr(store, "storage_info", None)
    if own is not None:
        return dict(own())
    root = (getattr(store, "info", None) or {}).get("packed_path")
    if not root or not Path(root).is_dir():
        return None
    size = sum(p.stat().st_size for p in Path(root).iterdir() if p.is_file())
    return {"storage": "raw", "disk_bytes": int(size)}


def storage_text(d: dict[str, Any]) -> str:
    """Any store's :func:`storage_info` in words, e.g.
    ``"sharded (raw shards): 4 shards, 375.0 MiB on disk"`` (a compressed store's with its
    decode settings, :func:`pyxfer.data.jpegstore.storage_text`)."""
    if d.get("storage") == jpegstore.STORAGE:
        return jpegstore.storage_text(d)
    mib = f"{int(d.get('disk_bytes', 0)) / 2**20:,.1f} MiB on disk"
    if d.get("storage") == STORAGE:
        head = f"sharded ({d.get('member', 'raw')} shards): {d.get('shards', 0)} shards"
        if d.get("member") == jpegstore.STORAGE and "decode" in d:  # its settings too
            return f"{head}, {jpegstore.storage_text(d)}"
        return f"{head}, {mib}"
    return f"{d.get('storage', 'raw')}, {mib}"
