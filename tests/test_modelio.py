from __future__ import annotations

import json

import pytest
import torch

import pyxfer
from pyxfer.modelio import ModelPath, load_model, locate_model, save_model


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


def _model_dir(path) -> None:
    bb = pyxfer.create_backbone("lenet", img_size=8)
    save_model(path, bb, backbone_name="lenet", backbone_kwargs={"img_size": 8})


def test_locate_model_tells_runs_models_and_weight_files_apart(tmp_path, monkeypatch) -> None:
    _model_dir(tmp_path / "run" / "model")
    _model_dir(tmp_path / "m")
    weights = tmp_path / "w.safetensors"
    pyxfer.save_weights(pyxfer.create_backbone("lenet", img_size=8), weights)
    assert locate_model(tmp_path / "run") == ModelPath("run", tmp_path / "run" / "model")
    assert locate_model(str(tmp_path / "m")) == ModelPath("model", tmp_path / "m")
    assert locate_model(tmp_path / "run" / "model").kind == "model"
    assert locate_model(weights, weights=True) == ModelPath("weights", weights)
    assert (
        locate_model(tmp_path / "run").is_model_dir
        and not ModelPath("weights", weights).is_model_dir
    )
    # relative to the current directory
    monkeypatch.chdir(tmp_path)
    assert locate_model("run").path.resolve() == (tmp_path / "run" / "model").resolve()
    assert load_model(locate_model("m").path).backbone_name == "lenet"


def test_locate_model_errors_name_the_argument_and_what_was_expected(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as e:
        locate_model(tmp_path / "missing", argument="--from")
    msg = str(e.value)
    assert msg.startswith("--from: expected a pyxfer run directory (holding model/model.json)")
    assert "or model directory (model.json + model.safetensors)" in msg
    assert "missing" in msg and "does not exist" in msg and "weight file" not in msg
    with pytest.raises(FileNotFoundError, match=r"source: expected .* or a weight file, .*empty"):
        locate_model(tmp_path / "empty", argument="source", weights=True)
    with pytest.raises(FileNotFoundError, match=r"directory without model\.json"):
        locate_model(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"model: expected .*received the file .*w\.pth"):
        locate_model(tmp_path / "w.pth")
    with pytest.raises(ValueError, match="model: expected a path, received int"):
        locate_model(3)  # type: ignore[arg-type]


def test_every_entry_point_resolves_models_alike(tmp_path) -> None:
    """finetune/adapt sources, export, eval and zero-shot all go through locate_model."""
    from pyxfer.evaluate import evaluate
    from pyxfer.export import to_onnx
    from pyxfer.transfer.common import load_source
    from pyxfer.zeroshot.pipeline import fit_zeroshot

    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty"
    calls = {
        "source": lambda: load_source(empty),
        "from_run": lambda: load_source(empty, argument="from_run"),
        "model": lambda: to_onnx(empty, tmp_path / "bundle"),
        "backbone": lambda: fit_zeroshot(empty, "digits", "digits", unseen=[1]),
        "MODEL": lambda: evaluate(empty, "digits", argument_names={"model": "MODEL"}),
    }
    for argument, call in calls.items():
        with pytest.raises(FileNotFoundError) as e:
            call()
        assert str(e.value).startswith(f"{argument}: expected a pyxfer run directory"), argument
        assert "directory without model.json" in str(e.value)


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
