"""Backbones: the contract for every registered backbone, torchvision ResNet layout and weight
files, argument checking, and a small learning check."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import pyxfer
from pyxfer.backbone import (
    Backbone,
    InputSpec,
    WeightsError,
    check_backbone,
    create_backbone,
    load_weights,
    save_weights,
)
from pyxfer.pluginmanager import get_host

DATA = Path(__file__).parent / "data"

# Smallest sensible configuration of the built-in backbones (plugin backbones use defaults).
SMALL: dict[str, dict[str, Any]] = {
    "resnet18": {"stem": "small", "width": 0.25},
    "resnet34": {"stem": "small", "width": 0.25},
    "resnet50": {"stem": "small", "width": 0.25},
    "lenet": {"img_size": 8, "width": 0.5},
    "lenet5": {"img_size": 16, "dropout": 0.0},  # two train-mode passes are compared
    "vit_tiny": {"img_size": 16, "depth": 2},
    "vit_small": {"img_size": 32, "depth": 2},
    "mobilenetv3_small": {"width": 0.5},
}


def _input_for(model: nn.Module, n: int = 2, seed: int = 0) -> torch.Tensor:
    spec = model.input_spec
    side = max(spec.min_size, min(spec.size, 32))
    return torch.randn(n, spec.channels, side, side, generator=torch.Generator().manual_seed(seed))


def _check_groups(model: nn.Module) -> list[str]:
    groups = model.param_groups()
    assert groups, "param_groups() is empty"
    names = [g for g, _ in groups]
    assert len(set(names)) == len(names), f"duplicate group names {names}"
    ids = [id(p) for _, params in groups for p in params]
    assert all(params for _, params in groups), "empty group"
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "groups do not cover every parameter"
    return names


@pytest.mark.parametrize("name", pyxfer.list_backbones())
def test_backbone_contract(name: str, tmp_path: Path) -> None:
    kwargs = SMALL.get(name, {})
    torch.manual_seed(0)
    model = create_backbone(name, **kwargs)
    nf = model.num_features
    x = _input_for(model)
    assert x.shape[1] == model.input_spec.channels

    # shapes, finiteness, pooled == forward
    model.train()
    feats = model.forward_features(x)
    assert feats.shape[0] == 2 and feats.ndim in (3, 4)
    assert feats.shape[1 if feats.ndim == 4 else 2] == nf
    out = model(x)
    assert out.shape == (2, nf)
    assert torch.isfinite(out).all()
    if hasattr(model, "forward_head"):
        assert torch.equal(model.forward_head(feats, pre_logits=True), out)

    # backward reaches every parameter, including the stem
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    stem = model.param_groups()[0][1]
    assert sum(float(p.grad.abs().sum()) for p in stem) > 0

    # groups, ordered stem first, with and without a head
    names = _check_groups(model)
    if hasattr(model, "reset_classifier"):  # the classifier head is optional
        assert "head" not in names
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)
        assert _check_groups(model)[-1] == "head"
        model.reset_classifier(0)
        assert _check_groups(model) == names

    # weights (parameters and buffers) round-trip through safetensors
    model.eval()
    ref = model(x)
    path = save_weights(model, tmp_path / f"{name}.safetensors")
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    torch.manual_seed(1)
    other = create_backbone(name, **kwargs).eval()
    assert not torch.allclose(other(x), ref), "a differently seeded model gives the same output"
    load_weights(other, path)
    assert torch.equal(other(x), ref)
    torch.manual_seed(2)
    again = create_backbone(name, weights=path, **kwargs).eval()
    assert torch.equal(again(x), ref)


# -- torchvision ResNet layout ----------------------------------------------------------------
def _layout(model: nn.Module) -> list[list[Any]]:
    return [
        [k, list(v.shape), str(v.dtype).removeprefix("torch.")]
        for k, v in model.state_dict().items()
    ]


def _tv_state_dict(layout: list[list[Any]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, dtype in layout:
        if dtype == "int64":
            sd[key] = torch.randint(0, 100, shape, generator=g, dtype=torch.int64)
        else:
            sd[key] = torch.randn(shape, generator=g, dtype=getattr(torch, dtype))
    return sd


def _tv18() -> list[list[Any]]:
    return json.loads((DATA / "resnet18_state_dict_layout.json").read_text())["resnet18"]


def test_resnet18_layout_is_torchvision() -> None:
    layout = _tv18()
    assert _layout(create_backbone("resnet18", num_classes=1000)) == layout
    # without a head: the same entries minus fc
    assert _layout(create_backbone("resnet18")) == [e for e in layout if not e[0].startswith("fc.")]


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_layout_is_torchvision_shared(name: str, shared_data: Path) -> None:
    golden = json.loads(
        (shared_data / "torchvision-golden/resnet_state_dict_layout.json").read_text()
    )
    assert _layout(create_backbone(name, num_classes=1000)) == golden[name]


def test_torchvision_checkpoint_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sd = _tv_state_dict(_tv18())
    path = tmp_path / "resnet18-tv.pth"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO, logger="pyxfer.backbone"):
        model = create_backbone("resnet18", weights=path)
    assert "fc.weight" in caplog.text and "fc.bias" in caplog.text and "no head" in caplog.text
    own = model.state_dict()
    assert set(own) == set(sd) - {"fc.weight", "fc.bias"}
    for key in ("conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(own[key], sd[key]), key
    assert torch.equal(own["bn1.num_batches_tracked"], sd["bn1.num_batches_tracked"])

    # with a 1000-class head the classifier lands too; wrapped checkpoints are accepted
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    model = create_backbone("resnet18", weights=tmp_path / "wrapped.pth", num_classes=1000)
    assert torch.equal(model.fc.weight, sd["fc.weight"])
    logits = model.eval()(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 1000)


def test_bad_checkpoints_name_the_key(tmp_path: Path) -> None:
    sd = _tv_state_dict(_tv18())
    cases = {
        "shape": {**sd, "layer2.0.conv1.weight": torch.zeros(128, 64, 5, 5)},
        "missing": {k: v for k, v in sd.items() if k != "layer3.1.bn1.running_mean"},
        "unexpected": {**sd, "layer5.weight": torch.zeros(3)},
    }
    expect = {
        "shape": r"layer2\.0\.conv1\.weight: expected \(128, 64, 3, 3\), "
        r"received \(128, 64, 5, 5\)",
        "missing": r"missing keys: layer3\.1\.bn1\.running_mean",
        "unexpected": r"unexpected keys: layer5\.weight",
    }
    for case, bad in cases.items():
        path = tmp_path / f"{case}.pt"
        torch.save(bad, path)
        with pytest.raises(WeightsError, match=expect[case]):
            create_backbone("resnet18", weights=path)
    # non-strict loading skips missing/unexpected keys but never a shape mismatch
    model = create_backbone("resnet18")
    result = load_weights(model, tmp_path / "missing.pt", strict=False)
    assert result.missing == ["layer3.1.bn1.running_mean"]
    assert torch.equal(model.conv1.weight, sd["conv1.weight"])
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv1\.weight"):
        load_weights(model, tmp_path / "shape.pt", strict=False)
    # a head of another size: the error names fc and says what to do
    torch.save(sd, tmp_path / "tv.pth")
    with pytest.raises(WeightsError, match=r"fc\.weight: expected \(10, 512\).*reset_classifier"):
        create_backbone("resnet18", weights=tmp_path / "tv.pth", num_classes=10)


def test_weights_must_be_a_local_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="never downloads"):
        create_backbone("lenet", weights="https://example.com/lenet.pth")
    with pytest.raises(FileNotFoundError, match="weights"):
        create_backbone("lenet", weights=tmp_path / "absent.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="expected a state dict"):
        create_backbone("lenet", weights=tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_weights(create_backbone("lenet"), tmp_path / "w.pth")


# -- options and errors -----------------------------------------------------------------------
def test_unknown_name_suggests() -> None:
    with pytest.raises(KeyError, match="did you mean 'resnet18'"):
        create_backbone("resnt18")


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("resnet18", {"stem": "x"}, "stem"),
        ("resnet18", {"width": 0}, "width"),
        ("resnet50", {"in_chans": 2}, "in_chans"),
        ("resnet18", {"num_classes": -1}, "num_classes"),
        ("lenet", {"in_chans": 2}, "in_chans"),
        ("lenet", {"img_size": 2}, "img_size"),
        ("lenet5", {"img_size": 12}, "img_size"),
        ("lenet5", {"dropout": 1.0}, "dropout"),
        ("lenet5", {"in_chans": 4}, "in_chans"),
        ("vit_tiny", {"img_size": 30}, "img_size"),
        ("vit_tiny", {"num_heads": 5}, "num_heads"),
        ("vit_tiny", {"global_pool": "max"}, "global_pool"),
        ("mobilenetv3_small", {"width": -0.5}, "width"),
    ],
)
def test_bad_options_name_the_argument(name: str, kwargs: dict[str, Any], arg: str) -> None:
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        create_backbone(name, **kwargs)


def test_unknown_option_names_the_plugin() -> None:
    with pytest.raises(
        TypeError, match=r"backbone 'resnet18' \(plugin 'pyxfer.backbones'\).*colour"
    ):
        create_backbone("resnet18", colour="red")


class _BadPlugin:
    @pyxfer.hookimpl
    def pyxfer_register_backbones(self, register: Any) -> None:
        register("not-a-backbone", lambda: nn.Linear(3, 4))


def test_contract_violation_names_the_plugin() -> None:
    host = get_host()
    host.register(_BadPlugin(), name="bad-backbones")
    try:
        with pytest.raises(TypeError, match=r"plugin 'bad-backbones'.*num_features"):
            create_backbone("not-a-backbone")
    finally:
        host.unregister("bad-backbones")
    assert "not-a-backbone" not in pyxfer.list_backbones()


def test_resnet_stems_widths_and_channels() -> None:
    big = create_backbone("resnet18", width=0.25, in_chans=1).eval()
    assert big.input_spec == InputSpec(1, 224, (0.449,), (0.226,), 32)
    assert InputSpec.from_dict(json.loads(json.dumps(big.input_spec.to_dict()))) == big.input_spec
    with pytest.raises(ValueError, match="mean/std"):
        InputSpec(3, 32, (0.5,), (0.5,))
    assert big.forward_features(torch.zeros(1, 1, 64, 64)).shape == (1, 128, 2, 2)
    small = create_backbone("resnet18", width=0.25, stem="small").eval()
    assert small.input_spec.size == 32
    assert small.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 128, 4, 4)
    assert create_backbone("resnet50", width=0.25, stem="small").num_features == 512
    zero = create_backbone("resnet18", width=0.25, zero_init_residual=True)
    bn2 = [b.bn2.weight for b in zero.modules() if hasattr(b, "bn2")]
    assert len(bn2) == 8 and all(not w.detach().any() for w in bn2)
    assert [g for g, _ in zero.param_groups()] == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_vit_tokens_pooling_and_other_sizes() -> None:
    torch.manual_seed(0)
    vit = create_backbone("vit_tiny", img_size=16, depth=1).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = vit.forward_features(x)  # grid 8x8 instead of the trained 4x4
    assert tokens.shape == (2, 1 + 64, 192)
    assert torch.equal(vit(x), tokens[:, 0])
    vit_avg = create_backbone("vit_tiny", img_size=16, depth=1, global_pool="avg").eval()
    t = vit_avg.forward_features(x)
    assert torch.allclose(vit_avg(x), t[:, 1:].mean(1))
    with pytest.raises(ValueError, match="patch_size=4, received 30x30"):
        vit(torch.randn(1, 3, 30, 30))
    # attention matches a plain softmax(QK^T / sqrt(d)) V reference
    attn = vit.blocks[0].attn
    h = torch.randn(2, 5, 192)
    q, k, v = attn.qkv(h).reshape(2, 5, 3, 3, 64).permute(2, 0, 3, 1, 4)
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1) @ v  # (N, nh, T, hs)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 5, 192))
    torch.testing.assert_close(attn(h), ref, rtol=1e-4, atol=1e-5)


def test_mobilenet_has_torchvision_feature_names() -> None:
    keys = list(create_backbone("mobilenetv3_small").state_dict())
    assert keys[0] == "features.0.0.weight"
    assert "features.1.block.1.fc1.weight" in keys  # SE of the first block (no expansion)
    assert "features.4.block.0.0.weight" in keys  # expansion conv
    assert keys[-5] == "features.12.1.weight"  # last conv's BN
    assert create_backbone("mobilenetv3_small", in_chans=1).input_spec.channels == 1


def test_plugin_module_does_not_import_torch(tmp_path: Path) -> None:
    code = "import sys, pyxfer.plugins.backbones; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # installed package


def test_check_backbone_accepts_builtins() -> None:
    model = create_backbone("lenet")
    assert isinstance(model, Backbone)
    check_backbone(model)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        check_backbone(object())


# -- something learns ---------------------------------------------------------------------------
def test_lenet_learns_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = (x - 0.5) / 0.5
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:800], perm[800:1200]
    torch.manual_seed(0)
    model = create_backbone("lenet", img_size=8, width=0.5, num_classes=10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    model.train()
    for _ in range(40):
        idx = train[torch.randint(0, len(train), (64,), generator=g)]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        acc = float((model(x[test]).argmax(1) == y[test]).float().mean())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert acc > 0.8, f"held-out accuracy {acc:.3f} (chance 0.1)"


def test_lenet5_is_the_benchmark_layout() -> None:
    """The classic layout: 20 and 50 5x5 filters, fc 800 -> 500 at 28 px (431,080 weights, as
    the digit adaptation benchmarks' LeNet), about a tenth of ``lenet``'s multiply-adds."""
    model = create_backbone("lenet5")
    assert sum(p.numel() for p in model.parameters()) == 520 + 25_050 + 400_500
    macs = {"lenet5": 0, "lenet": 0}
    for name in macs:
        m = create_backbone(name, img_size=28).eval()

        def count(mod: nn.Module, inp: Any, out: torch.Tensor, name: str = name) -> None:
            if isinstance(mod, nn.Conv2d):
                macs[name] += out.numel() * mod.in_channels * mod.kernel_size[0] ** 2
            elif isinstance(mod, nn.Linear):
                macs[name] += mod.in_features * mod.out_features

        hooks = [x.register_forward_hook(count) for x in m.modules()]
        with torch.no_grad():
            m(torch.zeros(1, 1, 28, 28))
        for h in hooks:
            h.remove()
    assert 2.0e6 < macs["lenet5"] < 2.6e6
    assert macs["lenet"] > 8 * macs["lenet5"]


def test_lenet5_refuses_another_side() -> None:
    model = create_backbone("lenet5", img_size=28)
    with pytest.raises(ValueError, match=r"^x: expected 28x28 images.*received \(32, 32\)"):
        model(torch.zeros(1, 1, 32, 32))


def test_lenet5_learns_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = nn.functional.interpolate((x - 0.5) / 0.5, size=16, mode="bilinear")  # (N, 1, 16, 16)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:800], perm[800:1200]
    torch.manual_seed(0)
    model = create_backbone("lenet5", img_size=16, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(60):
        idx = train[torch.randint(0, len(train), (64,), generator=g)]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x[test]).argmax(1) == y[test]).float().mean())
    assert acc > 0.8, f"held-out accuracy {acc:.3f} (chance 0.1)"


@pytest.mark.parametrize("name", ["vit_tiny", "mobilenetv3_small"])
def test_exports_with_dynamic_batch(name: str) -> None:
    """No data-dependent control flow: torch.export traces one graph for any batch size."""
    from torch.export import Dim, export

    torch.manual_seed(0)
    kwargs = {"vit_tiny": {"img_size": 16, "depth": 1}}.get(name, {"width": 0.5})
    model = create_backbone(name, **kwargs).eval()
    x = _input_for(model, n=2)
    program = export(model, (x,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=64)}})
    x5 = _input_for(model, n=5, seed=1)
    torch.testing.assert_close(program.module()(x5), model(x5))
