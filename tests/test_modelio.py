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
