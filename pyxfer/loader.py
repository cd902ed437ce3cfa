"""Moved to :mod:`pyxfer.engine.loader` (the engine owns the loader and everything about
ranks); this module re-exports its names so that old imports keep working for one release."""

from __future__ import annotations

from pyxfer.engine.loader import Batch, FusedLoader

__all__ = ["Batch", "FusedLoader"]
