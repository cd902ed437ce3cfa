"""Trained models on disk: ``model.safetensors`` + ``model.json`` in one directory.

This is the hand-over format between training (pretrain, finetune, adapt, zeroshot), evaluation
and export. No pickle: tensors in safetensors, everything else in JSON. Written atomically.

``model.json`` holds::

    {
      "format": "pyxfer-model", "version": 1,
      "task": "features" | "classifier" | "zeroshot",
      "backbone": {"name": "resnet18", "kwargs": {...}},   # kwargs include num_classes
      "input_spec": {...},                                  # pyxfer.backbone.InputSpec.to_dict()
      "class_names": [...],                                 # classifier / zeroshot
      "extra": {...}                                        # JSON metadata of the producer
    }

``model.safetensors`` holds the backbone's state dict (keys unchanged) and any extra arrays
under ``extra.<name>`` (for example zero-shot class embeddings).

A model directory is data: loading one never runs code and never reads a file it names. The
backbone options are plain JSON values; options that name files (``weights``, options a
plugin marks path-valued) are left out when saving and refused when loading
(:func:`pyxfer.backbone.check_stored_kwargs`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyxfer.backbone import Backbone, InputSpec, check_stored_kwargs, create_backbone
from pyxfer.fileio import atomic_directory

FORMAT = "pyxfer-model"
VERSION = 1
TASKS = ("features", "classifier", "zeroshot")


@dataclass(frozen=True)
class ModelPath:
    """What a path given for a model is (see :func:`locate_model`).

    Attributes:
        kind: ``"run"`` (a run directory: ``path`` is its ``model/``), ``"model"`` (a model
            directory) or ``"weights"`` (a weight file: safetensors or a torch state dict).
        path: the model directory or the weight file.
    """

    kind: str
    path: Path

    @property
    def is_model_dir(self) -> bool:
        """``path`` is a model directory (given directly or inside a run directory)."""
        return self.kind in ("run", "model")


def locate_model(
    path: str | os.PathLike[str], *, argument: str = "model", weights: bool = False
) -> ModelPath:
    """Tell a run directory, a model directory and a weight file apart.

    A run directory holds ``model/model.json``; a model directory holds ``model.json``; any other
    file is a weight file (accepted only with ``weights=True``). A relative ``path`` is relative
    to the current directory; ``~`` is expanded.

    Args:
        path: what was given.
        argument: its name in the error message (``"source"``, ``"--from"``, ``"MODEL_DIR"``...).
        weights: whether a weight file is acceptable.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a directory holding no model.
        ValueError: ``path`` is a file and ``weights`` is false.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{argument}: expected a path, received {type(path).__name__} {path!r}")
    p = Path(os.fspath(path)).expanduser()
    if (p / "model" / "model.json").is_file():
        return ModelPath("run", p / "model")
    if (p / "model.json").is_file():
        return ModelPath("model", p)
    if p.is_file() and weights:
        return ModelPath("weights", p)
    expected = (
        "a pyxfer run directory (holding model/model.json) or model directory "
        "(model.json + model.safetensors)" + (" or a weight file" if weights else "")
    )
    if p.is_file():
        raise ValueError(f"{argument}: expected {expected}, received the file {str(p)!r}")
    what = "a directory without model.json" if p.is_dir() else "a path that does not exist"
    raise FileNotFoundError(f"{argument}: expected {expected}, received {str(p)!r} ({what})")


@dataclass
class SavedModel:
    """A loaded model directory: the backbone and its metadata."""

    backbone: Backbone
    task: str
    backbone_name: str
    backbone_kwargs: dict[str, Any]
    input_spec: InputSpec
    class_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)


def save_model(
    path: str | os.PathLike[str],
    backbone: Backbone,
    *,
    backbone_name: str,
    backbone_kwargs: dict[str, Any] | None = None,
    task: str = "features",
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    arrays: dict[str, torch.Tensor] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``backbone`` and its metadata to the directory ``path`` atomically.

    Args:
        path: directory to create (replaced only once the new one is complete).
        backbone: the trained backbone (with its classifier head when ``task="classifier"``).
        backbone_name: registry name used to rebuild it.
        backbone_kwargs: constructor options used to rebuild it: plain JSON values. Options
            that name a file (``weights``...) are not recorded (the weights are saved).
        task: ``"features"``, ``"classifier"`` or ``"zeroshot"``.
        class_names: label names, one per output of the head (classifier) or class table row.
        extra: producer metadata (JSON-serialisable).
        arrays: extra tensors stored beside the weights (e.g. class embeddings).
    """
    from safetensors.torch import save_file

    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, received {task!r}")
    kwargs = check_stored_kwargs(
        backbone_name, backbone_kwargs or {}, "backbone_kwargs", drop_paths=True
    )
    kwargs["num_classes"] = int(getattr(backbone, "num_classes", 0))
    if task == "classifier":
        if kwargs["num_classes"] <= 0:
            raise ValueError("backbone: a classifier needs a head (num_classes > 0), received none")
        if class_names is not None and len(class_names) != kwargs["num_classes"]:
            raise ValueError(
                f"class_names: expected {kwargs['num_classes']} names (one per output), "
                f"received {len(class_names)}"
            )
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "backbone": {"name": backbone_name, "kwargs": kwargs},
        "input_spec": backbone.input_spec.to_dict(),
        "class_names": list(class_names or []),
        "extra": extra or {},
    }
    json.dumps(meta)  # fail before writing anything if not serialisable
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    for name, value in (arrays or {}).items():
        tensors[f"extra.{name}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(path)


def load_model(path: str | os.PathLike[str], map_location: str = "cpu") -> SavedModel:
    """Rebuild the backbone saved in ``path`` and load its weights (strict).

    Raises:
        ValueError: ``model.json`` is of another format or version, or its backbone options
            are not plain JSON values or name a file (naming ``model.json`` and the option).
    """
    from safetensors.torch import load_file

    root = Path(path)
    meta_file, weights_file = root / "model.json", root / "model.safetensors"
    for f in (meta_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"path: {str(root)!r} is not a pyxfer model ({f.name} missing)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"path: expected a {FORMAT} version {VERSION} directory, received format "
            f"{meta.get('format')!r} version {meta.get('version')!r}"
        )
    section = meta.get("backbone")
    if not isinstance(section, dict):
        raise ValueError(f"{meta_file}: backbone: expected an object with name and kwargs")
    name = section.get("name")
    kwargs = check_stored_kwargs(name, section.get("kwargs", {}), str(meta_file))
    assert isinstance(name, str)  # check_stored_kwargs refuses anything else
    backbone = create_backbone(name, **kwargs)
    tensors = load_file(str(weights_file), device=map_location)
    arrays = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    backbone.load_state_dict(state, strict=True)
    return SavedModel(
        backbone=backbone,
        task=meta["task"],
        backbone_name=name,
        backbone_kwargs=kwargs,
        input_spec=InputSpec.from_dict(meta["input_spec"]),
        class_names=list(meta.get("class_names", [])),
        extra=dict(meta.get("extra", {})),
        arrays=arrays,
    )
