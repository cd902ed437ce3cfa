from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pyxfer import _C
from pyxfer.cli import main


def test_build_info_reports_what_was_compiled() -> None:
    info = _C.build_info()
    for key in (
        "version",
        "compiler",
        "simd",
        "threading",
        "hardware_threads",
        "cuda_compiled",
        "cuda_devices",
    ):
        assert key in info
    import pyxfer

    assert info["version"] == pyxfer.__version__
    assert info["hardware_threads"] >= 1
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == 0 and "PYXFER_WITH_CUDA" in info["cuda_error"]


def test_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["pyxfer"]["simd"] == _C.build_info()["simd"]
    assert env["packages"]["torch"]


def test_info_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "SIMD" in out and "CUDA" in out and "int8 path" in out


def test_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "pyxfer.backbones" in out and "(built-in)" in out


def test_python_dash_m_and_help(tmp_path) -> None:
    # run outside the checkout so the installed package (with _C) is imported
    out = subprocess.run(
        [sys.executable, "-m", "pyxfer", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0
    for command in ("info", "plugins"):
        assert command in out.stdout
