"""Read what a run directory holds, tolerating whatever is missing or half-written.

A run directory may contain ``config.json``, ``metrics.jsonl`` (one JSON object per line),
``results.json`` (a list of ``{"metric", "value", "protocol"}``, or a dict with a ``results``
list), ``predictions.npz`` (``y_true``, ``y_pred``, ``class_names``), ``features.npz``
(``features`` (N, D), ``labels``) and ready-made pictures (``confusion.png``,
``features_map.png``) in the directory itself or in ``eval/``. Every reader here returns
``None`` (or an empty value) for a part that is absent or unreadable and logs why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: numeric keys of a logged step that are not loss parts
NON_LOSS_KEYS = frozenset(
    {"step", "epoch", "lr", "images_per_s", "loader_wait_frac", "time", "grad_norm", "scale"}
)


def is_accuracy_key(key: str) -> bool:
    """Whether a metrics key is an accuracy (kNN / probe monitor), not a loss part."""
    k = key.lower()
    return k.startswith(("knn", "probe")) or "top1" in k or "top5" in k or "acc" in k


@dataclasses.dataclass
class Metrics:
    """The records of ``metrics.jsonl`` sorted by kind.

    Attributes:
        steps: records of logged training steps (those with a ``loss``).
        monitors: kNN / probe monitor records (an accuracy, no loss).
        end: the final ``{"event": "end", ...}`` record, if the run finished writing it.
        skipped: lines that were not JSON objects (a crash mid-write leaves one).
    """

    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    monitors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    end: dict[str, Any] | None = None
    skipped: int = 0

    def loss_keys(self) -> list[str]:
        """Loss parts in first-seen order, ``loss`` first."""
        keys: dict[str, None] = {}
        for rec in self.steps:
            for k, v in rec.items():
                if k not in NON_LOSS_KEYS and not is_accuracy_key(k) and _is_number(v):
                    keys[k] = None
        ordered = list(keys)
        if "loss" in keys:
            ordered.remove("loss")
            ordered.insert(0, "loss")
        return ordered

    def accuracy_keys(self) -> list[str]:
        """Accuracy keys found in monitor records, step records and the end record."""
        keys: dict[str, None] = {}
        for rec in [*self.monitors, *self.steps, *([self.end] if self.end else [])]:
            for k, v in rec.items():
                if is_accuracy_key(k) and _is_number(v):
                    keys[k] = None
        return list(keys)

    def series(self, key: str, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of ``key`` over ``records`` where both are finite numbers."""
        xs, ys = [], []
        for i, rec in enumerate(records):
            v = rec.get(key)
            if _is_number(v) and math.isfinite(v):
                step = rec.get("step", i)
                xs.append(float(step) if _is_number(step) else float(i))
                ys.append(float(v))
        return np.asarray(xs), np.asarray(ys)


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or ``None`` when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """``config.json`` as a dict (``None`` when absent, unreadable or not an object)."""
    cfg = read_json(run_dir / "config.json")
    return cfg if isinstance(cfg, dict) else None


def read_metrics(run_dir: Path) -> Metrics | None:
    """``metrics.jsonl`` sorted into steps, monitors and the end record (``None`` if absent)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    m = Metrics()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            m.skipped += 1
            continue
        if not isinstance(rec, dict):
            m.skipped += 1
        elif rec.get("event") == "end":
            m.end = rec
        elif _is_number(rec.get("loss")):
            m.steps.append(rec)
        elif any(is_accuracy_key(k) for k in rec):
            m.monitors.append(rec)
    if m.skipped:
        log.warning("report: skipped %d unreadable line(s) of %s", m.skipped, path)
    return m


def read_results(run_dir: Path) -> list[dict[str, Any]] | None:
    """The rows of ``results.json`` (a list, or a dict with a ``results`` list)."""
    for path in (run_dir / "results.json", run_dir / "eval" / "results.json"):
        data = read_json(path)
        if isinstance(data, dict):
            data = data.get("results")
        if isinstance(data, list):
            return [r for r in data if isinstance(r, dict)]
    return None


def read_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Arrays of an ``.npz`` holding at least ``required`` (no pickled objects are loaded)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None
    missing = [k for k in required if k not in arrays]
    if missing:
        log.warning("report: %s lacks %s", path, ", ".join(missing))
        return None
    return arrays


def find_npz(run_dir: Path, name: str, required: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """``name`` read from the run directory or its ``eval/`` folder."""
    for path in (run_dir / name, run_dir / "eval" / name):
        arrays = read_npz(path, required)
        if arrays is not None:
            return arrays
    return None


def find_png(run_dir: Path, name: str) -> bytes | None:
    """Bytes of a ready-made PNG in the run directory or ``eval/`` (checked by signature)."""
    for path in (run_dir / name, run_dir / "eval" / name):
        if path.is_file():
            data = path.read_bytes()
            if data.startswith(PNG_SIGNATURE):
                return data
            log.warning("report: %s is not a PNG; ignoring it", path)
    return None
