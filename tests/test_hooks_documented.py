"""Every hook is documented with its exact signature and exercised by a test (datasette-style)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pyxfer import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("pyxfer_"))


def _signature(name: str) -> str:
    fn = getattr(hookspecs, name)
    params = ", ".join(
        f"{p.name}: {p.annotation}" for p in inspect.signature(fn).parameters.values()
    )
    return f"{name}({params}) -> {inspect.signature(fn).return_annotation}"


def test_there_are_hooks() -> None:
    assert HOOKS == [
        "pyxfer_register_backbones",
        "pyxfer_register_class_encoders",
        "pyxfer_register_datasets",
        "pyxfer_register_objectives",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_exact_signature(hook: str) -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{_signature(hook)}`" in doc, f"{hook} is not documented in docs/plugins.md"
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring in hookspecs.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_exercised_by_a_test(hook: str) -> None:
    this = Path(__file__).name
    users = [
        p.name
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name != this and re.search(rf"\b{hook}\b", p.read_text())
    ]
    assert users, f"no test implements {hook}"
