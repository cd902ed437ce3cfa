"""What the built-in backbone families share: the input-channel rule and width scaling (the
generic argument checks are :mod:`pyxfer._checks`)."""

from __future__ import annotations

from typing import Any


def check_in_chans(in_chans: Any) -> int:
    """``in_chans`` must be 1 (grey) or 3 (RGB)."""
    if isinstance(in_chans, bool) or in_chans not in (1, 3):
        raise ValueError(f"in_chans: expected 1 or 3, received {in_chans!r}")
    return int(in_chans)


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``).

    Never rounds down by more than 10 % (the MobileNet rule), so thin models stay usable.
    """
    v = channels * width
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if out < 0.9 * v:
        out += divisor
    return out
