"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory ``RUN/checkpoints/step-00000042/`` with

- ``tensors.safetensors``: ``model.<name>`` (the objective's state dict: backbone, heads,
  momentum encoders, queues), ``optimizer.<parameter name>.<state key>`` (momentum buffers,
  Adam moments and step counters), ``ema.<name>`` (EMA weights, when enabled);
- ``state.json``: step, epoch, elapsed seconds, loader state, RNG states of every rank (torch,
  CUDA, numpy, python; as base64 / lists), the optimiser's scalar state and the scaler state,
  the config.

The directory is written beside its final name and renamed into place
(:func:`pyxfer.fileio.atomic_directory`), so a crash mid-write leaves the previous
checkpoint intact and nothing half-written.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from pyxfer.fileio import atomic_directory

TENSORS = "tensors.safetensors"
STATE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


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
def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and (d / STATE).is_file() and (d / TENSORS).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(
    root: str | Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write one checkpoint atomically, then delete all but the ``keep_last`` newest."""
    from safetensors.torch import save_file

    json.dumps(state)  # fail before writing anything if not JSON-safe
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    dst = step_dir(root, step)
    with atomic_directory(dst, overwrite=True) as tmp:
        save_file(flat, str(tmp / TENSORS), metadata={"format": "pyxfer-checkpoint"})
        (tmp / STATE).write_text(json.dumps(state, indent=1) + "\n")
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state) of a checkpoint directory."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / STATE).is_file() or not (path / TENSORS).is_file():
        raise FileNotFoundError(f"checkpoint: {str(path)!r} has no {STATE} and {TENSORS}")
    return load_file(str(path / TENSORS)), json.loads((path / STATE).read_text())
