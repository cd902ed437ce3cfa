"""Evaluation results that carry their protocol, JSON round-trips and a plain-text table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyxfer.fileio import atomic_write_json

RESULTS_FORMAT = "pyxfer-eval"
RESULTS_VERSION = 1


@dataclass
class Result:
    """One number and everything needed to reproduce it.

    Attributes:
        metric: what was measured, e.g. ``"knn/top1"``, ``"linear/per_class_mean"``,
            ``"fewshot-5/top1"``.
        value: the number (accuracies are fractions in [0, 1]).
        protocol: how it was measured: protocol name, split, k, temperature, the chosen
            regularisation, image size, model id, data set, seeds... (JSON-serialisable).
        std: standard deviation over repeated draws (few-shot), ``None`` for a single run.

    Examples:
        >>> r = Result("knn/top1", 0.9, {"protocol": "knn", "k": 200, "temperature": 0.07})
        >>> Result.from_dict(r.to_dict()) == r
        True
    """

    metric: str
    value: float
    protocol: dict[str, Any] = field(default_factory=dict)
    std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (NaN becomes ``None``)."""
        d: dict[str, Any] = {"metric": self.metric, "value": _num(self.value)}
        if self.std is not None:
            d["std"] = _num(self.std)
        d["protocol"] = _jsonable(self.protocol)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """Inverse of :meth:`to_dict`."""
        value = float("nan") if d["value"] is None else float(d["value"])
        std = d.get("std")
        return cls(d["metric"], value, dict(d.get("protocol", {})), None if std is None else std)


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples so that ``json.dumps`` accepts them."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def results_to_json(results: Sequence[Result], meta: dict[str, Any] | None = None) -> dict:
    """The ``results.json`` document: format tag, shared metadata and every result."""
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "meta": _jsonable(meta or {}),
        "results": [r.to_dict() for r in results],
    }


def save_results(
    path: str | os.PathLike[str], results: Sequence[Result], meta: dict[str, Any] | None = None
) -> Path:
    """Write ``results.json`` atomically; returns the path."""
    doc = results_to_json(results, meta)
    json.dumps(doc)  # fail before writing if something is not serialisable
    return atomic_write_json(path, doc)


def load_results(path: str | os.PathLike[str]) -> tuple[list[Result], dict[str, Any]]:
    """Read a file written by :func:`save_results`: (results, meta)."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != RESULTS_FORMAT:
        raise ValueError(
            f"path: expected a {RESULTS_FORMAT!r} results file, received format "
            f"{doc.get('format')!r}"
        )
    return [Result.from_dict(d) for d in doc["results"]], dict(doc.get("meta", {}))


# protocol fields worth a column in the table, in this order, when present
_SHOWN = ("k", "temperature", "C", "shots", "draws", "method", "train", "test")


def format_table(results: Iterable[Result], percent: bool = True) -> str:
    """A plain-text table: metric, value (± std), and the key protocol settings.

    Examples:
        >>> print(format_table([Result("knn/top1", 0.5, {"k": 20, "temperature": 0.07})]))
        metric    value   settings
        knn/top1  50.00%  k=20 temperature=0.07
    """
    rows = [("metric", "value", "settings")]
    for r in results:
        if math.isnan(r.value):
            val = "n/a"
        elif percent:
            val = f"{100 * r.value:.2f}%"
            if r.std is not None:
                val += f" ± {100 * r.std:.2f}"
        else:
            val = f"{r.value:.4g}" + (f" ± {r.std:.2g}" if r.std is not None else "")
        settings = " ".join(f"{k}={_short(r.protocol[k])}" for k in _SHOWN if k in r.protocol)
        rows.append((r.metric, val, settings))
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
