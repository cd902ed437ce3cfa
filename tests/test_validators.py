"""Label-free model selection: accuracy, entropy, soft neighbourhood density, the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pyxfer.transfer.selection import (
    VALIDATORS,
    SoftNeighborhoodDensity,
    ValidationData,
    accuracy,
    create_validator,
    format_results,
    list_validators,
    mean_entropy,
    run_validators,
    soft_neighborhood_density,
)


class Fixed(nn.Module):
    """A model whose logits are a fixed linear map of the flattened image; features = input."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
        self.dropout = nn.Dropout(0.9)  # active only in train mode
        self.eval_calls = 0

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.eval_calls += 1
        return self.lin(self.dropout(x.flatten(1)))


def _snd_loops(x: np.ndarray, t: float) -> float:
    n = len(x)
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for i in range(n):
        s = [(-1.0 if j == i else float(z[i] @ z[j])) / t for j in range(n)]
        m = max(s)
        e = [math.exp(v - m) for v in s]
        p = [v / sum(e) for v in e]
        total += -sum(v * math.log(v) for v in p if v > 0)
    return total / n


def test_registry_flags():
    assert set(VALIDATORS) == {"source_accuracy", "target_entropy", "snd", "target_accuracy"}
    flags = {n: (c.higher_is_better, c.uses_target_labels) for n, c in VALIDATORS.items()}
    assert flags == {
        "source_accuracy": (True, False),
        "target_entropy": (False, False),
        "snd": (True, False),
        "target_accuracy": (True, True),
    }
    assert "target_accuracy" not in list_validators(label_free=True)
    with pytest.raises(ValueError, match="name: expected one of"):
        create_validator("dev")


def test_accuracy_and_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 0])) == pytest.approx(0.75)
    uniform = torch.zeros(5, 4)
    assert mean_entropy(uniform) == pytest.approx(math.log(4))
    confident = torch.tensor([[10.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    unsure = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.4, 0.1]])
    assert mean_entropy(confident) < 0.01 < mean_entropy(unsure)
    p = np.exp([0.5, 0.0, 0.0]) / np.exp([0.5, 0.0, 0.0]).sum()
    assert mean_entropy(unsure[:1]) == pytest.approx(-(p * np.log(p)).sum(), rel=1e-6)
    with pytest.raises(ValueError, match="logits"):
        accuracy(logits, torch.tensor([0, 1]))


def test_snd_against_loops():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 4, generator=g)
    for t in (0.05, 0.5):
        assert soft_neighborhood_density(x, t) == pytest.approx(
            _snd_loops(x.double().numpy(), t), rel=1e-4
        )
    with pytest.raises(ValueError, match="N >= 2"):
        soft_neighborhood_density(x[:1])


def test_snd_higher_for_well_clustered_targets():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 16, generator=g)
    clustered = centres.repeat_interleave(10, 0) + 0.01 * torch.randn(30, 16, generator=g)
    scattered = torch.randn(30, 16, generator=g)
    hi, lo = soft_neighborhood_density(clustered), soft_neighborhood_density(scattered)
    assert hi > lo + 1.0
    assert hi == pytest.approx(math.log(9), abs=0.05)  # 9 indistinguishable neighbours each


def _data(with_target_labels: bool = True) -> tuple[Fixed, ValidationData]:
    g = torch.Generator().manual_seed(2)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    xs = torch.randn(20, 2, 1, 1, generator=g) * 3
    ys = Fixed(w).eval().predict(xs).argmax(1)
    ys[:5] = (ys[:5] + 1) % 3  # 15 of 20 right
    xt = torch.randn(9, 2, 1, 1, generator=g)
    yt = Fixed(w).eval().predict(xt).argmax(1) if with_target_labels else None
    return Fixed(w), ValidationData(xs, ys, xt, yt)


def test_run_validators_values_modes_and_batching():
    model, data = _data()
    model.train()
    res = run_validators(model, data, batch_size=4)
    assert list(res) == ["source_accuracy", "target_entropy", "snd", "target_accuracy"]
    assert res["source_accuracy"].value == pytest.approx(0.75)
    assert res["target_accuracy"].value == 1.0
    assert res["target_accuracy"].uses_target_labels and res["target_accuracy"].label.endswith("*")
    logits_t = model.eval().predict(data.target_images)
    assert res["target_entropy"].value == pytest.approx(mean_entropy(logits_t), rel=1e-6)
    probs = torch.softmax(logits_t, 1)
    assert res["snd"].value == pytest.approx(soft_neighborhood_density(probs), rel=1e-5)
    model.train()
    again = run_validators(model, data, batch_size=256)
    assert model.training  # mode restored
    for n in res:
        assert again[n].value == pytest.approx(res[n].value, rel=1e-6)  # batching-independent
    feats = SoftNeighborhoodDensity(on="features")(model, data)
    assert feats == pytest.approx(soft_neighborhood_density(data.target_images.flatten(1)))


def test_validators_share_one_prediction_per_image_set():
    """An evaluation predicts each image set once: entropy, SND and the target oracle read the
    same target logits (before, each validator ran its own forward)."""
    model, data = _data()
    seen: list[int] = []
    predict = model.predict

    def counting(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return predict(x)

    model.predict = counting  # type: ignore[method-assign]
    res = run_validators(model, data, batch_size=4)
    n_s, n_t = len(data.source_images), len(data.target_images)
    assert sum(seen) == n_s + n_t  # not n_s + 3 * n_t
    model.predict = predict  # type: ignore[method-assign]
    alone = {n: create_validator(n)(model, data) for n in res}
    for n in res:
        assert res[n].value == pytest.approx(alone[n], rel=1e-6)


def test_label_free_run_without_target_labels_and_missing_data():
    model, data = _data(with_target_labels=False)
    res = run_validators(model, data)
    assert "target_accuracy" not in res
    assert not any(r.uses_target_labels for r in res.values())
    with pytest.raises(ValueError, match="target_labels"):
        run_validators(model, data, ["target_accuracy"])
    with pytest.raises(ValueError, match="source_images"):
        run_validators(model, ValidationData(target_images=data.target_images), ["source_accuracy"])


def test_format_marks_target_label_scores():
    model, data = _data()
    text = format_results(run_validators(model, data))
    assert "target_accuracy*" in text and "uses target labels" in text
    assert "snd*" not in text
    model, data = _data(with_target_labels=False)
    assert "*" not in format_results(run_validators(model, data))


def test_is_better_follows_direction():
    assert create_validator("snd").is_better(1.2, 1.0)
    assert create_validator("target_entropy").is_better(0.1, 0.5)
    assert not create_validator("target_entropy").is_better(0.5, 0.1)
    assert not create_validator("snd").is_better(float("nan"), 0.0)
    assert create_validator("snd").is_better(0.0, float("nan"))


def test_adaptation_objective_plugs_in():
    from pyxfer import create_objective

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.ReLU())
    backbone.num_features = 4
    obj = create_objective("entropy_min", backbone, num_classes=3)
    _, data = _data()
    res = run_validators(obj, data)
    assert 0.0 <= res["source_accuracy"].value <= 1.0
    assert 0.0 <= res["target_entropy"].value <= math.log(3) + 1e-6
