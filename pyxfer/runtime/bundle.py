"""The deployment bundle on disk: a directory with ``model.onnx`` and ``pyxfer.json``.

Layout::

    BUNDLE/
      model.onnx          fp32 graph, one self-contained file (dynamic batch)
      model.int8.onnx     static QDQ int8 graph (optional)
      model.ort           ORT-format copy for mobile runtimes (optional)
      classes.npy         zero-shot class-embedding table (K, E) float32 (zero-shot bundles)
      pyxfer.json         metadata (below) + sha256 of every file

``pyxfer.json`` holds ``format`` / ``format_version``, ``task`` (classifier | features |
zeroshot), ``head`` (logits | probs | features), ``class_names``, ``input`` (name, layout,
dtype, channels, size, dynamic axes), ``output`` (name, width), ``preprocess`` (resize, crop,
interpolation, mean, std and whether cast, layout and normalisation are inside the graph),
``zeroshot`` (class table file, logit scale), ``models``, ``metrics``, ``parity``,
``quantization``, ``provenance`` (pyxfer, torch, onnx, onnxruntime, onnxscript and opset
versions) and ``files`` (sha256 and size of each file). Everything except ``files`` is also
stored in each ONNX model's ``metadata_props`` under the key ``pyxfer.json``, so the metadata
travels with the model and a ``pyxfer.json`` edited by hand no longer matches it.

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


class BundleError(ValueError):
    """A bundle is missing, truncated, tampered with, or from an unknown format version."""


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
        path = root / name
        if Path(name).name != name:
            raise BundleError(f"bundle {str(root)!r}: file name {name!r} is not a plain name")
        if not path.is_file():
            raise BundleError(f"bundle {str(root)!r}: {name} is missing (listed in {META_FILE})")
        size = path.stat().st_size
        if size != rec.get("bytes"):
            raise BundleError(
                f"bundle {str(root)!r}: {name} has {size} bytes, expected {rec.get('bytes')} "
                "(truncated or replaced)"
            )
        digest = sha256_file(path)
        if digest != rec.get("sha256"):
            raise BundleError(
                f"bundle {str(root)!r}: {name} sha256 {digest[:16]}... does not match "
                f"{str(rec.get('sha256'))[:16]}... recorded in {META_FILE} (file was modified)"
            )
    for model_file in meta.get("models", {}).values():
        if model_file not in files:
            raise BundleError(f"bundle {str(root)!r}: model {model_file} is not in 'files'")
    return meta


def meta_without_files(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of the metadata that is stored inside each model (everything but ``files``)."""
    return {k: v for k, v in meta.items() if k != "files"}


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys) for comparing metadata."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
