"""A tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ...) of a class-per-folder image tree.

Members are read straight from the archive (nothing is extracted to disk): the archive is
streamed once, the image members' bytes are kept in memory and decoded in a thread pool.
The directory prefix shared by all image members is dropped (``test/`` in CIFAR-10's
``test/<class>/<nnnn>.jpg``); the next path component is the class. If nothing is left after
the shared prefix (all images in one folder) the store is unlabelled. ``root`` restricts the
read to the members below one directory of the archive. Decoding options are those of
:func:`pyxfer.data.folder.read_folder`.

An archive is data and is read with bounded memory: a member larger than
``max_member_bytes`` (default 512 MiB), or members adding up to more than ``max_total_bytes``
(default 8 GiB; each member counts at least 1 KiB), stop the read with an error naming the
member, decided from the member headers before their data is decompressed. A 40 GB
zero-filled member is refused from its header.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from pyxfer._checks import check_int
from pyxfer.data.decode import check_options, decode_to_store, is_image_name
from pyxfer.data.store import ImageStore

log = logging.getLogger("pyxfer.data")

#: default cap on one member's size (bytes)
MAX_MEMBER_BYTES = 512 * 2**20
#: default cap on the sum of all members' sizes (bytes)
MAX_TOTAL_BYTES = 8 * 2**30
_MEMBER_OVERHEAD = 1024  # each member counts at least this much towards the total


def _common_prefix(dirs: list[tuple[str, ...]]) -> int:
    if not dirs:
        return 0
    k = min(len(d) for d in dirs)
    first = dirs[0]
    for d in dirs[1:]:
        while k and d[:k] != first[:k]:
            k -= 1
    return k


def walk_tar(
    path: Path,
    *,
    root: str | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int | None = MAX_TOTAL_BYTES,
    read: bool = True,
) -> Iterator[tuple[tuple[str, ...], bytes | None]]:
    """The image members of an archive in archive order: (path parts, bytes or ``None`` when
    not ``read``), one pass, keeping no member list; the size limits are checked from the
    member headers before any data is decompressed (``max_total_bytes=None``: no total, for a
    reader that keeps nothing)."""
    prefix = PurePosixPath(root.strip("/")).parts if root else ()
    total = 0
    try:
        with tarfile.open(path, "r:*") as tf:
            while (m := tf.next()) is not None:
                # read once, in order: keep no TarInfo per member (``members`` is the list
                # TarFile fills as it reads; typeshed does not declare it)
                tf.members = []  # type: ignore[attr-defined]
                if m.isfile():  # regular and sparse members
                    if m.size > max_member_bytes:
                        raise ValueError(
                            f"tar: member {m.name} is {m.size} bytes, over max_member_bytes="
                            f"{max_member_bytes} in {str(path)!r} (raise max_member_bytes to "
                            "read it)"
                        )
                    total += max(m.size, _MEMBER_OVERHEAD)
                    if max_total_bytes is not None and total > max_total_bytes:
                        raise ValueError(
                            f"tar: the members up to {m.name} add up to more than "
                            f"max_total_bytes={max_total_bytes} in {str(path)!r} (raise "
                            "max_total_bytes to read it)"
                        )
                if not m.isfile() or not is_image_name(m.name):
                    continue
                parts = tuple(p for p in PurePosixPath(m.name).parts if p not in (".", "/"))
                if any(p.startswith(".") for p in parts) or parts[: len(prefix)] != prefix:
                    continue
                if not read:
                    yield parts, None
                    continue
                fh = tf.extractfile(m)
                if fh is not None:
                    yield parts, fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"tar: cannot read archive {str(path)!r}: {exc}") from exc


def label_members(
    parts: list[tuple[str, ...]], path: Path, unlabelled: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Order and label the image members of an archive (see the module docstring).

    Returns:
        (order, labels, class_names): int64 indices into ``parts`` of the images kept, sorted
        by path; their int64 labels (-1 unlabelled); the sorted class names.
    """
    order = np.asarray(sorted(range(len(parts)), key=parts.__getitem__), np.int64)
    ordered = [parts[i] for i in order]
    k = _common_prefix([p[:-1] for p in ordered])
    if unlabelled or all(len(p) - 1 == k for p in ordered):
        return order, np.full(len(order), -1, np.int64), []
    deep = np.asarray([len(p) - 1 > k for p in ordered], bool)
    if not deep.all():
        log.warning("tar %s: ignoring %d image(s) not in a class folder", path, int((~deep).sum()))
    order = order[deep]
    class_names = sorted({parts[i][k] for i in order})
    ids = {c: i for i, c in enumerate(class_names)}
    labels = np.asarray([ids[parts[i][k]] for i in order], np.int64)
    return order, labels, class_names


def read_tar(
    path: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    fit: str = "crop",
    threads: int = 0,
    on_error: str = "raise",
    unlabelled: bool = False,
    root: str | None = None,
    progress: bool | None = None,
    draft: bool = True,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> ImageStore:
    """Read an archive of images into an :class:`ImageStore` (see the module docstring).

    ``max_member_bytes`` and ``max_total_bytes`` bound what is decompressed and kept; raise
    them for archives with larger members (``load_dataset("tar:x.tar", max_total_bytes=...)``).
    """
    hw = check_options(size, channels, fit, on_error)
    check_int("max_member_bytes", max_member_bytes, 1)
    check_int("max_total_bytes", max_total_bytes, 1)
    if channels is None:
        channels = 3
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tar: no file at {str(path)!r}")
    members = list(
        walk_tar(
            path, root=root, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes
        )
    )
    if not members:
        raise ValueError(
            f"tar: no image members found in {str(path)!r}" + (f" below {root!r}" if root else "")
        )
    order, labels, class_names = label_members([p for p, _ in members], path, unlabelled)
    names = [f"{path}/{'/'.join(members[i][0])}" for i in order]
    return decode_to_store(
        "tar",
        path,
        [members[i][1] for i in order],
        names,
        labels,
        class_names,
        hw=hw,
        channels=channels,
        fit=fit,
        threads=threads,
        on_error=on_error,
        progress=progress,
        draft=draft,
        info={"root": root} if root else None,
    )
