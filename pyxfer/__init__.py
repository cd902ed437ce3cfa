"""pyxfer: learn image models when labels are scarce or missing.

Transfer learning from a pretrained backbone, self-supervised objectives on unlabelled images,
unsupervised domain adaptation, zero-shot recognition, and deployment as ONNX bundles.

``import pyxfer`` is cheap: it imports neither torch nor any plugin. The public names below are
resolved on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from pyxfer._lazy import lazy_attributes


def _refuse_bare_source_tree() -> None:
    """Raise one clear error when Python found the checkout's ``pyxfer/`` instead of an install.

    Started in the root of a clone, Python puts the current directory first on ``sys.path``
    and imports the source tree, which has neither the compiled ``pyxfer._C`` nor the built-in
    plugins (they are mapped to ``pyxfer.plugins`` only when the package is built). Without this
    check the registries are silently empty and later calls fail far from the cause. An
    editable install maps both in, so it passes.
    """
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if not ((checkout / "pyproject.toml").is_file() and (checkout / "cpp").is_dir()):
        return  # an installed copy
    if importlib.util.find_spec("pyxfer._C") and importlib.util.find_spec("pyxfer.plugins"):
        return  # an editable install (or a build in place)
    installed = None
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "pyxfer"
        if candidate != here and (candidate / "__init__.py").is_file():
            installed = candidate
            break
    where = (
        f"An installed pyxfer exists at {installed}, but the source tree shadows it."
        if installed
        else "No installed pyxfer was found on sys.path."
    )
    raise ImportError(
        f"pyxfer was imported from its source tree at {here} (Python puts the current "
        "directory first on sys.path), which has no compiled extension (pyxfer._C) and no "
        f"built-in plugins. {where} Install it with `pip install .` and run Python from "
        "outside the checkout, or use an editable install "
        "(`pip install -e .`)."
    )


_refuse_bare_source_tree()

from pyxfer.hookspecs import hookimpl  # noqa: E402

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "Registry": "pyxfer.registry",
    "get_registry": "pyxfer.pluginmanager",
    "get_host": "pyxfer.pluginmanager",
    "Backbone": "pyxfer.backbone",
    "InputSpec": "pyxfer.backbone",
    "create_backbone": "pyxfer.backbone",
    "list_backbones": "pyxfer.backbone",
    "load_weights": "pyxfer.backbone",
    "save_weights": "pyxfer.backbone",
    "Objective": "pyxfer.objectives.base",
    "create_objective": "pyxfer.objectives.base",
    "list_objectives": "pyxfer.objectives.base",
    "ImageStore": "pyxfer.data",
    "load_dataset": "pyxfer.data",
    "list_datasets": "pyxfer.data",
    "build_info": "pyxfer.info",
    "FusedLoader": "pyxfer.engine.loader",
    "Trainer": "pyxfer.engine",
    "TrainConfig": "pyxfer.engine",
    "pretrain": "pyxfer.engine",
    "extract_features": "pyxfer.evaluate",
    "knn_accuracy": "pyxfer.evaluate",
    "linear_probe": "pyxfer.evaluate",
    "few_shot_probe": "pyxfer.evaluate",
    "finetune": "pyxfer.transfer",
    "write_report": "pyxfer.report",
    "to_onnx": "pyxfer.export",
    "Predictor": "pyxfer.runtime",
    "adapt": "pyxfer.transfer",
}

# sub-packages reachable as attributes (``pyxfer.zeroshot.ESZSL``, ``pyxfer.evaluate.evaluate``),
# imported on first use
_SUBPACKAGES: tuple[str, ...] = ("evaluate", "zeroshot")

__all__ = ["__version__", "hookimpl", *_LAZY, *_SUBPACKAGES]


_getattr, __dir__ = lazy_attributes(__name__, _LAZY, _SUBPACKAGES)


def __getattr__(name: str) -> Any:
    return _getattr(name)
