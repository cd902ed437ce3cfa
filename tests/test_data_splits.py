"""Seeded splits: stratification, determinism, few-shot counts, disjoint class splits."""

from __future__ import annotations

import numpy as np
import pytest

from pyxfer.data import class_split, few_shot, indices_of_classes, stratified_split


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(3)
    lab = np.repeat(np.arange(4), [50, 30, 20, 11])
    lab = np.concatenate([lab, np.full(9, -1)])
    return lab[rng.permutation(lab.size)]


def test_stratified_split_covers_and_keeps_proportions(labels: np.ndarray) -> None:
    fractions = (0.6, 0.25, 0.15)
    parts = stratified_split(labels, fractions, seed=0)
    assert len(parts) == 3
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(labels.size))  # disjoint, complete
    for part in parts:
        assert np.all(np.diff(part) > 0)  # sorted
    for c in [-1, 0, 1, 2, 3]:
        n = int((labels == c).sum())
        for part, f in zip(parts, fractions, strict=True):
            assert abs(int((labels[part] == c).sum()) - n * f) < 1.0


def test_stratified_split_is_deterministic(labels: np.ndarray) -> None:
    a = stratified_split(labels, (0.5, 0.5), seed=7)
    b = stratified_split(labels, (0.5, 0.5), seed=7)
    c = stratified_split(labels, (0.5, 0.5), seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("fractions", [(1.0,), (0.5, 0.6), (1.2, -0.2)])
def test_stratified_split_bad_fractions(labels: np.ndarray, fractions) -> None:
    with pytest.raises(ValueError, match="fractions: expected"):
        stratified_split(labels, fractions)


def test_few_shot_counts_and_determinism(labels: np.ndarray) -> None:
    idx = few_shot(labels, k=5, seed=1)
    assert np.bincount(labels[idx], minlength=4).tolist() == [5, 5, 5, 5]
    assert (labels[idx] >= 0).all() and np.unique(idx).size == idx.size
    assert np.array_equal(idx, few_shot(labels, k=5, seed=1))
    assert not np.array_equal(idx, few_shot(labels, k=5, seed=2))
    assert set(few_shot(labels, k=11, seed=0)[labels[few_shot(labels, k=11, seed=0)] == 3]) == set(
        np.flatnonzero(labels == 3)
    )


def test_few_shot_errors_name_the_class(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="class 3 has 11 labelled image"):
        few_shot(labels, k=12)
    with pytest.raises(ValueError, match="class 4 has 0 labelled"):
        few_shot(labels, k=1, num_classes=5)
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        few_shot(labels, k=0)


def test_class_split(labels: np.ndarray) -> None:
    seen, unseen = class_split(10, unseen=3, seed=0)
    assert unseen.size == 3 and seen.size == 7
    assert np.array_equal(np.sort(np.concatenate([seen, unseen])), np.arange(10))
    assert np.array_equal(unseen, class_split(10, unseen=3, seed=0)[1])
    assert class_split(10, unseen=0.2, seed=0)[1].size == 2
    seen, unseen = class_split(4, unseen=[3, 1])
    assert seen.tolist() == [0, 2] and unseen.tolist() == [1, 3]
    test_idx = indices_of_classes(labels, unseen)
    assert set(labels[test_idx].tolist()) == {1, 3}
    assert test_idx.size == 41
    train_idx = indices_of_classes(labels, seen)
    assert np.intersect1d(train_idx, test_idx).size == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 10), r"unseen: expected a count in \[1, 9\]"),
        ((10, 1.5), "fraction"),
        ((4, [4]), "class ids in"),
        ((2, [0, 1]), "at least one seen"),
        ((1, 1), "num_classes"),
    ],
)
def test_class_split_errors(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_split(*args)
