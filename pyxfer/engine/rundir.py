"""Run directories: one run per directory, never two mixed.

A run directory holds ``config.json`` (with ``run.format == "pyxfer.run"`` and the run's id,
``run.id``), ``metrics.jsonl``, ``checkpoints/`` and ``model/`` (see
:mod:`pyxfer.engine.trainer`). :func:`claim` is called before a run writes anything:

- a directory that already holds a run is refused, unless the run resumes it (``resume``)
  or replaces it (``overwrite``);
- ``overwrite`` deletes only what pyxfer writes into a run directory (:data:`RUN_FILES`), and
  only when the directory is a pyxfer run: other files stay, a folder that is not a run is
  refused.

Every checkpoint names the id of its run, so pruning and resuming never pick up a checkpoint
of another run (see :mod:`pyxfer.engine.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger("pyxfer.engine")

#: ``config.json["run"]["format"]`` of a run directory
RUN_FORMAT = "pyxfer.run"
#: entries whose presence means a directory holds a run
RUN_MARKS = ("config.json", "metrics.jsonl", "checkpoints")
#: what a run (pretrain, finetune, adapt) writes into its directory: ``overwrite`` deletes
#: these and nothing else
RUN_FILES = (
    *RUN_MARKS,
    "model",
    "report.html",
    "results.json",
    "predictions.npz",
    "features.npz",
    "environment.json",
)


def new_run_id() -> str:
    return uuid.uuid4().hex


def read_config(run: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``RUN/config.json`` as a dict, or ``None`` when missing or unreadable."""
    try:
        doc = json.loads((Path(run) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def run_id(run: str | os.PathLike[str]) -> str | None:
    """The id recorded in ``RUN/config.json`` (``None``: none, a run written before ids)."""
    doc = read_config(run) or {}
    info = doc.get("run")
    return info.get("id") if isinstance(info, dict) else None


def is_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a pyxfer run: a ``config.json`` that pyxfer wrote (the run
    format, or every setting of a training configuration, as runs before the format had)."""
    from pyxfer.engine.config import TrainConfig

    doc = read_config(path)
    if doc is None:
        return False
    info = doc.get("run")
    if isinstance(info, dict) and info.get("format") == RUN_FORMAT:
        return True
    import dataclasses

    return {f.name for f in dataclasses.fields(TrainConfig)} <= set(doc)


def holds_run(path: str | os.PathLike[str]) -> list[str]:
    """The entries of ``path`` that show it holds a run (empty: it holds none)."""
    p = Path(path)
    return [name for name in RUN_MARKS if (p / name).exists()]


def claim(
    path: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> None:
    """Make ``path`` ready for a new run, or refuse it (``ValueError`` naming it).

    Args:
        path: the run directory (``out``).
        resume: the run being continued; ``path`` may hold that run and no other.
        overwrite: replace the run that ``path`` holds (its :data:`RUN_FILES` are deleted).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"out: {os.fspath(p)!r} exists and is not a directory")
    if resume is not None:
        if overwrite:
            raise ValueError("overwrite, resume: give one of them, received both")
        if p.exists() and os.path.samefile(p, resume):
            return
    marks = holds_run(p)
    if not marks:
        return
    if not overwrite:
        raise ValueError(
            f"out: {os.fspath(p)!r} already holds a run ({', '.join(marks)}); continue it "
            "with resume (--resume), replace it with overwrite (--overwrite) or choose a new "
            "directory"
        )
    if not is_run(p):
        raise ValueError(
            f"out: {os.fspath(p)!r} has {', '.join(marks)} but is not a run written by pyxfer "
            "(its config.json is not a pyxfer run's); not deleting anything: choose a new "
            "directory or remove it yourself"
        )
    removed = []
    for name in RUN_FILES:
        entry = p / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
        else:
            continue
        removed.append(name)
    log.warning("overwrite: removed the previous run's %s from %s", ", ".join(removed), p)
