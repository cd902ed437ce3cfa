"""Build and environment information (``pyxfer info``)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any


def build_info() -> dict[str, Any]:
    """What the compiled extension reports: version, compiler, SIMD, threads, CUDA."""
    from pyxfer import _C

    return dict(_C.build_info())


def environment() -> dict[str, Any]:
    """Build info plus the Python side: interpreter, platform and key package versions."""
    info: dict[str, Any] = {"pyxfer": build_info()}
    info["python"] = sys.version.split()[0]
    info["platform"] = f"{platform.system()} {platform.machine()}"
    packages: dict[str, str | None] = {}
    for name in ("torch", "numpy", "pluggy", "safetensors", "pillow", "onnx", "onnxruntime"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    info["packages"] = packages
    torch = sys.modules.get("torch")
    if torch is None and packages["torch"] is not None:
        import torch
    if torch is not None:
        info["torch"] = {
            "cuda_available": bool(torch.cuda.is_available()),
            "threads": torch.get_num_threads(),
        }
    return info
