"""Zero-shot metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from pyxfer.zeroshot.metrics import (
    ausuc,
    best_stacking_gamma,
    calibrated_stacking,
    gzsl_accuracy,
    harmonic_mean,
    seen_unseen_curve,
    zsl_accuracy,
)
from pyxfer.zeroshot.metrics import mean_per_class_accuracy as per_class_accuracy


def test_per_class_accuracy_is_a_mean_over_classes_not_samples() -> None:
    # class 0: 2 of 3 right, class 1: 1 of 1 -> (2/3 + 1) / 2; per-sample would be 3/4
    assert per_class_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(5 / 6)
    assert per_class_accuracy([3, 3, 7], [3, 3, 7]) == 1.0
    assert per_class_accuracy([3, 3, 7], [7, 7, 3]) == 0.0


def test_per_class_accuracy_rejects_a_listed_class_without_images() -> None:
    with pytest.raises(ValueError, match=r"classes: class\(es\) \[2\] have no images"):
        per_class_accuracy([0, 1], [0, 1], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="y_pred"):
        per_class_accuracy([0, 1], [0, 1, 1])


def test_zsl_accuracy_predicts_among_unseen_classes_only() -> None:
    # columns are classes 0..3, unseen = {2, 3}; the seen column 0 wins overall but is ignored
    scores = np.array([[9, 0, 1, 0], [9, 0, 0, 1], [0, 0, 1, 0.5]])
    # predictions among {2, 3}: 2, 3, 2 -> class 2: 1/1, class 3: 1/2 -> 0.75
    assert zsl_accuracy([2, 3, 3], scores, [0, 1, 2, 3], [2, 3]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="y_true"):
        zsl_accuracy([0, 3, 3], scores, [0, 1, 2, 3], [2, 3])


def test_gzsl_seen_unseen_and_harmonic_mean() -> None:
    # seen {0, 1}, unseen {2}; s = (1/2 + 1/1) / 2 = 0.75, u = 1/2, H = 2*.5*.75/1.25 = 0.6
    r = gzsl_accuracy([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], seen_classes=[0, 1], unseen_classes=[2])
    assert (r.s, r.u) == pytest.approx((0.75, 0.5))
    assert r.h == pytest.approx(0.6)


def test_harmonic_mean_is_zero_when_either_accuracy_is_zero() -> None:
    assert harmonic_mean(0.0, 0.9) == 0.0
    assert harmonic_mean(0.8, 0.0) == 0.0
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(1.0, 0.5) == pytest.approx(2 / 3)


def test_gzsl_split_errors() -> None:
    with pytest.raises(ValueError, match=r"unseen_classes: expected no overlap.*\[1\]"):
        gzsl_accuracy([0, 1], [0, 1], seen_classes=[0, 1], unseen_classes=[1])
    with pytest.raises(ValueError, match=r"seen_classes: class\(es\) \[5\] have no images"):
        gzsl_accuracy([0, 1], [0, 1], seen_classes=[0, 5], unseen_classes=[1])


# four images, seen classes {0, 1}, unseen {2}; columns are classes 0, 1, 2
_SCORES = np.array(
    [
        [3.0, 1.0, 2.0],  # true 0: best seen 0 (right), t = 3 - 2 = 1
        [0.0, 2.0, 2.5],  # true 1: best seen 1 (right), t = 2 - 2.5 = -0.5
        [1.0, 0.0, 0.5],  # true 2: best unseen 2 (right), t = 1 - 0.5 = 0.5
        [0.0, 4.0, 1.0],  # true 2: t = 4 - 1 = 3
    ]
)
_Y = np.array([0, 1, 2, 2])


def test_seen_unseen_curve_by_hand() -> None:
    curve = seen_unseen_curve(_SCORES, _Y, [0, 1, 2], [0, 1], [2])
    # gamma -inf: all seen (s=1, u=0); -0.5: image 1 flips (s=.5); 0.5: image 2 flips (u=.5);
    # 1: image 0 flips (s=0); 3: image 3 flips (u=1)
    np.testing.assert_allclose(curve.gammas, [-np.inf, -0.5, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(curve.seen, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(curve.unseen, [0, 0, 0.5, 0.5, 1])
    # area: only the step from s=.5 to s=0 at u=.5 counts -> 0.5 * 0.5
    assert curve.ausuc == pytest.approx(0.25)
    assert ausuc(_SCORES, _Y, [0, 1, 2], [0, 1], [2]) == pytest.approx(0.25)


def test_best_gamma_and_calibrated_stacking_by_hand() -> None:
    gamma, res = best_stacking_gamma(_SCORES, _Y, [0, 1, 2], [0, 1], [2])
    assert 0.5 <= gamma < 1.0  # any gamma in [0.5, 1) gives s = u = 0.5, the best H
    assert (res.s, res.u, res.h) == pytest.approx((0.5, 0.5, 0.5))
    calibrated = calibrated_stacking(_SCORES, [0, 1, 2], [0, 1], gamma)
    np.testing.assert_allclose(calibrated[:, 2], _SCORES[:, 2])  # unseen column untouched
    np.testing.assert_allclose(calibrated[:, :2], _SCORES[:, :2] - gamma)
    pred = np.argmax(calibrated, axis=1)
    assert pred.tolist() == [0, 2, 2, 1]
    r = gzsl_accuracy(_Y, pred, [0, 1], [2])
    assert (r.s, r.u) == pytest.approx((0.5, 0.5))
    # without calibration every image goes to a seen class except image 1
    raw = gzsl_accuracy(_Y, np.argmax(_SCORES, axis=1), [0, 1], [2])
    assert (raw.s, raw.u) == pytest.approx((0.5, 0.0))


def test_ausuc_of_a_perfect_model_is_one() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(6)
    y = np.repeat(ids, [3, 1, 4, 2, 5, 2])
    scores = rng.uniform(0, 1, (y.size, 6))
    scores[np.arange(y.size), y] += 10
    assert ausuc(scores, y, ids, [0, 1, 2], [3, 4, 5]) == pytest.approx(1.0)


def test_curve_matches_direct_stacking_at_every_step() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([10, 11, 12, 13, 14])
    seen, unseen = [10, 12, 14], [11, 13]
    y = rng.choice(ids, 60)
    y[:5] = ids
    scores = rng.normal(size=(60, 5))
    scores[np.arange(60), np.searchsorted(ids, y)] += 0.8
    curve = seen_unseen_curve(scores, y, ids, seen, unseen)
    mids = np.concatenate(
        [[curve.gammas[1] - 1], (curve.gammas[1:-1] + curve.gammas[2:]) / 2, [curve.gammas[-1] + 1]]
    )
    for k, g in enumerate(mids):
        pred = ids[np.argmax(calibrated_stacking(scores, ids, seen, g), axis=1)]
        r = gzsl_accuracy(y, pred, seen, unseen)
        assert (r.s, r.u) == pytest.approx((curve.seen[k], curve.unseen[k]))
    assert np.all(np.diff(curve.seen) <= 1e-12) and np.all(np.diff(curve.unseen) >= -1e-12)
    assert 0 < curve.ausuc < 1
