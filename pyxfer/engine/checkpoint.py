"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory ``RUN/checkpoints/step-00000042/`` with

- ``tensors.safetensors``: ``model.<name>`` (the objective's state dict: backbone, heads,
  momentum encoders, queues), ``optimizer.<parameter name>.<state key>`` (momentum buffers,
  Adam moments and step counters), ``ema.<name>`` (EMA weights, when enabled);
- ``state.json``: the run's id, step, epoch, elapsed seconds, loader state (with the batch
  size and world size it counts in), RNG states of every rank (torch, CUDA, numpy, python; as
  base64 / lists), the objective's schedule state, the optimiser's scalar state and the
  scaler state, the config, and the size and CRC-32 of ``tensors.safetensors``.

The directory is written beside its final name, flushed to disk and renamed into place
(:func:`pyxfer.fileio.atomic_directory`), so a crash or a power loss mid-write leaves the
previous checkpoint intact and nothing half-written. ``state.json`` names the run that wrote
the checkpoint (``run_id``): pruning removes only that run's older checkpoints, and resuming
loads only the run's own, falling back to the newest one that loads when a newer one cannot
be read.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import shutil
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from pyxfer.fileio import atomic_directory, clean_stale_temps

log = logging.getLogger("pyxfer.engine")

TENSORS = "tensors.safetensors"
STATE = "state.json"
FORMAT = "pyxfer-checkpoint"
_STEP_DIR = re.compile(r"^step-(\d+)$")
#: ``run_id`` argument that matches every checkpoint (whatever run wrote it)
ANY_RUN = object()
#: the key of ``state.json`` with the size and CRC-32 of the tensors file
_FILES = "files"


# -- RNG states as JSON ----------------------------------------------------------------------
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy-global and python RNG states as JSON-safe values."""
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    kind, keys, pos, has_gauss, cached = np_state
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# -- optimiser state flattened with stable names ---------------------------------------------
def optimizer_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """``optimizer.<param name>.<key>`` tensors and the non-tensor state per parameter name.

    Parameter names come from each group's ``names`` list (see
    :func:`pyxfer.engine.optim.default_param_groups`).
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"], strict=True):
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{name}.{key}"] = value
                else:
                    scalars.setdefault(name, {})[key] = value
    return tensors, scalars


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    scalars: dict[str, dict[str, Any]],
) -> None:
    """Restore what :func:`optimizer_tensors` produced (same parameter names)."""
    optimizer.state.clear()
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"], strict=True):
            prefix = f"optimizer.{name}."
            st: dict[str, Any] = {
                k[len(prefix) :]: v.to(p.device) for k, v in tensors.items() if k.startswith(prefix)
            }
            st.update(scalars.get(name, {}))
            if st:
                optimizer.state[p] = st


# -- writing and finding ---------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint directory cannot be read (truncated, empty or corrupt files)."""


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def read_state(path: str | Path) -> dict[str, Any] | None:
    """``state.json`` of a checkpoint directory, or ``None`` when it cannot be read."""
    try:
        state = json.loads((Path(path) / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def list_checkpoints(root: str | Path, run_id: Any = ANY_RUN) -> list[Path]:
    """Checkpoint directories under ``root`` with both files, oldest first.

    Args:
        run_id: only the checkpoints whose ``state.json`` names this run (``None``: those
            that name none, written before runs had ids); default every one.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and (d / STATE).is_file() and (d / TENSORS).is_file():
            if run_id is not ANY_RUN:
                state = read_state(d)
                if state is None or state.get("run_id") != run_id:
                    continue
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(root: str | Path, run_id: Any = ANY_RUN) -> Path | None:
    found = list_checkpoints(root, run_id)
    return found[-1] if found else None


def _digest(path: Path) -> dict[str, int]:
    """Size and CRC-32 of a file (recorded in ``state.json``; a file that a crash left with
    the right size but without its data is caught on loading)."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return {"bytes": size, "crc32": crc}


def save_checkpoint(
    root: str | Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write one checkpoint atomically, then delete all but the ``keep_last`` newest of the
    same run (``state["run_id"]``; other runs' checkpoints are never touched)."""
    from safetensors.torch import save_file

    json.dumps(state)  # fail before writing anything if not JSON-safe
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    dst = step_dir(root, step)
    clean_stale_temps(root)
    with atomic_directory(dst, overwrite=True) as tmp:
        save_file(flat, str(tmp / TENSORS), metadata={"format": FORMAT})
        state = {**state, _FILES: {TENSORS: _digest(tmp / TENSORS)}}
        (tmp / STATE).write_text(json.dumps(state, indent=1) + "\n")
    for old in list_checkpoints(root, state.get("run_id"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state) of a checkpoint directory.

    Raises:
        FileNotFoundError: the directory lacks a file.
        CheckpointError: a file cannot be read (truncated, empty, corrupt).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / STATE).is_file() or not (path / TENSORS).is_file():
        raise FileNotFoundError(f"checkpoint: {str(path)!r} has no {STATE} and {TENSORS}")
    try:
        state = json.loads((path / STATE).read_text())
        if not isinstance(state, dict):
            raise ValueError(f"{STATE} is not a JSON object")
        want = state.pop(_FILES, {}).get(TENSORS)
        if want is not None and _digest(path / TENSORS) != want:
            raise ValueError(f"{TENSORS} does not match the size and CRC-32 in {STATE}")
        tensors = load_file(str(path / TENSORS))
    except Exception as exc:  # safetensors raises its own error type
        raise CheckpointError(f"checkpoint: {str(path)!r} cannot be read: {exc}") from exc
    return tensors, state


def load_latest(
    root: str | Path, run_id: Any = ANY_RUN
) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest checkpoint of the run that loads: ``(path, tensors, state)``, or ``None``
    when the run has none.

    A newer checkpoint that cannot be read (a power loss before it reached the disk, a
    damaged file) is renamed ``step-N.unreadable`` (kept, never listed again) with a warning,
    and the next older one is tried.

    Raises:
        CheckpointError: checkpoints exist but none of them loads (nothing is renamed).
    """
    found = list(reversed(list_checkpoints(root)))
    bad: list[tuple[Path, str]] = []
    for path in found:
        state = read_state(path)
        if state is not None and run_id is not ANY_RUN and state.get("run_id") != run_id:
            continue  # another run's checkpoint
        try:
            tensors, state = load_checkpoint(path)
        except CheckpointError as exc:
            bad.append((path, str(exc)))
            continue
        for b, why in bad:
            aside = b.with_name(b.name + ".unreadable")
            log.warning("%s; using %s instead (kept as %s)", why, path.name, aside.name)
            if not aside.exists():
                os.replace(b, aside)
        return path, tensors, state
    if bad:
        raise CheckpointError(
            "resume: no checkpoint of the run loads: " + "; ".join(why for _, why in bad)
        )
    return None
