"""Crash-safe file and directory writes: a failed run leaves nothing half-written.

Everything pyxfer writes as a unit (a checkpoint, a packed store, a model, a bundle, a small
JSON file) is written beside its final name and renamed into place, with every file, the new
directory and the parent directory flushed to disk (``fsync``) first, so that after a crash
or a power loss the destination holds either the previous version or the complete new one.

Temporary names are ``.NAME.tmp-PID-XXXXXXXX`` (and ``.NAME.old-PID-XXXXXXXX`` for the
version being replaced): a write killed half-way leaves one behind, and the next write of the
same name (or :func:`clean_stale_temps` on the directory) removes those whose process is gone
— restoring a replaced version that a crash left only under its ``.old`` name.

Replacing an existing directory (``overwrite=True``) can be limited to directories that pyxfer
wrote: ``marker=(FILE, FORMAT)`` refuses any destination without ``FILE`` holding JSON with
``"format": FORMAT``, so ``--overwrite`` never deletes a folder of photos.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

log = logging.getLogger("pyxfer")

#: the temporary names of this module: ``.NAME.tmp-PID-HEX`` and ``.NAME.old-PID-HEX``
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")

#: errors that mean "the disk (or the file-size limit) is full"
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _temp_name(dst: Path, kind: str) -> Path:
    return dst.parent / f".{dst.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale_temps(parent: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporaries of writes killed half-way in ``parent`` (of ``name`` only, or of
    every name); returns what was removed.

    A temporary counts as stale when the process that created it no longer runs. A version
    that was being replaced (``.NAME.old-*``) is renamed back to ``NAME`` when a crash left
    no ``NAME``; otherwise it is removed.
    """
    parent = Path(parent)
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        final = parent / m["name"]
        if m["kind"] == "old" and not final.exists():
            with contextlib.suppress(OSError):
                os.replace(entry, final)
                log.warning("restored %s from %s (a replacement was interrupted)", final, entry)
                continue
        _remove(entry)
        removed.append(entry)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), parent)
    return removed


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file or a directory (its entries) to disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if Path(path).is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if sys.platform == "win32":  # directories cannot be opened there
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # not supported here
            raise
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """``fsync`` every file and directory under ``root`` (directories after their entries)."""
    for dirpath, _, files in os.walk(root, topdown=False):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                fsync_path(p)
        fsync_path(dirpath)


def disk_full_error(exc: OSError, where: str | os.PathLike[str]) -> OSError:
    """``exc`` again with a message that says which write ran out of space (other errors are
    returned unchanged)."""
    if exc.errno not in _FULL:
        return exc
    what = {errno.EFBIG: "the file-size limit was reached"}.get(exc.errno, "the disk is full")
    free = ""
    with contextlib.suppress(OSError):
        free = f"; {shutil.disk_usage(Path(where).parent).free / 2**20:.1f} MiB free"
    msg = f"could not write {os.fspath(where)!r}: {what} ({os.strerror(exc.errno)}{free})"
    new = OSError(exc.errno, msg)
    new.filename = os.fspath(where)
    return new


def reraise_os_error(exc: OSError, where: str | os.PathLike[str]) -> NoReturn:
    """Raise ``exc``, as :func:`disk_full_error` words it when the disk is full."""
    new = disk_full_error(exc, where)
    if new is exc:
        raise exc
    raise new from exc


def as_os_error(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind an error that only quotes it (safetensors' ``SafetensorError``
    says ``... (os error 28)``), or ``None``."""
    if isinstance(exc, OSError):
        return exc
    m = re.search(r"\(os error (\d+)\)", str(exc))
    if m is None:
        return None
    code = int(m.group(1))
    return OSError(code, os.strerror(code))


def is_owned(path: str | os.PathLike[str], marker: tuple[str, str]) -> bool:
    """Whether ``path/FILE`` holds JSON with ``"format": FORMAT`` (``marker = (FILE, FORMAT)``)."""
    file, fmt = marker
    try:
        doc = json.loads((Path(path) / file).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == fmt


def check_replaceable(
    dst: str | os.PathLike[str], marker: tuple[str, str] | None, what: str, arg: str = "dst"
) -> None:
    """Raise ``ValueError`` unless the existing ``dst`` may be replaced: a directory that pyxfer
    wrote (``marker``), never a plain file or a folder of someone else's files."""
    dst = Path(dst)
    if marker is None or not dst.exists():
        return
    if not dst.is_dir() or not is_owned(dst, marker):
        raise ValueError(
            f"{arg}: {os.fspath(dst)!r} exists and is not {what} written by pyxfer (expected "
            f"{marker[0]} with format {marker[1]!r}); not replacing it: choose a new path or "
            "remove it yourself"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False  # the file system cannot exchange: fall back
    raise OSError(err, os.strerror(err), os.fspath(a))


@contextlib.contextmanager
def atomic_directory(
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    marker: tuple[str, str] | None = None,
    what: str = "a directory",
) -> Iterator[Path]:
    """Yield a temporary sibling directory that is flushed and renamed to ``dst`` on success.

    On any exception (KeyboardInterrupt included) the temporary directory is removed and
    ``dst`` is left as it was. With ``overwrite=True`` an existing ``dst`` is replaced only
    once the new one is complete, and only if it carries ``marker`` (``(FILE, FORMAT)``, see
    :func:`check_replaceable`; ``None``: any directory). Stale temporaries of ``dst`` left by
    killed processes are removed first.
    """
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ValueError(f"dst: {str(dst)!r} already exists; choose a new path or overwrite it")
    check_replaceable(dst, marker, what)
    dst.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dst.parent, dst.name)
    tmp = _temp_name(dst, "tmp")
    tmp.mkdir()
    try:
        try:
            yield tmp
            fsync_tree(tmp)
        except Exception as exc:
            os_error = as_os_error(exc)
            if os_error is None:
                raise
            if os_error is exc:
                reraise_os_error(os_error, dst)
            raise disk_full_error(os_error, dst) from exc
        if dst.exists():
            if not overwrite:
                raise ValueError(f"dst: {str(dst)!r} appeared while writing; not replacing it")
            check_replaceable(dst, marker, what)
            if _exchange(tmp, dst):  # tmp now holds the old version
                fsync_path(dst.parent)
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = _temp_name(dst, "old")
            os.replace(dst, old)
            os.replace(tmp, dst)
            fsync_path(dst.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
            fsync_path(dst.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_file_mode() -> int:
    """The mode a plain open() would give a new file (0o666 less the umask)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a flushed temporary sibling file and ``os.replace``."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dest.parent, dest.name)
    tmp = _temp_name(dest, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        fsync_path(dest.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reraise_os_error(exc, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
