"""``bench/make_mnistm.py``: the MNIST-M-style target is what it claims (each digit
``|photo patch - binarised digit|``), the source and target halves are disjoint, and the same
inputs and seed write byte-identical stores. Synthetic inputs only (no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from pyxfer.data import ImageStore, load_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "make_mnistm.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="needs bench/make_mnistm.py")


def _module():
    return load_script(SCRIPT, "pyxfer_make_mnistm")


def _inputs(n: int = 40, m: int = 7) -> tuple[ImageStore, ImageStore]:
    rng = np.random.default_rng(5)
    digits = np.zeros((n, 28, 28, 1), np.uint8)
    digits[:, 8:20, 10:18, 0] = rng.integers(0, 256, (n, 12, 8), dtype=np.uint8)  # some zeros
    labels = np.arange(n) % 10
    photos = rng.integers(0, 256, (m, 32, 32, 3), dtype=np.uint8)
    return (
        ImageStore(digits, labels, [str(i) for i in range(10)], name="d", source="d"),
        ImageStore(photos, np.zeros(m, np.int64), ["p"], name="p", source="p"),
    )


def test_blend_is_abs_difference_of_patch_and_binarised_digit() -> None:
    mm = _module()
    digits, photos = _inputs()
    d = digits.batch(np.arange(len(digits)))
    p = photos.batch(np.arange(len(photos)))
    out, draws = mm.blend(d, p, seed=3)
    assert out.shape == (len(d), 28, 28, 3) and out.dtype == np.uint8
    assert set(np.unique(draws["top"])) <= set(range(5)) and draws["left"].max() <= 4
    assert len(np.unique(draws["photo"])) > 1  # photos are drawn, not one for all
    for i in range(len(d)):
        t, l_ = draws["top"][i], draws["left"][i]
        patch = p[draws["photo"][i], t : t + 28, l_ : l_ + 28].astype(np.int16)
        stroke = d[i, ..., 0] > 0
        np.testing.assert_array_equal(out[i][~stroke], patch[~stroke])  # background: the photo
        np.testing.assert_array_equal(out[i][stroke], 255 - patch[stroke])  # stroke: inverted
    again, _ = mm.blend(d, p, seed=3)
    other, _ = mm.blend(d, p, seed=4)
    assert np.array_equal(out, again) and not np.array_equal(out, other)


def test_blend_rejects_bad_inputs() -> None:
    mm = _module()
    digits, photos = _inputs()
    d = digits.batch(np.arange(4))
    with pytest.raises(ValueError, match="photos: expected at least 28x28"):
        mm.blend(d, np.zeros((2, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="digits: expected uint8"):
        mm.blend(d.astype(np.float32), photos.batch(np.arange(2)))


def test_build_writes_disjoint_halves_deterministically(tmp_path) -> None:
    mm = _module()
    digits, photos = _inputs()
    src, tgt = mm.build(digits, photos, tmp_path / "one", seed=0)
    mm.build(digits, photos, tmp_path / "two", seed=0)
    for name in ("mnist-a", "mnistm-b"):
        for f in ("images.npy", "labels.npy"):
            one = (tmp_path / "one" / name / f).read_bytes()
            assert one == (tmp_path / "two" / name / f).read_bytes(), (name, f)
    a, b = load_dataset(f"packed:{src}"), load_dataset(f"packed:{tgt}")
    ia = json.loads((src / "meta.json").read_text())["info"]["indices"]
    ib = json.loads((tgt / "meta.json").read_text())["info"]["indices"]
    assert sorted(ia + ib) == list(range(len(digits))) and not set(ia) & set(ib)
    assert len(a) == len(b) == len(digits) // 2
    assert a.channels == 1 and b.channels == 3
    all_d = digits.batch(np.arange(len(digits)))
    np.testing.assert_array_equal(a.batch(np.arange(len(a))), all_d[ia])
    np.testing.assert_array_equal(a.labels, digits.labels[ia])
    np.testing.assert_array_equal(b.labels, digits.labels[ib])
    # every class in both halves (stratified)
    assert set(a.labels) == set(b.labels) == set(range(10))
    want, _ = mm.blend(all_d[ib], photos.batch(np.arange(len(photos))), seed=0)
    np.testing.assert_array_equal(b.batch(np.arange(len(b))), want)
