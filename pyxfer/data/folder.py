"""Folders of image files: ``root/<class>/<file>`` (labelled) or a flat folder (unlabelled).

Class names are the sub-folder names sorted as strings; class id ``k`` is the ``k``-th name
(the torchvision ``ImageFolder`` convention). Files inside a class folder are found
recursively, hidden files are ignored, extensions are matched case-insensitively
(jpg, jpeg, png, bmp, webp, gif, tif, tiff). If ``root`` has no sub-folder with images, its own
image files form an unlabelled store. Linked directories are followed; a symlink loop (a link
to a directory it sits in) is an error naming the link.

Images are decoded with Pillow in a thread pool and converted to RGB (``channels=3``, default)
or grey (``channels=1``). With ``size`` every image is resized to S×S (see
:mod:`pyxfer.data.decode` for the ``fit`` modes) and the store is dense; without it the store
is dense when all images happen to share one size and ragged otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from pyxfer.data.decode import check_options, decode_to_store, is_image_name
from pyxfer.data.store import ImageStore

log = logging.getLogger("pyxfer.data")


def _identity(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)  # follows links: the directory itself
    return st.st_dev, st.st_ino


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, hidden entries skipped), sorted.

    Directory links are followed, but a link back to a directory it sits in (a symlink loop,
    which would make the walk endless) is an error naming the link.
    """
    found: list[Path] = []
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (os.fspath(folder), frozenset({_identity(folder)}))
    ]
    while stack:
        directory, ancestors = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():  # follows links
                    key = _identity(entry.path)
                    if key in ancestors:
                        raise ValueError(
                            f"folder: {entry.path} leads back to a directory it is in (a "
                            "symlink loop); remove or replace the link"
                        )
                    stack.append((entry.path, ancestors | {key}))
                elif is_image_name(entry.name) and entry.is_file():
                    found.append(Path(entry.path))
    return sorted(found)


def scan_folder(
    root: str | os.PathLike[str], *, unlabelled: bool = False
) -> tuple[list[Path], np.ndarray, list[str]]:
    """List the image files of a folder data set.

    Returns:
        (paths, labels, class_names): sorted file paths, int64 (N,) labels (-1 when
        unlabelled) and the sorted class names.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: no directory at {str(root)!r}")
    if unlabelled:
        paths = _images_under(root)
        return paths, np.full(len(paths), -1, np.int64), []
    class_names: list[str] = []
    paths, labels = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images_under(sub)
        if not files:
            continue
        paths.extend(files)
        labels.extend([len(class_names)] * len(files))
        class_names.append(sub.name)
    loose = sorted(p for p in root.iterdir() if p.is_file() and is_image_name(p.name))
    if not class_names:
        return loose, np.full(len(loose), -1, np.int64), []
    if loose:
        log.warning(
            "folder %s: ignoring %d image(s) directly under the root (not in a class folder)",
            root,
            len(loose),
        )
    return paths, np.asarray(labels, np.int64), class_names


def read_folder(
    root: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    fit: str = "crop",
    threads: int = 0,
    on_error: str = "raise",
    unlabelled: bool = False,
    progress: bool | None = None,
    draft: bool = True,
) -> ImageStore:
    """Read a folder of images into an :class:`ImageStore`.

    Args:
        root: ``root/<class>/<file>`` for a labelled set, or a flat folder of images.
        size: S (S×S) or (H, W) to resize every image to; ``None`` keeps the decoded sizes.
        channels: 3 (RGB) or 1 (grey).
        fit: ``"crop"`` (centre crop to the target aspect, then resize) or ``"stretch"``.
        threads: decoding threads (0: one per core).
        on_error: ``"raise"`` stops at the first unreadable file with an error naming it;
            ``"skip"`` leaves it out with a warning naming it.
        unlabelled: ignore class folders and take every image below ``root`` unlabelled.
        progress: show a progress bar (``None``: only on a terminal).
        draft: let Pillow decode JPEGs at a reduced scale when resizing (faster).
    """
    hw = check_options(size, channels, fit, on_error)
    if channels is None:
        channels = 3
    paths, labels, class_names = scan_folder(root, unlabelled=unlabelled)
    if not paths:
        raise ValueError(
            f"folder: no image files ({', '.join(('jpg', 'png', 'bmp', 'webp', 'gif', 'tif'))}) "
            f"found under {str(root)!r}"
        )
    return decode_to_store(
        "folder",
        root,
        [str(p) for p in paths],
        [str(p) for p in paths],
        labels,
        class_names,
        hw=hw,
        channels=channels,
        fit=fit,
        threads=threads,
        on_error=on_error,
        progress=progress,
        draft=draft,
    )
