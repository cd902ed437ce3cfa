"""``pyxfer.adapt`` / ``pyxfer adapt``: source + unlabelled target through the engine, label-free
selection reported beside every result, the oracle marked, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyxfer.cli import main
from pyxfer.data import ImageStore, load_dataset
from pyxfer.modelio import load_model
from pyxfer.transfer import adapt
from pyxfer.transfer.adapt import format_selections
from pyxfer.transfer.common import conform

LENET = {"img_size": 8}
FAST = {"batch_size": 32, "threads": 1, "device": "cpu", "log_every": 0, "lr": 5e-3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


@pytest.fixture(scope="module")
def domains() -> tuple[ImageStore, ImageStore]:
    """Source: 1,000 digits; target: the other 797, dimmed (a shifted domain), 16 px."""
    d = load_dataset("digits")
    src = d.subset(np.arange(1000))
    t = d.subset(np.arange(1000, 1797))
    dim = (t.images.astype(np.float32) * 0.6).astype(np.uint8)
    big = np.repeat(np.repeat(dim, 2, axis=1), 2, axis=2)  # (797, 16, 16, 1): another size
    return src, ImageStore(big, t.labels, t.class_names, name="dim16")


@pytest.mark.parametrize("objective", ["source_only", "dann", "cdan", "fixmatch"])
def test_objectives_learn_and_report_label_free_selection(domains, objective):
    src, tgt = domains
    opts = {"hidden": 64} if objective in ("dann", "cdan") else None
    r = adapt(
        src,
        tgt,
        objective=objective,
        objective_opts=opts,
        backbone_opts=LENET,
        max_steps=50,
        eval_every=10,
        **FAST,
    )
    assert {"source_accuracy", "target_entropy", "snd", "last", "target_accuracy*"} <= set(
        r.selections
    )
    for name, sel in r.selections.items():
        assert set(sel.scores) == {"source_accuracy", "target_entropy", "snd"}, name
        assert sel.uses_target_labels == (name == "target_accuracy*")
    assert r.selections["last"].target_top1 > 0.3  # chance is 0.1
    oracle = r.selections["target_accuracy*"].target_top1
    assert all(oracle >= s.target_top1 - 1e-9 for s in r.selections.values())
    assert [h["step"] for h in r.history] == [10, 20, 30, 40, 50]
    text = format_selections(r.selections)
    assert "target_accuracy*" in text and "oracle" in text


def test_target_labels_never_reach_training(domains, monkeypatch):
    import pyxfer.engine as engine

    seen = {}
    real = engine.Trainer

    class Spy(real):
        def __init__(self, objective, data, config, *, target=None, **kw):
            seen["target_labels"] = np.asarray(target.labels).copy()
            seen["source_labels"] = np.asarray(data.labels).copy()
            super().__init__(objective, data, config, target=target, **kw)

    monkeypatch.setattr(engine, "Trainer", Spy)
    src, tgt = domains
    r = adapt(src, tgt, objective="source_only", backbone_opts=LENET, max_steps=2, **FAST)
    assert (seen["target_labels"] == -1).all()
    assert (seen["source_labels"] >= 0).all()
    # the test split is held out of the target training images (default fraction 0.5)
    protocol = r.results[0].protocol
    assert protocol["target_train"] + protocol["test"] == len(tgt)
    assert protocol["uses_target_labels"] is False


def test_conform_resizes_and_converts_channels():
    grey = ImageStore(np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1), [0, 1])
    rgb = conform(grey, 3, 28)
    assert rgb.images.shape == (2, 28, 28, 3)
    assert np.array_equal(rgb.images[..., 0], rgb.images[..., 2])
    back = conform(rgb, 1)
    assert back.images.shape == (2, 28, 28, 1)
    assert np.array_equal(back.images[..., 0], rgb.images[..., 0])
    assert conform(grey, 1) is grey


def test_bad_input(domains):
    src, tgt = domains
    empty = ImageStore(np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64), src.class_names)
    with pytest.raises(ValueError, match=r"target_data: .* no images"):
        adapt(src, empty, objective="dann", backbone_opts=LENET)
    unlabelled = ImageStore(src.images, np.full(len(src), -1), src.class_names)
    with pytest.raises(ValueError, match=r"source_data: .* no labels"):
        adapt(unlabelled, tgt, objective="dann", backbone_opts=LENET)
    with pytest.raises(ValueError, match="objective: expected an adaptation objective"):
        adapt(src, tgt, objective="simclr", backbone_opts=LENET)
    with pytest.raises(ValueError, match="validators: expected label-free"):
        adapt(src, tgt, objective="dann", validators=("target_accuracy",), backbone_opts=LENET)
    other = ImageStore(tgt.images, tgt.labels, [f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="target_data: expected the source's classes"):
        adapt(src, other, objective="dann", backbone_opts=LENET)


def test_cli_adapt(tmp_path, capsys):
    run = tmp_path / "dann"
    argv = ["adapt", "--source-data", "digits", "--target-data", "digits", "--objective", "dann"]
    argv += ["--objective-opt", "hidden=32", "--backbone", "lenet", "--backbone-opt", "img_size=8"]
    argv += ["--max-steps", "20", "--eval-every", "10", "--batch-size", "64", "--threads", "1"]
    argv += ["--device", "cpu", "--out", str(run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "source_accuracy" in out and "target_accuracy*" in out and "oracle" in out
    saved = load_model(run / "model")
    assert saved.task == "classifier" and saved.class_names == [str(i) for i in range(10)]
    doc = json.loads((run / "results.json").read_text())
    marked = {r["metric"]: r["protocol"]["uses_target_labels"] for r in doc["results"]}
    assert marked["adapt/target_top1@target_accuracy*"] is True
    assert marked["adapt/target_top1@snd"] is False
    assert all("validators" in r["protocol"] for r in doc["results"])
    pred = np.load(run / "predictions.npz")
    assert pred["y_true"].shape == pred["y_pred"].shape
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["adapt"]["objective"] == "dann"
    assert main(["adapt", "--source-data", "digits", "--out", str(tmp_path / "x")]) == 2
    assert "--target-data: required" in capsys.readouterr().err


def test_time_budget_with_a_far_step_limit_validates_the_last_step(domains, tmp_path, monkeypatch):
    """``--max-steps 100000 --max-time T``: the run is stopped by time, was validated on the way
    and at its last step, and selection by a label-free validator has a result."""
    import pyxfer.engine.clock as clock

    ticks = [0.0]

    def now() -> float:  # a deterministic clock: 10 ms per reading
        ticks[0] += 0.01
        return ticks[0]

    monkeypatch.setattr(clock, "now", now)
    src, tgt = domains
    r = adapt(
        src,
        tgt,
        objective="dann",
        objective_opts={"hidden": 64},
        backbone_opts=LENET,
        max_steps=100_000,
        max_time=3.0,
        out=tmp_path / "run",
        **FAST,
    )
    last = r.selections["last"].step
    assert 0 < last < 100_000
    assert r.history[-1]["step"] == last and len(r.history) >= 2
    assert r.selections["source_accuracy"].target_top1 > 0.1
    assert (tmp_path / "run" / "model" / "model.json").is_file()


def test_an_error_after_training_keeps_the_trained_weights(domains, tmp_path, monkeypatch):
    import pyxfer.evaluate.metrics as metrics

    def broken(*a, **k):
        raise RuntimeError("boom after training")

    monkeypatch.setattr(metrics, "mean_per_class_accuracy", broken)
    src, tgt = domains
    with pytest.raises(RuntimeError, match="boom after training"):
        adapt(
            src,
            tgt,
            objective="source_only",
            backbone_opts=LENET,
            max_steps=5,
            out=tmp_path / "run",
            **FAST,
        )
    model = load_model(tmp_path / "run" / "model")
    assert model.extra["selected_by"] == "last" and model.extra["selected_step"] == 5
    assert model.backbone.get_classifier().out_features == 10


def test_select_last_saves_the_last_step(domains, tmp_path):
    """By default (``select="last"``) ``model/`` holds the last step's weights, and they predict
    what the last selection scored on the target test split."""
    src, tgt = domains
    r = adapt(
        src,
        tgt,
        objective="source_only",
        backbone_opts=LENET,
        max_steps=6,
        eval_every=2,
        out=tmp_path / "run",
        **FAST,
    )
    assert r.select == "last"
    model = load_model(tmp_path / "run" / "model")
    assert model.extra["selected_by"] == "last" and model.extra["selected_step"] == 6
    pred = np.load(tmp_path / "run" / "predictions.npz")
    acc = float((pred["y_pred"] == pred["y_true"]).mean())
    assert acc == pytest.approx(r.selections["last"].target_top1)
    v = adapt(src, tgt, objective="source_only", backbone_opts=LENET, max_steps=6, eval_every=2,
              select="source_accuracy", out=tmp_path / "val", **FAST)  # fmt: skip
    model = load_model(tmp_path / "val" / "model")
    assert model.extra["selected_by"] == "source_accuracy"
    assert model.extra["selected_step"] == v.selections["source_accuracy"].step
    with pytest.raises(ValueError, match="select: expected 'last' or one of the validators"):
        adapt(src, tgt, objective="source_only", select="best", backbone_opts=LENET)
