"""Built-in backbones, registered through the ``pyxfer`` entry points.

One module per family (``resnet``, ``lenet``, ``vit``, ``mobilenet``); this module imports
none of them (nor torch): each factory imports its family on first call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pyxfer import hookimpl
from pyxfer.hookspecs import Register

# name -> (module, one-line description)
BACKBONES: dict[str, tuple[str, str]] = {
    "resnet18": (
        "resnet",
        "ResNet-18, torchvision layout (loads torchvision weights), 512 features",
    ),
    "resnet34": (
        "resnet",
        "ResNet-34, torchvision layout (loads torchvision weights), 512 features",
    ),
    "resnet50": (
        "resnet",
        "ResNet-50, torchvision layout (loads torchvision weights), 2048 features",
    ),
    "lenet": ("lenet", "LeNet-class conv-BN-ReLU net for 8-32 px digits, 128 features"),
    "lenet5": (
        "lenet",
        "LeNet of digit adaptation benchmarks (conv 20-50, fc 500), fixed side, 500 features",
    ),
    "vit_tiny": ("vit", "ViT-Tiny, patch 4, 32 px, depth 6, width 192, class-token features"),
    "vit_small": ("vit", "ViT-S/16, patch 16, 224 px, depth 12, width 384, class-token features"),
    "mobilenetv3_small": ("mobilenet", "MobileNetV3-Small (SE, hard-swish), 576 features"),
}


def _lazy(module: str, name: str) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> Any:
        mod = importlib.import_module(f"{__name__}.{module}")
        return getattr(mod, name)(**kwargs)

    factory.__name__ = factory.__qualname__ = name
    return factory


@hookimpl
def pyxfer_register_backbones(register: Register) -> None:
    for name, (module, description) in BACKBONES.items():
        register(name, _lazy(module, name), description=description)
