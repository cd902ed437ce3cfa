"""``pyxfer.transfer.semisup`` / ``pyxfer semisup``: K labels per class + unlabelled images,
FixMatch's settings, the seeded labelled draw, the supervised baseline, the CLI as typed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from test_user_path import pyxfer

from pyxfer.data import load_dataset
from pyxfer.engine import TrainConfig
from pyxfer.engine.optim import lr_factor
from pyxfer.transfer.semisup import FIXMATCH_SETTINGS, semisup

LENET = {"img_size": 8}
FAST = {"threads": 1, "device": "cpu", "log_every": 10, "flip": False, "batch_size": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


def test_fixmatch_schedule_and_settings():
    assert lr_factor(0, 100, schedule="fixmatch") == 1.0
    assert math.isclose(lr_factor(50, 100, schedule="fixmatch"), math.cos(7 * math.pi / 32))
    assert math.isclose(lr_factor(100, 100, schedule="fixmatch"), math.cos(7 * math.pi / 16))
    assert lr_factor(2, 100, warmup_steps=4, schedule="fixmatch") == 0.75
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(1, 10, schedule="step")
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="unlabelled_ratio"):
        TrainConfig(unlabelled_ratio=0)
    cfg = TrainConfig(**FIXMATCH_SETTINGS)
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.03, 0.9, True, 5e-4)
    assert (cfg.batch_size, cfg.unlabelled_ratio, cfg.ema) == (64, 7, 0.999)


@pytest.fixture(scope="module")
def runs():
    """FixMatch and the supervised baseline on 4 digits per class (same labels, same steps)."""
    torch.set_num_threads(1)
    common = dict(
        labels_per_class=4,
        backbone="lenet",
        backbone_opts=LENET,
        max_steps=200,
        unlabelled_ratio=4,
        seed=0,
        **FAST,
    )
    return {
        "fixmatch": semisup("digits", objective="fixmatch", eval_every=100, **common),
        "source_only": semisup("digits", objective="source_only", **common),
    }


def test_fixmatch_learns_and_beats_the_supervised_baseline(runs):
    fm, sup = runs["fixmatch"], runs["source_only"]
    np.testing.assert_array_equal(fm.labelled, sup.labelled)  # the same labels
    assert sup.test_top1 > 0.3  # chance is 0.1
    assert fm.test_top1 > sup.test_top1 + 0.03, (fm.test_top1, sup.test_top1)
    assert [h["step"] for h in fm.history] == [100, 200]
    assert fm.history[-1]["test_top1"] == pytest.approx(fm.test_top1)


def test_labelled_draw_is_seeded_per_class_and_never_from_the_test_split():
    d = load_dataset("digits")
    kw = dict(
        labels_per_class=3,
        backbone="lenet",
        backbone_opts=LENET,
        max_steps=1,
        objective="source_only",
        **FAST,
    )
    a, b = semisup(d, seed=1, **kw), semisup(d, seed=1, **kw)
    c = semisup(d, seed=2, **kw)
    np.testing.assert_array_equal(a.labelled, b.labelled)
    assert not np.array_equal(a.labelled, c.labelled)
    assert np.bincount(d.labels[a.labelled], minlength=10).tolist() == [3] * 10
    # test_fraction 0.2 of 1,797 is held out; the unlabelled pool is the rest
    assert a.unlabelled == 1797 - round(0.2 * 1797)


def test_unlabelled_batch_is_mu_times_the_labelled_one(monkeypatch):
    import pyxfer.engine as engine

    seen = {}
    real = engine.Trainer

    class Spy(real):
        def fit(self):
            out = super().fit()
            seen["target"] = None if self.target_loader is None else self.target_loader.batch_size
            seen["source"] = self.loader.batch_size
            return out

    monkeypatch.setattr(engine, "Trainer", Spy)
    kw = dict(
        labels_per_class=2,
        backbone="lenet",
        backbone_opts=LENET,
        max_steps=2,
        unlabelled_ratio=3,
        **FAST,
    )
    semisup("digits", objective="fixmatch", **kw)
    assert seen == {"source": 16, "target": 48}
    semisup("digits", objective="source_only", **kw)
    assert seen == {"source": 16, "target": None}  # the baseline augments no unlabelled view


def test_bad_input_names_the_argument():
    kw = dict(backbone="lenet", backbone_opts=LENET, max_steps=1, **FAST)
    with pytest.raises(ValueError, match="labels_per_class"):
        semisup("digits", labels_per_class=0, **kw)
    with pytest.raises(ValueError, match="labels_per_class"):
        semisup("digits", labels_per_class=1000, **kw)
    with pytest.raises(ValueError, match="test_fraction"):
        semisup("digits", labels_per_class=2, test_fraction=1.0, **kw)
    with pytest.raises(ValueError, match="objective"):
        semisup("digits", labels_per_class=2, objective="simclr", **kw)


def test_cli_as_typed_with_relative_paths(tmp_path):
    """``pyxfer semisup`` from a fresh directory: a folder of labelled images, a folder of
    unlabelled ones, relative paths, the run directory where the user said."""
    d = load_dataset("digits")
    rng = np.random.default_rng(0)
    for split, n in (("labelled", 12), ("unlabelled", 6)):
        for c in range(10):
            folder = tmp_path / "images" / split / str(c)
            folder.mkdir(parents=True)
            for i, k in enumerate(rng.choice(np.flatnonzero(d.labels == c), n, replace=False)):
                Image.fromarray(d.images[k][..., 0]).save(folder / f"{i}.png")
    work = tmp_path / "work"
    work.mkdir()
    proc = pyxfer(
        work,
        "semisup",
        "--data",
        "folder:../images/labelled",
        "--unlabelled-data",
        "folder:../images/unlabelled",
        "--labels-per-class",
        "4",
        "--test-fraction",
        "0.25",
        "--backbone",
        "lenet",
        "-o",
        "img_size=8",
        "--no-flip",
        "--batch-size",
        "8",
        "--unlabelled-ratio",
        "2",
        "--max-steps",
        "5",
        "--threads",
        "1",
        "--out",
        "runs/fm",
    )
    assert "test top-1" in proc.stdout and "40 labelled, 60 unlabelled images" in proc.stdout
    run = work / "runs" / "fm"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["optimizer"] == "sgd" and cfg["nesterov"] and cfg["lr"] == 0.03
    assert cfg["lr_schedule"] == "fixmatch" and cfg["ema"] == 0.999
    assert cfg["semisup"]["labels_per_class"] == 4 and len(cfg["semisup"]["labelled_indices"]) == 40
    results = json.loads((run / "results.json").read_text())
    assert {r["metric"] for r in results["results"]} >= {"semisup/test_top1"}
    assert (run / "model").is_dir() and (run / "predictions.npz").is_file()
    help_text = pyxfer(work, "semisup", "--help").stdout
    assert "--unlabelled-ratio" in help_text and "(default: 0.03)" in help_text
