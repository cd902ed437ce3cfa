"""Moved: the collectives to :mod:`pyxfer.objectives.collectives`, the rank queries to
:mod:`pyxfer.engine.dist`; this module re-exports their names so that old imports keep working
for one release."""

from __future__ import annotations

from pyxfer.engine.dist import is_initialized, rank, world_size
from pyxfer.objectives.collectives import gather, gather_offset, gather_with_grad

__all__ = ["gather", "gather_offset", "gather_with_grad", "is_initialized", "rank", "world_size"]
