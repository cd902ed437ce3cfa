"""The one set of argument checks: each raises a ``ValueError`` naming the argument, what was
expected and what was received, and returns the value in the form the caller works with.

numpy is the only import (``pyxfer.data`` stays torch-free and uses these too).

- scalars: :func:`check` (any predicate), :func:`check_int`, :func:`check_number`,
  :func:`check_choice`;
- arrays: :func:`check_features` (a finite real (N, D) table), :func:`check_class_indices`
  (labels that index a class list: integers >= 0) and :func:`check_class_ids` (labels that
  name classes of a class table: any integers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def check(name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise ``ValueError("{name}: expected {expected}, received {value!r}")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name}: expected {expected}, received {value!r}")


def check_int(name: str, value: Any, low: int = 0) -> int:
    """``value`` must be an ``int`` (not a ``bool``) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name}: expected {what}, received {value!r}")
    return value


def check_number(
    name: str, value: Any, low: float = 0.0, high: float = math.inf, low_open: bool = False
) -> float:
    """``value`` must be a real number (not a ``bool``) in ``[low, high]`` (``(low, high]`` if
    ``low_open``); NaN never is. Returns it as a ``float``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        if high == math.inf and low == 0 and low_open:
            what = "a positive number"
        elif high == math.inf:
            what = f"a number {'>' if low_open else '>='} {low}"
        else:
            lo = "(" if low_open else "["
            what = f"a number in {lo}{low}, {high}]"
        raise ValueError(f"{name}: expected {what}, received {value!r}")
    return float(value)


def check_choice(name: str, value: T, choices: Sequence[T]) -> T:
    """``value`` must be one of ``choices`` (compared with ``==``)."""
    if value not in choices:
        raise ValueError(
            f"{name}: expected one of {', '.join(map(repr, choices))}, received {value!r}"
        )
    return value


def check_features(
    x: Any,
    name: str = "X",
    *,
    dtype: type[np.floating[Any]] = np.float64,
    layout: str = "(N, D)",
    min_rows: int = 0,
) -> np.ndarray:
    """``x`` as a C-contiguous finite ``dtype`` array of shape (N, D) with D >= 1.

    Any real dtype is accepted (integer tables, such as 0/1 attributes, are features too);
    bool, complex and object arrays are not.

    Args:
        x: the array-like to check.
        name: the argument's name in errors.
        dtype: the floating dtype returned (float32 for the C++ kernels, float64 for solvers).
        layout: how the errors describe the two axes (``"(num_classes, num_attributes)"``).
        min_rows: the fewest rows accepted (0: an empty set is a valid input, its metrics are
            NaN; fitting needs 1).
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array {layout}, received shape {arr.shape}")
    if arr.shape[0] < min_rows or arr.shape[1] == 0:
        rows = "a non-empty array" if min_rows <= 1 else f"at least {min_rows} rows"
        raise ValueError(f"{name}: expected {rows} {layout}, received shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, received dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows_bad = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name}: expected finite values, received NaN/inf in {rows_bad.size} row(s) "
            f"(first: row {int(rows_bad[0])})"
        )
    return arr


def check_class_indices(labels: Any, n: int, name: str) -> np.ndarray:
    """int64 (n,) labels that index a class list (integers >= 0; -1 "unlabelled" is refused).

    Used where a label is a position in ``class_names`` (evaluation protocols, plots).
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) (one label per row), received {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids, received dtype {lab.dtype}")
    lab = lab.astype(np.int64, copy=False)
    if lab.size and lab.min() < 0:
        raise ValueError(
            f"{name}: expected class ids >= 0 (labelled images only), received {int(lab.min())}"
        )
    return lab


def check_class_ids(y: Any, n: int, name: str = "y") -> np.ndarray:
    """int64 (n,) labels that name classes of a class table (any integers; whole-valued floats,
    as MATLAB tables store them, are converted).

    Used where a label is looked up among ``class_ids`` (zero-shot learning), not indexed.
    """
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-d array of {n} labels, received shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class ids, received dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)
