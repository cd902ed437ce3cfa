"""Built-in data-set sources, registered through the ``pyxfer`` entry points.

========  =====================  ==========================================================
name      argument               what it reads
========  =====================  ==========================================================
digits    (none) or ``mnist``    scikit-learn's 1,797 8×8 digits (embedded, no download);
                                 ``digits:mnist`` frames them as MNIST's 28×28 digits
folder    a directory            ``DIR/<class>/<file>`` image files, or a flat folder
tar       an archive             a ``.tar[.gz]`` of a class-per-folder tree, read in place
idx       a directory or file    MNIST-style IDX files (raw or gzip)
packed    a directory            a store written by ``pyxfer pack`` (memory-mapped; raw pixels
                                 or JPEG bytes), or a directory of such stores (``--shard-size``)
========  =====================  ==========================================================

Sources marked ``resizes=True`` accept ``size``/``channels``/``fit``/``threads``/``on_error``
and decode straight to the requested size (``pyxfer pack`` uses that).
"""

from __future__ import annotations

from typing import Any

from pyxfer import hookimpl
from pyxfer.hookspecs import Register


def _need(name: str, argument: str | None, what: str) -> str:
    if not argument:
        raise ValueError(f"{name}: expected {name}:{what}, received no argument")
    return argument


def digits(argument: str | None = None) -> Any:
    """scikit-learn's bundled 8×8 digits; ``digits:mnist`` frames them as MNIST's."""
    if argument not in (None, "", "mnist"):
        raise ValueError(f"digits: expected no argument or 'mnist', received {argument!r}")
    from pyxfer.data.digits import read_digits

    return read_digits(frame=argument or None)


def folder(argument: str | None = None, **options: Any) -> Any:
    """``folder:DIR``, options of :func:`pyxfer.data.folder.read_folder`."""
    from pyxfer.data.folder import read_folder

    return read_folder(_need("folder", argument, "DIR"), **options)


def tar(argument: str | None = None, **options: Any) -> Any:
    """``tar:ARCHIVE``, options of :func:`pyxfer.data.tar.read_tar`."""
    from pyxfer.data.tar import read_tar

    return read_tar(_need("tar", argument, "ARCHIVE.tar.gz"), **options)


def idx(argument: str | None = None, **options: Any) -> Any:
    """``idx:DIR`` or ``idx:IMAGES-FILE``, options of :func:`pyxfer.data.idx.read_idx`."""
    from pyxfer.data.idx import read_idx

    return read_idx(_need("idx", argument, "DIR"), **options)


def packed(
    argument: str | None = None, *, mmap: bool = True, on_error: str = "raise", verify: bool = False
) -> Any:
    """``packed:DIR``, a store written by ``pyxfer pack``: raw pixels or JPEG bytes, sharded or
    not. ``on_error="skip"`` lets the loader drop corrupt images of a compressed (JPEG) store
    instead of stopping; ``verify`` hashes every file of a sharded store against its index."""
    from pyxfer.data.jpegstore import is_jpeg_store, read_jpeg_store
    from pyxfer.data.shards import is_sharded, read_sharded
    from pyxfer.data.store import read_packed

    root = _need("packed", argument, "DIR")
    if is_sharded(root):
        return read_sharded(root, verify=verify, on_error=on_error)
    if verify:
        raise ValueError("verify: only a sharded store has an index of hashes; received True")
    if is_jpeg_store(root):
        return read_jpeg_store(root, mmap=mmap, on_error=on_error)
    if on_error != "raise":
        raise ValueError(f"on_error: a raw packed store decodes nothing; received {on_error!r}")
    return read_packed(root, mmap=mmap)


@hookimpl
def pyxfer_register_datasets(register: Register) -> None:
    register(
        "digits",
        digits,
        description="scikit-learn 8x8 digits (1,797 images, embedded); digits:mnist at 28 px",
    )
    register("folder", folder, description="folder:DIR of DIR/<class>/<image> files", resizes=True)
    register("tar", tar, description="tar:ARCHIVE of a class-per-folder image tree", resizes=True)
    register("idx", idx, description="idx:DIR with MNIST-style IDX files (raw or .gz)")
    register("packed", packed, description="packed:DIR written by pyxfer pack (memory-mapped)")
