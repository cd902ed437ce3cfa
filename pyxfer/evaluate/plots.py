"""Moved to :mod:`pyxfer.report.plots` (every figure pyxfer draws is there); this module
re-exports the names it had so that old imports keep working for one release."""

from __future__ import annotations

from pyxfer.report.plots import PROJECTIONS, plot_confusion, plot_feature_map, project_2d

__all__ = ["PROJECTIONS", "plot_confusion", "plot_feature_map", "project_2d"]
