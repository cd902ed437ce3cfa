from __future__ import annotations

import json

import pytest
import torch

import pyxfer
from pyxfer.modelio import load_model, save_model


def test_classifier_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", num_classes=3, img_size=8)
    bb.eval()
    x = torch.randn(4, 1, 8, 8)
    names = ["a", "b", "c"]
    save_model(
        tmp_path / "m",
        bb,
        backbone_name="lenet",
        backbone_kwargs={"img_size": 8},
        task="classifier",
        class_names=names,
        extra={"acc": 0.5},
        arrays={"protos": torch.ones(3, 2)},
    )
    loaded = load_model(tmp_path / "m")
    loaded.backbone.eval()
    assert loaded.task == "classifier" and loaded.class_names == names
    assert loaded.extra == {"acc": 0.5}
    assert torch.equal(loaded.arrays["protos"], torch.ones(3, 2))
    assert loaded.input_spec == bb.input_spec
    assert torch.equal(loaded.backbone(x), bb(x))


def test_bad_inputs(tmp_path) -> None:
    bb = pyxfer.create_backbone("lenet", img_size=8)
    with pytest.raises(ValueError, match="task"):
        save_model(tmp_path / "m", bb, backbone_name="lenet", task="other")
    with pytest.raises(ValueError, match="needs a head"):
        save_model(tmp_path / "m", bb, backbone_name="lenet", task="classifier")
    with pytest.raises(TypeError):
        save_model(tmp_path / "m", bb, backbone_name="lenet", extra={"x": object()})
    assert not (tmp_path / "m").exists()
    with pytest.raises(FileNotFoundError, match=r"model\.json missing"):
        load_model(tmp_path)
    save_model(tmp_path / "m", bb, backbone_name="lenet", backbone_kwargs={"img_size": 8})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["version"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 99"):
        load_model(tmp_path / "m")


def _model_dir_with_kwargs(tmp_path, **kwargs):
    """A valid lenet model directory whose model.json backbone kwargs are then replaced."""
    bb = pyxfer.create_backbone("lenet", img_size=8)
    root = save_model(tmp_path / "m", bb, backbone_name="lenet", backbone_kwargs={"img_size": 8})
    meta = json.loads((root / "model.json").read_text())
    meta["backbone"]["kwargs"].update(kwargs)
    (root / "model.json").write_text(json.dumps(meta))
    return root, bb


def test_model_json_never_names_a_weight_file(tmp_path, monkeypatch) -> None:
    """model.json choosing a .pt file must not reach torch.load (the pickle loader)."""
    bb = pyxfer.create_backbone("lenet", img_size=8)
    pt = tmp_path / "elsewhere.pt"
    torch.save(bb.state_dict(), pt)
    root, _ = _model_dir_with_kwargs(tmp_path, weights=str(pt))

    def no_pickle(*args, **kwargs):
        raise AssertionError(f"torch.load called on {args[0]!r} named by model.json")

    monkeypatch.setattr(torch, "load", no_pickle)
    with pytest.raises(
        ValueError, match=r"model\.json: backbone\.kwargs\['weights'\] names a file"
    ):
        load_model(root)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pretrained_path", "/etc/passwd", "names a file"),
        ("init_file", "x.pth", "names a file"),
        ("checkpoint", "x.pt", "names a file"),
        ("width", {"nested": 1}, "expected a JSON scalar or a list of scalars"),
        ("width", [[1]], "expected a JSON scalar or a list of scalars"),
    ],
)
def test_model_json_kwargs_are_plain_values(tmp_path, key, value, message) -> None:
    root, _ = _model_dir_with_kwargs(tmp_path, **{key: value})
    with pytest.raises(ValueError, match=rf"model\.json: backbone\.kwargs\['{key}'\].*{message}"):
        load_model(root)


def test_plugin_marked_path_option_is_refused(tmp_path) -> None:
    from pyxfer.pluginmanager import registry

    backbones = registry("backbones")
    lenet = backbones.get("lenet").factory

    def factory(source=None, **kwargs):  # a backbone with a path-valued option "source"
        return lenet(**kwargs)

    backbones.register("test-sourced", factory, plugin="<test>", path_options=("source",))
    try:
        bb = pyxfer.create_backbone("test-sourced", img_size=8)
        root = save_model(
            tmp_path / "m",
            bb,
            backbone_name="test-sourced",
            backbone_kwargs={"img_size": 8, "source": "a"},
        )
        assert load_model(root).backbone_kwargs == {"img_size": 8, "num_classes": 0}
        meta = json.loads((root / "model.json").read_text())
        meta["backbone"]["kwargs"]["source"] = "/somewhere/else.pt"
        (root / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=r"model\.json: backbone\.kwargs\['source'\]"):
            load_model(root)
    finally:
        backbones.unregister("test-sourced")


def test_save_model_does_not_record_path_options(tmp_path) -> None:
    """A backbone built from a weight file saves its weights, not the file's path."""
    bb = pyxfer.create_backbone("lenet", img_size=8)
    pt = tmp_path / "init.pt"
    torch.save(bb.state_dict(), pt)
    kwargs = {"img_size": 8, "weights": str(pt), "init_path": "x"}
    root = save_model(tmp_path / "m", bb, backbone_name="lenet", backbone_kwargs=kwargs)
    meta = json.loads((root / "model.json").read_text())
    assert meta["backbone"]["kwargs"] == {"img_size": 8, "num_classes": 0}
    assert load_model(root).backbone_kwargs == {"img_size": 8, "num_classes": 0}
    with pytest.raises(ValueError, match=r"backbone_kwargs: backbone\.kwargs\['width'\]"):
        save_model(tmp_path / "n", bb, backbone_name="lenet", backbone_kwargs={"width": {}})
    assert not (tmp_path / "n").exists()
