"""The verification set of an int8 bundle: real inputs and the fp32 outputs, checked on the CPU
that runs the bundle.

int8 results depend on the CPU's integer kernels: x86 CPUs without VNNI add u8 x s8 products in
saturating 16-bit sums (``vpmaddubsw``), CPUs with VNNI in 32-bit sums (``vpdpbusd``), so a model
quantised and measured on one CPU can lose accuracy on another. An int8 bundle therefore
carries a few of its held-out images and what the fp32 model answers for them:

- ``verify_images.npy``: uint8 (N, crop, crop, C), the images after resize and centre crop (the
  model input of a uint8 bundle; a float bundle normalises them with :func:`model_inputs`);
- ``verify_outputs.npy``: float32 (N, width), the fp32 model's outputs for them.

Both are plain ``.npy`` files (read with ``allow_pickle=False``), listed and hashed in
``files`` like every other file, bounded (:data:`MAX_IMAGES`, :data:`MAX_BYTES`) and checked
when loaded. ``pyxfer.json`` names them under ``verification`` together with what the int8
model scored on them where it was exported and the tolerance the runtime applies:
:class:`~pyxfer.runtime.Predictor` runs the int8 model on the set when it loads it and compares
with the fp32 outputs (:func:`compare`).

Torch-free: numpy, ``pyxfer._C`` and the standard library.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.runtime import bundle as fmt
from pyxfer.runtime._preprocess import preprocess

IMAGES_FILE = "verify_images.npy"
OUTPUTS_FILE = "verify_outputs.npy"
#: images a verification set may hold (a bundle asking for more is refused)
MAX_IMAGES = 1024
#: bytes one verification file may take (a bundle listing a bigger one is refused)
MAX_BYTES = 64 << 20
#: the runtime tolerance: the int8 relative error on this CPU may be at most
#: ``max(REL_ERROR_FACTOR * error at export, error at export + REL_ERROR_MARGIN)``
REL_ERROR_FACTOR = 1.5
REL_ERROR_MARGIN = 0.02
#: ... and its top-1 agreement with fp32 at least the agreement at export minus this
AGREEMENT_MARGIN = 0.05


def int8_isa() -> str:
    """The instruction set onnxruntime's x86 int8 kernels use on this CPU, as CPUID reports it:
    ``"avx512-vnni"``, ``"avx-vnni"``, ``"avx512"`` (no VNNI), ``"avx2"``, ``"sse"``, or the
    machine name elsewhere (``"aarch64"``)."""
    try:
        from pyxfer import _C

        isa = _C.build_info().get("int8_isa")
    except Exception:  # an extension built without it
        isa = None
    if isa:
        return str(isa)
    import platform

    return platform.machine().lower() or "unknown"


def model_inputs(images: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """What the graph takes for verification ``images`` (uint8 (N, crop, crop, C)): the images
    themselves for a uint8 bundle, else normalised float32 (N, C, crop, crop)."""
    if meta["input"]["dtype"] == "uint8":
        return images
    pre = meta["preprocess"]
    crop = int(pre["crop"])
    return preprocess(images, resize=crop, crop=crop, mean=pre["mean"], std=pre["std"])


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``||got - want|| / ||want||`` over all values (float64)."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    den = float(np.linalg.norm(w))
    return float(np.linalg.norm(g - w)) / den if den > 0 else float(np.linalg.norm(g))


def compare(
    got: np.ndarray, want: np.ndarray, scores: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict[str, float]:
    """int8 outputs ``got`` against fp32 outputs ``want`` (N, width): the relative error, and
    the top-1 agreement of ``scores(outputs)`` (class scores; None: features, no agreement)."""
    out = {"rel_error": relative_error(got, want)}
    if scores is not None:
        out["top1_agreement"] = float((scores(got).argmax(1) == scores(want).argmax(1)).mean())
    return out


def tolerance(at_export: dict[str, float]) -> dict[str, float]:
    """The tolerance the runtime applies, from what the int8 model scored at export."""
    err = at_export["rel_error"]
    tol = {"max_rel_error": max(REL_ERROR_FACTOR * err, err + REL_ERROR_MARGIN)}
    if "top1_agreement" in at_export:
        tol["min_top1_agreement"] = max(0.0, at_export["top1_agreement"] - AGREEMENT_MARGIN)
    return tol


def within(measured: dict[str, float], tol: dict[str, float]) -> list[str]:
    """What is out of tolerance (empty when ``measured`` holds)."""
    problems = []
    if not measured["rel_error"] <= tol["max_rel_error"]:
        problems.append(f"relative error {measured['rel_error']:.4f} > {tol['max_rel_error']:.4f}")
    agreement, least = measured.get("top1_agreement"), tol.get("min_top1_agreement")
    if agreement is not None and least is not None and not agreement >= least:
        problems.append(f"top-1 agreement {agreement:.1%} < {least:.1%}")
    return problems


def _error(root: Path, message: str) -> fmt.BundleError:
    return fmt.BundleError(f"bundle {str(root)!r}: {message}")


def _number(root: Path, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(root, f"verification.{what} {value!r} is not a finite number")
    return float(value)


def _array(root: Path, meta: dict[str, Any], name: Any, what: str) -> np.ndarray:
    name = fmt.check_listed(root, meta, name, f"verification.{what}")
    size = meta["files"][name].get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_BYTES:
        raise _error(
            root,
            f"{name} has {size!r} bytes, expected 1 to {MAX_BYTES} "
            "(pyxfer.runtime.verification.MAX_BYTES)",
        )
    raw = fmt.read_file(root, meta, name, f"verification.{what}")
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _error(root, f"{name} is not a .npy array ({exc})") from exc


def load(root: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The verification set of a bundle: (images, fp32 outputs, its ``verification`` record
    with the tolerance as numbers).

    Raises:
        BundleError: no set, a file that is not listed, too big, not a plain ``.npy``, or of
            the wrong dtype or shape, or a tolerance that is not a number.
    """
    rec = meta.get("verification")
    if not isinstance(rec, dict):
        raise _error(root, "has no verification set ('verification' in pyxfer.json)")
    images = _array(root, meta, rec.get("images"), "images")
    outputs = _array(root, meta, rec.get("outputs"), "outputs")
    inp = meta["input"]
    crop, channels = inp["size"], int(inp["channels"])
    want = (crop[0], crop[1], channels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
        raise _error(
            root,
            f"{rec['images']} holds {images.dtype} {images.shape}, expected uint8 "
            f"(N, {want[0]}, {want[1]}, {want[2]})",
        )
    n = images.shape[0]
    if not 1 <= n <= MAX_IMAGES:
        raise _error(root, f"{rec['images']} holds {n} images, expected 1 to {MAX_IMAGES}")
    width = meta.get("output", {}).get("width")
    if isinstance(width, bool) or not isinstance(width, int):
        raise _error(root, f"output.width {width!r} is not an integer")
    if outputs.dtype != np.float32 or outputs.shape != (n, width):
        raise _error(
            root,
            f"{rec['outputs']} holds {outputs.dtype} {outputs.shape}, expected float32 "
            f"({n}, {width})",
        )
    if not np.isfinite(outputs).all():
        raise _error(root, f"{rec['outputs']} holds values that are not finite")
    tol = rec.get("tolerance")
    if not isinstance(tol, dict) or "max_rel_error" not in tol:
        raise _error(root, "verification.tolerance has no max_rel_error")
    checked = {k: _number(root, v, f"tolerance.{k}") for k, v in tol.items()}
    return images, outputs, {**rec, "tolerance": checked}
