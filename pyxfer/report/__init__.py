"""The run report: one self-contained ``report.html`` per run directory.

``write_report(run_dir)`` reads what the run left (``config.json``, ``metrics.jsonl``,
``results.json``, ``predictions.npz``, ``features.npz``, ready-made pictures) and writes a page
with its plots embedded as PNG data URIs, inline CSS and no script, so it opens anywhere and
can be mailed as one file. ``pyxfer report RUN`` regenerates it.
"""

from __future__ import annotations

from pyxfer.report.build import render, write_report

__all__ = ["render", "write_report"]
