"""Moved to :mod:`pyxfer.objectives.base` (the objective contract); this module re-exports its
names so that old imports keep working for one release."""

from __future__ import annotations

from pyxfer.objectives.base import (
    CONSUMES,
    Objective,
    create_objective,
    list_objectives,
    objective_consumes,
)

__all__ = ["CONSUMES", "Objective", "create_objective", "list_objectives", "objective_consumes"]
