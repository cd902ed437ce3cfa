"""torch for the kernel tests that compare against it, absent in the aarch64 emulation run.

``.ci/aarch64.sh`` runs the kernel test modules under qemu with an aarch64 CPython that has numpy
but no torch (there is no torch for it there): the tests that need torch or the pure-torch oracle
(``reference_augment``) carry ``needs_torch`` and are skipped in that run only, since torch is a
dependency of pyxfer everywhere else.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

torch: ModuleType | None
ref: ModuleType | None
try:
    import torch
except ModuleNotFoundError:
    torch = None
ref = importlib.import_module("reference_augment") if torch is not None else None

needs_torch = pytest.mark.skipif(
    torch is None, reason="needs torch (absent in the aarch64 emulation run, .ci/aarch64.sh)"
)
