"""The deployment bundle on disk: a directory with ``model.onnx`` and ``pyxfer.json``.

Layout::

    BUNDLE/
      model.onnx          fp32 graph, one self-contained file (dynamic batch)
      model.int8.onnx     static QDQ int8 graph (optional)
      verify_images.npy   int8 verification set: held-out images after resize and crop, uint8
      verify_outputs.npy  ... and the fp32 outputs for them, float32 (both with model.int8.onnx)
      model.ort           ORT-format copy for mobile runtimes (optional)
      classes.npy         zero-shot class-embedding table (K, E) float32 (zero-shot bundles)
      pyxfer.json         metadata (below) + sha256 of every file

``pyxfer.json`` holds ``format`` / ``format_version``, ``task`` (classifier | features |
zeroshot), ``head`` (logits | probs | features), ``class_names``, ``input`` (name, layout,
dtype, channels, size, dynamic axes), ``output`` (name, width), ``preprocess`` (resize, crop,
interpolation, mean, std and whether cast, layout and normalisation are inside the graph),
``zeroshot`` (class table file, logit scale), ``models``, ``metrics``, ``parity``,
``quantization``, ``verification`` (the int8 verification set: see
:mod:`pyxfer.runtime.verification`), ``provenance`` (pyxfer, torch, onnx, onnxruntime,
onnxscript and opset versions) and ``files`` (sha256 and size of each file). Everything
except ``files`` is also stored in each ONNX model's ``metadata_props`` under the key
``pyxfer.json``, so the metadata travels with the model and a ``pyxfer.json`` edited by hand
no longer matches it.

A bundle is data: every file it reads is listed in ``files`` by a plain name (no directory
part) with its size and sha256, and is read through :func:`read_file`, which hashes the very
bytes it returns (what is checked is what is used; nothing is reopened by path). The hashes
catch corruption and accidental edits; they do not authenticate the bundle: whoever can write
the bundle can rewrite the hashes too (that would take a signature). The numbers of the spec
are bounded (:data:`MAX_SIDE`).

This module needs only the standard library and numpy (no torch, no onnx).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT = "pyxfer-bundle"
FORMAT_VERSION = 1
META_FILE = "pyxfer.json"
METADATA_KEY = "pyxfer.json"
TASKS = ("classifier", "features", "zeroshot")
HEADS = ("logits", "probs", "features")
INPUTS = ("float-nchw", "uint8-nhwc")


#: the largest image side (``crop``, ``resize``) a bundle may ask for; a bundle over it is
#: refused when it loads (a (60000, 60000) input would need 43 GB per image). Raise it by
#: assigning ``pyxfer.runtime.bundle.MAX_SIDE`` before loading the bundle.
MAX_SIDE = 4096


class BundleError(ValueError):
    """A bundle is missing, truncated, tampered with, or from an unknown format version."""


def is_plain_name(name: object) -> bool:
    """True for a file name without a directory part (no ``/``, ``\\``, ``..``, NUL)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
    )


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_records(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256": ..., "bytes": ...}}`` for the files ``names`` under ``root``."""
    return {n: {"sha256": sha256_file(root / n), "bytes": (root / n).stat().st_size} for n in names}


def read_meta(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``pyxfer.json`` of a bundle: format, version, files and their sha256.

    Raises:
        BundleError: naming what is wrong (no such directory, missing or unreadable
            ``pyxfer.json``, another format, an unknown version, a missing file, a size or
            sha256 mismatch).
    """
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"bundle: expected a bundle directory, received {str(root)!r}")
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"bundle {str(root)!r}: {META_FILE} is missing (not a pyxfer bundle)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {str(root)!r}: {META_FILE} is unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise BundleError(f"bundle {str(root)!r}: expected format {FORMAT!r}, received {got!r}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {str(root)!r}: format_version {version!r} is not supported by this pyxfer "
            f"(it reads version {FORMAT_VERSION}); re-export the model or upgrade pyxfer"
        )
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"bundle {str(root)!r}: {META_FILE} lists no files")
    for name, rec in files.items():
        if not is_plain_name(name) or name == META_FILE:
            raise BundleError(f"bundle {str(root)!r}: file name {name!r} is not a plain name")
        if not isinstance(rec, dict):
            raise BundleError(f"bundle {str(root)!r}: the record of {name} is not an object")
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {str(root)!r}: {name} is missing (listed in {META_FILE})")
        _check_record(root, name, path.stat().st_size, None, rec)
        _check_record(root, name, None, sha256_file(path), rec)
    models = meta.get("models", {})
    if not isinstance(models, dict):
        raise BundleError(f"bundle {str(root)!r}: 'models' is not an object")
    for kind, model_file in models.items():
        check_listed(root, meta, model_file, f"models.{kind}")
    zeroshot = meta.get("zeroshot")
    if zeroshot is not None:
        if not isinstance(zeroshot, dict):
            raise BundleError(f"bundle {str(root)!r}: 'zeroshot' is not an object")
        check_listed(root, meta, zeroshot.get("classes_file"), "zeroshot.classes_file")
    return meta


def check_listed(root: Path, meta: dict[str, Any], name: Any, what: str) -> str:
    """``name`` if it is a plain name listed (hashed) in ``files``; else a :class:`BundleError`.

    ``what`` names the field that referred to the file (``"zeroshot.classes_file"``).
    """
    if not is_plain_name(name):
        raise BundleError(
            f"bundle {str(root)!r}: {what} {name!r} is not a plain name (a bundle only reads "
            "files of its own directory)"
        )
    if name not in meta.get("files", {}) or name == META_FILE:
        raise BundleError(
            f"bundle {str(root)!r}: {what} {name!r} is not listed in 'files' of {META_FILE} "
            "(every file a bundle reads is listed with its sha256)"
        )
    return str(name)


def _check_record(
    root: Path, name: str, size: int | None, digest: str | None, rec: dict[str, Any]
) -> None:
    if size is not None and size != rec.get("bytes"):
        raise BundleError(
            f"bundle {str(root)!r}: {name} has {size} bytes, expected {rec.get('bytes')} "
            "(truncated or replaced)"
        )
    if digest is not None and digest != rec.get("sha256"):
        raise BundleError(
            f"bundle {str(root)!r}: {name} sha256 {digest[:16]}... does not match "
            f"{str(rec.get('sha256'))[:16]}... recorded in {META_FILE} (file was modified)"
        )


def read_file(root: Path, meta: dict[str, Any], name: Any, what: str) -> bytes:
    """The bytes of the bundle file ``name``, read once and checked against its record.

    The returned bytes are the ones hashed, so nothing can change between the check and the
    use. ``name`` must be a plain name listed in ``files`` (``what`` names the field that
    referred to it, for the error).

    Raises:
        BundleError: the name is not plain or not listed, or the size or sha256 differ.
    """
    name = check_listed(root, meta, name, what)
    rec = meta["files"][name]
    try:
        with open(root / name, "rb") as fh:
            data = fh.read(int(rec.get("bytes", 0)) + 1)  # one more: a grown file shows
    except OSError as exc:
        raise BundleError(f"bundle {str(root)!r}: {name} cannot be read ({exc})") from exc
    _check_record(root, name, len(data), hashlib.sha256(data).hexdigest(), rec)
    return data


def meta_without_files(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of the metadata that is stored inside each model (everything but ``files``)."""
    return {k: v for k, v in meta.items() if k != "files"}


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys) for comparing metadata."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
