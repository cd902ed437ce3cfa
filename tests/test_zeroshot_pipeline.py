"""Zero-shot runs end to end: split, fit, metrics, deployable model, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pyxfer
from pyxfer.cli import main
from pyxfer.zeroshot import digit_descriptions
from pyxfer.zeroshot.pipeline import align_table, evaluate_zeroshot_run, fit_zeroshot


@pytest.fixture(scope="module")
def digits():
    return pyxfer.load_dataset("digits")


def _attribute_features(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Features that carry the digit attributes through a random linear map, plus noise."""
    rng = np.random.default_rng(seed)
    table = digit_descriptions()
    A = rng.normal(size=(table.num_attributes, 48))
    return table.matrix[labels] @ A + 0.3 * rng.normal(size=(labels.size, 48))


def test_unseen_classes_recognised_far_above_chance(digits) -> None:
    feats = _attribute_features(np.asarray(digits.labels))
    bb = pyxfer.create_backbone("lenet", img_size=8)
    # every attribute of 2, 6 and 7 varies among the seen digits (learnable from their images)
    r = fit_zeroshot(bb, digits, "digits", unseen=[2, 6, 7], features=feats, seed=0)
    assert r.unseen == [2, 6, 7] and len(r.seen) == 7
    assert r.chance_zsl == pytest.approx(1 / 3)
    assert r.zsl > 0.8  # chance is 0.33
    assert r.gzsl_u > r.gzsl_raw_u  # calibration moves predictions towards unseen classes
    assert 0 < r.gzsl_h <= 1 and 0 < r.ausuc <= 1
    assert r.protocol["train_images"] + r.protocol["seen_test_images"] == int(
        np.isin(digits.labels, r.seen).sum()
    )


def test_run_directory_model_and_deployed_scores(digits, tmp_path) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    run = tmp_path / "zs"
    r = fit_zeroshot(
        bb,
        digits,
        "digits",
        unseen=2,
        seed=3,
        out=run,
        backbone_name="lenet",
        backbone_kwargs={"img_size": 8},
        report=False,
    )
    assert {"results.json", "config.json", "predictions.npz", "features.npz", "model"} <= {
        p.name for p in run.iterdir()
    }
    doc = json.loads((run / "results.json").read_text())
    metrics = {row["metric"] for row in doc["results"]}
    assert {"zsl_top1_per_class", "gzsl_s", "gzsl_u", "gzsl_h", "ausuc"} <= metrics
    from pyxfer.modelio import load_model

    saved = load_model(run / "model")
    assert saved.task == "zeroshot" and saved.class_names == list(digits.class_names)
    assert saved.arrays["class_embeddings"].shape == (10, digit_descriptions().num_attributes)
    # the deployed cosine scores rank classes as the fitted ESZSL does (rows are unit length)
    again = evaluate_zeroshot_run(run, digits)
    assert again.zsl == pytest.approx(r.zsl)
    assert again.unseen == r.unseen


def test_bad_inputs(digits) -> None:
    bb = pyxfer.create_backbone("lenet", img_size=8)
    feats = _attribute_features(np.asarray(digits.labels))
    with pytest.raises(ValueError, match="unseen: expected distinct class ids"):
        fit_zeroshot(bb, digits, unseen=[3, 3], features=feats)
    with pytest.raises(ValueError, match="unseen: expected distinct class ids"):
        fit_zeroshot(bb, digits, unseen=[12], features=feats)
    with pytest.raises(ValueError, match="method"):
        fit_zeroshot(bb, digits, unseen=[1], method="magic", features=feats)
    table = digit_descriptions().select(list(range(9)))  # no row for the digit 9
    with pytest.raises(ValueError, match="descriptions: expected a row for every class"):
        align_table(table, [f"c{i}" for i in range(10)])
    with pytest.raises(ValueError, match="features: expected 1797 rows"):
        fit_zeroshot(bb, digits, unseen=[1], features=feats[:10])


def test_cli_fit_and_eval(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "zeroshot",
            "fit",
            "--backbone",
            "lenet",
            "-o",
            "img_size=8",
            "--data",
            "digits",
            "--unseen",
            "0,6",
            "--out",
            str(run),
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["metric"] == "zsl_top1_per_class"
    assert (run / "report.html").is_file() and (run / "model" / "model.json").is_file()
    assert main(["zeroshot", "eval", str(run), "--data", "digits"]) == 0
    assert "zsl_top1_per_class" in capsys.readouterr().out
    assert main(["zeroshot", "fit", "--data", "digits"]) == 2  # no model, no backbone
