"""The stand-alone example plugin (plugins/examples/pyxfer-example) is discovered and works."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from pyxfer import pluginmanager

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyxfer_example") is None,
    reason="the example plugin is not installed (pip install ./plugins/examples/pyxfer-example)",
)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PYXFER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYXFER_DISABLED_PLUGINS", raising=False)
    yield pluginmanager.reset_host()
    pluginmanager.reset_host()


def test_example_registers_a_backbone_and_an_objective(host) -> None:
    import pyxfer

    assert pyxfer.list_backbones("example_*") == ["example_tinynet"]
    assert pyxfer.list_objectives("example_*") == ["example_alignment"]
    info = host.plugins["pyxfer-example"]
    assert info.distribution == "pyxfer-example" and info.version == "0.1.0"
    assert info.registered == {
        "backbones": ["example_tinynet"],
        "objectives": ["example_alignment"],
    }


def test_example_backbone_and_objective_work(host) -> None:
    import pyxfer

    torch.manual_seed(0)
    backbone = pyxfer.create_backbone("example_tinynet", in_chans=1, width=8)
    assert backbone(torch.zeros(2, 1, 8, 8)).shape == (2, 8)
    objective = pyxfer.create_objective("example_alignment", backbone, dim=8)
    opt = torch.optim.AdamW(objective.parameters(), lr=1e-2)
    x = torch.randn(16, 1, 8, 8)
    losses = []
    for _ in range(30):
        views = [x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)]
        out = objective(views)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert {"loss", "align", "variance"} <= set(out)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def _names_in_subprocess(env_update: dict[str, str], cwd) -> dict[str, object]:
    code = (
        "import json, pyxfer; from pyxfer.pluginmanager import get_host; "
        "b = pyxfer.list_backbones(); o = pyxfer.list_objectives(); "
        "print(json.dumps({'backbones': b, 'objectives': o, "
        "'status': get_host().plugins['pyxfer-example'].status}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYXFER_DISABLE")}
    env.update(env_update)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "env",
    [
        {"PYXFER_DISABLE_PLUGIN_AUTOLOAD": "1"},
        {"PYXFER_DISABLED_PLUGINS": "pyxfer-example"},
        {"PYXFER_DISABLED_PLUGINS": "other, pyxfer_example"},
    ],
)
def test_blocked_example_disappears_and_builtins_stay(env: dict[str, str], tmp_path) -> None:
    # run outside the checkout so the installed package is imported, not the source tree
    seen = _names_in_subprocess({}, tmp_path)
    assert "example_tinynet" in seen["backbones"] and seen["status"] == "loaded"
    blocked = _names_in_subprocess(env, tmp_path)
    assert blocked["status"] == "disabled"
    assert "example_tinynet" not in blocked["backbones"]
    assert "example_alignment" not in blocked["objectives"]
    assert "resnet18" in blocked["backbones"]  # built-ins still load
