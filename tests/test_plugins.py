"""The plugin host: discovery, attribution, failures, switches."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib import metadata

import pytest

import pyxfer
from pyxfer import pluginmanager
from pyxfer.hookspecs import hookimpl


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PYXFER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYXFER_DISABLED_PLUGINS", raising=False)
    h = pluginmanager.reset_host()
    yield h
    pluginmanager.reset_host()


def _throwaway_plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_import_pyxfer_loads_neither_torch_nor_plugins() -> None:
    code = (
        "import sys, pyxfer; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not any(m.startswith('pyxfer.plugins.') for m in sys.modules), 'plugins loaded'; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_builtin_plugins_register_through_entry_points(host) -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="pyxfer")}
    assert eps["pyxfer.backbones"].value == "pyxfer.plugins.backbones"
    host.registries["backbones"].list()
    info = host.plugins["pyxfer.backbones"]
    assert info.builtin and info.status == "loaded" and info.distribution == "pyxfer"


def test_throwaway_plugin_registers_and_unregisters(host) -> None:
    def pyxfer_register_class_encoders(register):
        register("toy_encoder", lambda: "encoder", description="a toy")

    host.register(
        _throwaway_plugin(pyxfer_register_class_encoders=pyxfer_register_class_encoders), name="toy"
    )
    reg = pyxfer.get_registry("class_encoders")
    assert reg.get("toy_encoder").plugin == "toy"
    assert reg.create("toy_encoder") == "encoder"
    assert host.plugins["toy"].registered == {"class_encoders": ["toy_encoder"]}
    host.unregister("toy")
    assert "toy_encoder" not in pyxfer.get_registry("class_encoders")


def test_failing_plugin_is_reported_and_others_still_load(host) -> None:
    def broken(register):
        register("half_done", dict)
        raise RuntimeError("boom")

    def fine(register):
        register("fine_encoder", dict)

    host.register(_throwaway_plugin(pyxfer_register_class_encoders=broken), name="broken")
    host.register(_throwaway_plugin(pyxfer_register_class_encoders=fine), name="fine")
    reg = pyxfer.get_registry("class_encoders")
    assert "fine_encoder" in reg
    assert "half_done" not in reg  # rolled back
    assert host.plugins["broken"].status == "failed"
    assert "RuntimeError: boom" in host.plugins["broken"].error


def test_duplicate_from_plugin_names_both(host) -> None:
    def one(register):
        register("same", dict)

    def two(register):
        register("same", list)

    host.register(_throwaway_plugin(pyxfer_register_class_encoders=one), name="first")
    host.register(_throwaway_plugin(pyxfer_register_class_encoders=two), name="second")
    reg = pyxfer.get_registry("class_encoders")
    assert reg.get("same").plugin == "first"
    err = host.plugins["second"].error
    assert "'first'" in err and "'second'" in err


def test_plugin_that_fails_to_import_is_reported(host, monkeypatch) -> None:
    real = metadata.entry_points

    def fake_entry_points(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "pyxfer":
            eps.append(metadata.EntryPoint("ghost", "no_such_module_for_pyxfer", "pyxfer"))
        return eps

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    assert pyxfer.get_registry("backbones") is host.registries["backbones"]
    host.registries["backbones"].list()
    assert host.plugins["ghost"].status == "failed"
    assert "no_such_module_for_pyxfer" in host.plugins["ghost"].error
    assert host.plugins["pyxfer.backbones"].status == "loaded"


def test_misspelt_hook_is_caught(host) -> None:
    plugin = _throwaway_plugin(pyxfer_register_backbone=lambda register: None)
    with pytest.raises(Exception, match="unknown hook"):
        host.register(plugin, name="typo")


def test_unknown_registry_kind() -> None:
    with pytest.raises(ValueError, match="kind: expected one of"):
        pyxfer.get_registry("widgets")
