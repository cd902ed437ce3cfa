"""The hand-maintained type stubs of pyxfer._C list exactly what the extension exports."""

from __future__ import annotations

import ast
from pathlib import Path

import pyxfer
from pyxfer import _C


def test_stub_matches_extension() -> None:
    stub = Path(pyxfer.__file__).with_name("_C.pyi")
    assert stub.is_file(), "pyxfer/_C.pyi is not installed with the package"
    tree = ast.parse(stub.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    defined |= {
        t.id
        for n in tree.body
        if isinstance(n, ast.AnnAssign | ast.Assign)
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name) and t.id != "__all__"
    }
    exported = {n for n in dir(_C) if not n.startswith("__")}
    assert exported - defined == set(), "in pyxfer._C but missing from _C.pyi"
    assert defined - exported == set(), "in _C.pyi but not exported by pyxfer._C"
