from __future__ import annotations

import pytest

from pyxfer.registry import Registry, RegistryError, UnknownNameError


def make() -> Registry[dict]:
    reg: Registry[dict] = Registry("backbones")
    reg.register("resnet18", dict, plugin="core", description="ResNet-18")
    reg.register("resnet50", dict, plugin="core")
    reg.register("vit_tiny", dict, plugin="core")
    return reg


def test_register_get_create_and_list_pattern() -> None:
    reg = make()
    assert reg.get("resnet18").plugin == "core"
    assert reg.get("resnet18").description == "ResNet-18"
    assert reg.create("resnet50", a=1) == {"a": 1}
    assert reg.list("resnet*") == ["resnet18", "resnet50"]
    assert reg.list() == ["resnet18", "resnet50", "vit_tiny"]
    assert "vit_tiny" in reg and "vit" not in reg
    assert len(reg) == 3


def test_duplicate_name_names_both_plugins() -> None:
    reg = make()
    with pytest.raises(RegistryError) as err:
        reg.register("resnet18", dict, plugin="third-party")
    assert "'core'" in str(err.value) and "'third-party'" in str(err.value)


def test_unknown_name_suggests_close_matches() -> None:
    reg = make()
    with pytest.raises(UnknownNameError) as err:
        reg.get("resnt18")
    assert "did you mean 'resnet18'" in str(err.value)
    assert isinstance(err.value, KeyError)


@pytest.mark.parametrize("name", ["", "ResNet", "has space", "-x", 3])
def test_invalid_names_are_refused(name: object) -> None:
    with pytest.raises(RegistryError, match="invalid name"):
        Registry("things").register(name, dict, plugin="p")  # type: ignore[arg-type]


def test_non_callable_factory_is_refused() -> None:
    with pytest.raises(RegistryError, match="non-callable"):
        Registry("things").register("x", 42, plugin="p")  # type: ignore[arg-type]


def test_loader_runs_lazily_once_and_again_after_reset() -> None:
    calls = []

    def loader(reg: Registry[dict]) -> None:
        calls.append(1)
        reg.register("a", dict, plugin="lazy")

    reg: Registry[dict] = Registry("things", loader=loader)
    assert calls == []
    assert reg.list() == ["a"]
    assert reg.list() == ["a"]
    assert calls == [1]
    reg.reset()
    assert reg.list() == ["a"] and calls == [1, 1]
