"""Class-description tables: one row of attributes (or an embedding) per class.

Loaders:

- CSV: a header row, one column with the class name (``name_column``, default the first
  column), the other columns numeric attributes; an optional ``id`` column gives class ids
  (default: row order 0..C-1).
- NPY: a (C, A) array; names optional.
- MATLAB ``.mat`` in the ``att_splits.mat`` layout of the standard AwA2 / CUB / SUN benchmarks
  (Xian et al., CVPR 2017): ``att`` is attributes x classes (A, C), ``allclasses_names`` the
  class names, and ``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc`` 1-based indices of
  images into the matching ``res101.mat`` (returned 0-based). Needs scipy.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.zeroshot._base import check_class_table, rows_for


@dataclass
class ClassDescriptions:
    """A class table.

    Attributes:
        matrix: (C, A) float64, one row per class.
        class_ids: (C,) int64 id of each row.
        names: C class names.
        attribute_names: A attribute names (empty when unknown).
    """

    matrix: np.ndarray
    class_ids: np.ndarray
    names: list[str]
    attribute_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.matrix, self.class_ids = check_class_table(self.matrix, self.class_ids)
        if len(self.names) != self.matrix.shape[0]:
            raise ValueError(
                f"names: expected {self.matrix.shape[0]} class names, received {len(self.names)}"
            )
        if self.attribute_names and len(self.attribute_names) != self.matrix.shape[1]:
            raise ValueError(
                f"attribute_names: expected {self.matrix.shape[1]} names, received "
                f"{len(self.attribute_names)}"
            )
        self.names = [str(n) for n in self.names]

    @property
    def num_classes(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def num_attributes(self) -> int:
        return int(self.matrix.shape[1])

    def select(self, class_ids: Sequence[int]) -> ClassDescriptions:
        """The sub-table of ``class_ids`` (in that order); a missing class is a ValueError."""
        rows = rows_for(self.class_ids, class_ids, "class_ids")
        return ClassDescriptions(
            self.matrix[rows],
            self.class_ids[rows],
            [self.names[i] for i in rows],
            list(self.attribute_names),
        )

    def extend(self, other: ClassDescriptions) -> ClassDescriptions:
        """This table plus the classes of ``other`` (same attributes, new ids): deploy-time."""
        if other.num_attributes != self.num_attributes:
            raise ValueError(
                f"other: expected {self.num_attributes} attributes per class, "
                f"received {other.num_attributes}"
            )
        return ClassDescriptions(
            np.vstack([self.matrix, other.matrix]),
            np.concatenate([self.class_ids, other.class_ids]),
            self.names + other.names,
            list(self.attribute_names),
        )

    def id_of(self, name: str) -> int:
        """Class id of the class called ``name``."""
        try:
            return int(self.class_ids[self.names.index(name)])
        except ValueError:
            raise ValueError(f"name: no class called {name!r} (classes: {self.names})") from None


def load_csv(
    path: str | os.PathLike[str], name_column: str | None = None, id_column: str | None = None
) -> ClassDescriptions:
    """Read a CSV class table (see the module docstring)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ValueError(f"path: expected a header and at least one class row in {path}")
    header = [h.strip() for h in rows[0]]
    name_column = header[0] if name_column is None else name_column
    if name_column not in header:
        raise ValueError(
            f"name_column: {name_column!r} is not a column of {path} (columns: {header})"
        )
    if id_column is None and "id" in header and name_column != "id":
        id_column = "id"
    if id_column is not None and id_column not in header:
        raise ValueError(f"id_column: {id_column!r} is not a column of {path}")
    ni = header.index(name_column)
    ii = header.index(id_column) if id_column is not None else None
    attr_cols = [j for j in range(len(header)) if j not in (ni, ii)]
    names, ids, values = [], [], []
    for lineno, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise ValueError(
                f"path: line {lineno} of {path} has {len(r)} fields, expected {len(header)}"
            )
        names.append(r[ni].strip())
        try:
            if ii is not None:
                ids.append(int(r[ii]))
            values.append([float(r[j]) for j in attr_cols])
        except ValueError as exc:
            raise ValueError(f"path: line {lineno} of {path} is not numeric: {exc}") from None
    return ClassDescriptions(
        np.array(values, dtype=np.float64).reshape(len(names), -1),
        np.array(ids) if ids else np.arange(len(names)),
        names,
        [header[j] for j in attr_cols],
    )


