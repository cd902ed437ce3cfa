"""Image data sets as :class:`ImageStore` objects (numpy + Pillow only; no torch).

A data set is addressed by a spec ``"name"`` or ``"name:ARGUMENT"`` resolved through the
``datasets`` plugin registry::

    load_dataset("digits")                              # embedded 8×8 digits
    load_dataset("folder:photos/", size=64)             # photos/<class>/<file>
    load_dataset("tar:cifar10-test.tar.gz")             # read inside the archive
    load_dataset("idx:mnist-test/")                     # MNIST IDX files
    load_dataset("packed:cifar32/")                     # written by pyxfer pack
    load_dataset("packed:imagenet-shards/")             # pyxfer pack --shard-size N

A bare path that exists is also accepted and its kind guessed (a packed store, an IDX
directory, an archive, or a folder).

Files are data and are read with bounded memory: images over :func:`set_max_image_pixels`'
limit, archive members over ``max_member_bytes`` (``max_total_bytes`` in all), IDX files whose
header claims more than ``max_bytes`` and folders with symlink loops fail with an error.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from pyxfer.data.decode import max_image_pixels, set_max_image_pixels
from pyxfer.data.jpegstore import JpegStore, pack_jpeg
from pyxfer.data.pack import pack
from pyxfer.data.shards import ShardedStore, read_sharded
from pyxfer.data.splits import class_split, few_shot, indices_of_classes, stratified_split
from pyxfer.data.store import ImageStore, read_packed, write_packed

__all__ = [
    "ImageStore",
    "JpegStore",
    "ShardedStore",
    "class_split",
    "few_shot",
    "guess_kind",
    "indices_of_classes",
    "list_datasets",
    "load_dataset",
    "max_image_pixels",
    "pack",
    "pack_jpeg",
    "parse_spec",
    "read_packed",
    "read_sharded",
    "set_max_image_pixels",
    "stratified_split",
    "write_packed",
]

_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _registry() -> Any:
    from pyxfer.pluginmanager import registry

    return registry("datasets")


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered data-set source names matching a shell-style pattern."""
    return _registry().list(pattern)


def guess_kind(path: str | os.PathLike[str]) -> str | None:
    """The source kind of an existing path: packed, idx, tar or folder (None if unknown)."""
    p = Path(path)
    if p.is_file():
        if p.name.lower().endswith(_ARCHIVES):
            return "tar"
        if "idx3" in p.name:
            return "idx"
        return None
    if p.is_dir():
        stored = any((p / f).is_file() for f in ("images.npy", "data.bin"))  # raw or JPEG
        if (p / "meta.json").is_file() and stored:
            return "packed"
        if (p / "shards.json").is_file():
            return "packed"
        if any("idx3" in c.name for c in p.iterdir() if c.is_file()):
            return "idx"
        return "folder"
    return None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"name:ARGUMENT"`` -> (name, argument); ``"name"`` -> (name, None).

    A bare existing path that is not a registered name becomes (guessed kind, path).
    """
    name, sep, argument = spec.partition(":")
    if sep:
        return name, argument
    if name not in _registry():
        kind = guess_kind(spec)
        if kind is not None:
            return kind, spec
    return name, None


def load_dataset(spec: str | os.PathLike[str] | ImageStore, **options: Any) -> ImageStore:
    """Load a data set from a spec (see the module docstring); options go to its factory.

    Raises:
        pyxfer.registry.UnknownNameError: an unknown source name (the message lists close
            matches and the registered names).
        ValueError: an option the source does not take, or a bad argument.
    """
    if isinstance(spec, ImageStore):
        if options:
            raise ValueError(f"options: an ImageStore takes no options, received {sorted(options)}")
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(
            f"spec: expected 'name' or 'name:ARGUMENT', received {type(spec).__name__}"
        )
    spec = os.fspath(spec)
    name, argument = parse_spec(spec)
    entry = _registry().get(name)
    try:
        inspect.signature(entry.factory).bind(argument, **options)
    except ValueError:  # no introspectable signature: let the call decide
        pass
    except TypeError as exc:
        raise ValueError(
            f"dataset {name!r} (from plugin {entry.plugin!r}) does not accept options "
            f"{sorted(options)}: {exc}"
        ) from None
    store = entry.factory(argument, **options)
    if not isinstance(store, ImageStore):
        raise ValueError(
            f"dataset {name!r} (from plugin {entry.plugin!r}) returned "
            f"{type(store).__name__}; expected an ImageStore"
        )
    if not store.source:
        store.source = spec
    if not store.name:
        store.name = spec
    return store
