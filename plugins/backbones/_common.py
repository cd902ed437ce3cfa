"""Argument checks shared by the built-in backbone families."""

from __future__ import annotations

from typing import Any


def check_in_chans(in_chans: Any) -> int:
    """``in_chans`` must be 1 (grey) or 3 (RGB)."""
    if isinstance(in_chans, bool) or in_chans not in (1, 3):
        raise ValueError(f"in_chans: expected 1 or 3, received {in_chans!r}")
    return int(in_chans)


def check_positive(name: str, value: Any, kind: type = float) -> Any:
    """``value`` must be a positive number (an ``int`` when ``kind`` is int)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and kind is int:
        ok = isinstance(value, int)
    if not ok:
        what = "a positive integer" if kind is int else "a positive number"
        raise ValueError(f"{name}: expected {what}, received {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"{name}: expected one of {', '.join(map(repr, choices))}, received {value!r}"
        )
    return value


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``).

    Never rounds down by more than 10 % (the MobileNet rule), so thin models stay usable.
    """
    v = channels * width
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if out < 0.9 * v:
        out += divisor
    return out