def load_npy(
    path: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    class_ids: Sequence[int] | None = None,
) -> ClassDescriptions:
    """Read a (C, A) ``.npy`` class table."""
    matrix = np.load(Path(path), allow_pickle=False)
    if matrix.ndim != 2:
        raise ValueError(
            f"path: expected a 2-d (classes, attributes) array, received shape {matrix.shape}"
        )
    n = matrix.shape[0]
    return ClassDescriptions(
        matrix,
        np.arange(n) if class_ids is None else np.asarray(class_ids),
        list(names) if names is not None else [str(i) for i in range(n)],
    )


@dataclass
class AttSplits:
    """Contents of an ``att_splits.mat`` file.

    Attributes:
        descriptions: the class table (class ids 0..C-1, the column order of ``att``).
        trainval_loc, test_seen_loc, test_unseen_loc: 0-based image indices.
    """

    descriptions: ClassDescriptions
    trainval_loc: np.ndarray
    test_seen_loc: np.ndarray
    test_unseen_loc: np.ndarray


def _mat_strings(value: Any) -> list[str]:
    out = []
    for item in np.asarray(value, dtype=object).ravel():
        while isinstance(item, np.ndarray) and item.size == 1 and item.dtype == object:
            item = item.ravel()[0]
        if isinstance(item, np.ndarray):
            item = "".join(str(x) for x in item.ravel())
        out.append(str(item).strip())
    return out


def load_att_splits(path: str | os.PathLike[str]) -> AttSplits:
    """Read an ``att_splits.mat`` (AwA2 / CUB / SUN layout) with ``scipy.io.loadmat``."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading .mat class tables needs scipy: pip install scipy") from exc
    path = Path(path)
    data = loadmat(str(path))
    missing = [
        k for k in ("att", "trainval_loc", "test_seen_loc", "test_unseen_loc") if k not in data
    ]
    if missing:
        raise ValueError(f"path: {path} lacks the att_splits.mat key(s) {missing}")
    att = np.asarray(data["att"], dtype=np.float64)  # (A, C)
    if att.ndim != 2:
        raise ValueError(
            f"path: 'att' in {path} should be attributes x classes, received shape {att.shape}"
        )
    num_classes = att.shape[1]
    names = (
        _mat_strings(data["allclasses_names"])
        if "allclasses_names" in data
        else [str(i) for i in range(num_classes)]
    )
    if len(names) != num_classes:
        raise ValueError(
            f"path: {path} has {len(names)} class names for {num_classes} columns of 'att'"
        )
    locs = {}
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
        loc = np.asarray(data[key]).ravel().astype(np.int64)
        if loc.size and loc.min() < 1:
            raise ValueError(f"path: {key} in {path} should be 1-based, found index {loc.min()}")
        locs[key] = loc - 1
    table = ClassDescriptions(att.T.copy(), np.arange(num_classes), names)
    return AttSplits(table, locs["trainval_loc"], locs["test_seen_loc"], locs["test_unseen_loc"])


def load_descriptions(path: str | os.PathLike[str], **kwargs: Any) -> ClassDescriptions:
    """Load a class table from ``.csv``, ``.npy`` or ``.mat`` (by suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return load_csv(path, **kwargs)
    if suffix == ".npy":
        return load_npy(path, **kwargs)
    if suffix == ".mat":
        return load_att_splits(path).descriptions
    raise ValueError(f"path: expected a .csv, .npy or .mat file, received {str(path)!r}")
