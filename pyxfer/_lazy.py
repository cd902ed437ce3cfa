"""Packages whose public names are imported on first use (``import pyxfer`` stays cheap and
imports no torch). A package lists ``name -> defining module`` and takes its ``__getattr__``
and ``__dir__`` from :func:`lazy_attributes`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], subpackages: Sequence[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a listed name is imported from its module on
    first use and then cached in the package; a listed subpackage is imported as an attribute."""
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        if name in subpackages:
            return importlib.import_module(f"{package}.{name}")
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(names) | set(subpackages))

    return getattr_, dir_
