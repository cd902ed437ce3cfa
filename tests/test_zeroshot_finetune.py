"""Attribute-supervised backbone training: learns attributes that transfer to unseen classes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from pyxfer.zeroshot import ESZSL, AttributeBackbone, zsl_accuracy
from pyxfer.zeroshot.finetune import random_shift

SIDE = 8
# 4 attributes, each a bright 3x3 block in one quadrant of an 8x8 image
QUADRANTS = [(0, 0), (0, 5), (5, 0), (5, 5)]


def glyph_problem(seed: int = 0):
    """Classes = each quadrant alone and every pair of quadrants (10 classes); two pairs unseen.

    Every attribute is seen both alone and in pairs, so it cannot be told from a class alone:
    the unseen pairs are new combinations of attributes that were each seen.
    """
    combos = [(i,) for i in range(4)] + list(itertools.combinations(range(4), 2))
    S = np.zeros((len(combos), 4))
    for c, combo in enumerate(combos):
        S[c, list(combo)] = 1.0
    rng = np.random.default_rng(seed)

    def images(classes, n):
        y = np.repeat(classes, n)
        x = 0.3 * rng.normal(size=(y.size, 1, SIDE, SIDE))
        for k, c in enumerate(y):
            for a in np.flatnonzero(S[c]):
                r, q = QUADRANTS[a]
                x[k, 0, r : r + 3, q : q + 3] += 1.0 + 0.2 * rng.normal()
        return torch.as_tensor(x, dtype=torch.float32), y

    unseen = np.array([combos.index((0, 3)), combos.index((1, 2))])
    seen = np.setdiff1d(np.arange(len(combos)), unseen)
    x_tr, y_tr = images(seen, 20)
    x_te, y_te = images(unseen, 30)
    return S, x_tr, y_tr, x_te, y_te, unseen


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())  # (N, 256)


def test_learns_attributes_that_transfer_to_unseen_classes() -> None:
    S, x_tr, y_tr, x_te, y_te, unseen = glyph_problem()
    model = AttributeBackbone(
        small_net(), epochs=30, lr=1e-2, batch_size=32, max_shift=0, seed=0
    ).fit(x_tr, y_tr, S)
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]
    pred = model.predict_attributes(x_te)  # (60, 4) probabilities
    assert pred.shape == (60, 4) and (pred >= 0).all() and (pred <= 1).all()
    bit_acc = ((pred > 0.5) == (S[y_te] > 0.5)).mean()
    assert bit_acc > 0.8  # attributes of classes never trained on are recognised
    feats = model.transform(x_tr)
    assert feats.shape == (x_tr.shape[0], 256)
    eszsl = ESZSL(gamma=1.0, lam=1.0).fit(feats, y_tr, S)
    acc = zsl_accuracy(y_te, eszsl.decision_function(model.transform(x_te)), np.arange(10), unseen)
    assert acc > 0.9


def test_seeded_and_leaves_the_callers_backbone_alone() -> None:
    S, x_tr, y_tr, x_te, _, _ = glyph_problem()
    net = small_net()
    before = [p.detach().clone() for p in net.parameters()]
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    a = AttributeBackbone(net, epochs=2, seed=3).fit(x_tr, y_tr, S)
    torch.testing.assert_close(torch.rand(3), expected)  # the caller's RNG stream is untouched
    b = AttributeBackbone(net, epochs=2, seed=3).fit(x_tr, y_tr, S)
    c = AttributeBackbone(net, epochs=2, seed=4).fit(x_tr, y_tr, S)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    np.testing.assert_array_equal(a.transform(x_te), b.transform(x_te))
    assert not np.allclose(a.transform(x_te), c.transform(x_te))
    assert a.class_head_ is not None and a.class_head_.out_features == 8


def test_class_only_and_continuous_attributes() -> None:
    S, x_tr, y_tr, x_te, _, _ = glyph_problem()
    plain = AttributeBackbone(small_net(), attribute_weight=0.0, epochs=1).fit(x_tr, y_tr, S)
    assert plain.transform(x_te).shape == (60, 256)
    scaled = AttributeBackbone(
        small_net(), class_weight=0.0, epochs=20, lr=1e-2, batch_size=32, max_shift=0
    ).fit(x_tr, y_tr, 3.0 * S)  # values outside [0, 1]: squared error, raw predictions
    assert scaled.class_head_ is None and not scaled.bce_
    pred = scaled.predict_attributes(x_tr)
    assert pred.max() > 1.5  # regression towards 3, not a probability
    assert np.abs(pred - 3.0 * S[y_tr]).mean() < 0.6


def test_random_shift_matches_a_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 6, 7)
    out = random_shift(x, 2, gen)
    gen = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (5,), generator=gen)
    dx = torch.randint(0, 5, (5,), generator=gen)
    for k in range(5):
        fill = float(x[k].min())
        big = torch.full((2, 10, 11), fill)
        big[:, 2:8, 2:9] = x[k]
        ref = big[:, int(dy[k]) : int(dy[k]) + 6, int(dx[k]) : int(dx[k]) + 7]
        torch.testing.assert_close(out[k], ref)
    assert random_shift(x, 0, gen) is x


def test_bad_input() -> None:
    S, x_tr, y_tr, _, _, _ = glyph_problem()
    with pytest.raises(ValueError, match=r"backbone: expected an nn\.Module"):
        AttributeBackbone(3)
    with pytest.raises(ValueError, match="class_weight: expected a number >= 0"):
        AttributeBackbone(small_net(), class_weight=-1.0)
    with pytest.raises(ValueError, match="attribute_weight: expected > 0"):
        AttributeBackbone(small_net(), attribute_weight=0.0, class_weight=0.0)
    with pytest.raises(ValueError, match="epochs: expected a positive integer"):
        AttributeBackbone(small_net(), epochs=0)
    with pytest.raises(ValueError, match="max_shift: expected an integer >= 0"):
        AttributeBackbone(small_net(), max_shift=-1)
    model = AttributeBackbone(small_net(), epochs=1)
    with pytest.raises(ValueError, match=r"X: expected a non-empty batch of images \(N, C, H, W\)"):
        model.fit(x_tr[:, 0], y_tr, S)
    with pytest.raises(ValueError, match="y: expected a 1-d array of 160 labels"):
        model.fit(x_tr, y_tr[:5], S)
    with pytest.raises(ValueError, match="missing class"):
        model.fit(x_tr, y_tr, S[:5])
    with pytest.raises(ValueError, match="at least 2 classes"):
        model.fit(x_tr[:10], np.zeros(10, dtype=np.int64), S)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.transform(x_tr)
