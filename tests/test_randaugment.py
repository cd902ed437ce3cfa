"""RandAugment's ops and Cutout in the fused augmentation kernel: sampling, torchvision
parity (golden file from bench/randaugment_golden.py), the pure-torch reference, and bit
identity across the instruction-set paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_augment as ref
import torch

from pyxfer.ops import augment as A
from pyxfer.ops.augment import COL, PARAM_COLUMNS, RANDAUGMENT_OPS

GOLDEN = Path(__file__).parent / "data" / "aug_golden_randaugment.npz"
OP = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
AFFINE = {OP[k] for k in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")}
#: Affine ops sample with nearest interpolation: a pixel whose grid position lands within float
#: rounding of a half-integer may take its neighbour in torchvision (whose bmm sums in another
#: order). At most this fraction of such pixels may differ; every other pixel is exact.
AFFINE_MISMATCH = 0.01
#: the output as grey levels: mean 0, std 1/255
LEVELS = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)


def _row(h: int, w: int) -> np.ndarray:
    """A parameter row that keeps the image as it is (crop = the whole image, no op)."""
    r = np.zeros(len(PARAM_COLUMNS), np.float32)
    r[COL["crop_h"]], r[COL["crop_w"]] = h, w
    r[COL["brightness"] : COL["saturation"] + 1] = 1
    r[COL["order0"] : COL["order0"] + 4] = (0, 1, 2, 3)
    r[COL["blur_kernel"]], r[COL["solarize_threshold"]] = 1, 128
    r[COL["ra_fill"]], r[COL["cutout_fill"]] = 128, 127
    return r


def _levels(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Apply rows to HWC uint8 images (one row per image), back as uint8 HWC levels."""
    c = x.shape[-1]
    out = A.apply(
        x,
        rows,
        size=x.shape[1:3],
        mean=LEVELS["mean"][:c],
        std=LEVELS["std"][:c],
        channels_last=True,
    )
    return np.rint(out).astype(np.uint8)


def _op_rows(h, w, op, value):
    r = _row(h, w)
    r[COL["ra_op0"]], r[COL["ra_mag0"]] = op, value
    return r[None]


def _check(got: np.ndarray, want: np.ndarray, op: int, where) -> None:
    if op in AFFINE:
        assert (got != want).mean() <= AFFINE_MISMATCH, (where, (got != want).mean())
    else:
        np.testing.assert_array_equal(got, want, err_msg=str(where))


# ---- parity with torchvision ----------------------------------------------------------------


def test_ops_match_torchvision_golden():
    z = np.load(GOLDEN)
    ops, values, images = z["op"], z["value"], z["image"]
    seen = set()
    worst = 0.0
    for k in range(len(ops)):
        x = z[f"image{images[k]}"]
        h, w = x.shape[:2]
        got = _levels(x[None], _op_rows(h, w, ops[k], values[k]))[0]
        want = z[f"out{k}"]
        _check(got, want, int(ops[k]), (RANDAUGMENT_OPS[ops[k]], float(values[k]), images[k]))
        worst = max(worst, float((got != want).mean()))
        seen.add(int(ops[k]))
    assert seen == set(range(1, len(RANDAUGMENT_OPS)))  # every op but identity is covered


def test_cutout_matches_torchvision_erase_golden():
    z = np.load(GOLDEN)
    for k, (i, cy, cx, size) in enumerate(z["cutout"]):
        x = z[f"image{int(i)}"]
        h, w = x.shape[:2]
        r = _row(h, w)
        r[COL["cutout"]], r[COL["cutout_y"]], r[COL["cutout_x"]] = 1, cy, cx
        r[COL["cutout_size"]] = size
        np.testing.assert_array_equal(_levels(x[None], r[None])[0], z[f"cutout{k}"])


def test_reference_matches_torchvision_golden():
    """The pure-torch oracle of the other tests reproduces torchvision on the golden cases."""
    z = np.load(GOLDEN)
    for k in range(len(z["op"])):
        x = torch.from_numpy(z[f"image{z['image'][k]}"]).permute(2, 0, 1).contiguous()
        got = ref.randaugment_op(x, int(z["op"][k]), float(z["value"][k]), 128.0)
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), z[f"out{k}"])


# ---- the reference on random images and values ---------------------------------------------


def _random_images(rng, n, h, w, c=3):
    base = rng.integers(0, 256, size=(n, h // 4 + 1, w // 4 + 1, c)).repeat(4, 1).repeat(4, 2)
    noise = rng.integers(-25, 26, size=(n, h, w, c))
    return np.clip(base[:, :h, :w] + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("op", range(1, len(RANDAUGMENT_OPS)))
def test_each_op_matches_reference_on_random_values(op, c):
    rng = np.random.default_rng(100 + op)
    x = _random_images(rng, 6, 29, 35, c)
    for n in range(6):
        m = float(rng.uniform())
        value = _value(op, m, bool(n % 2))
        got = _levels(x[n : n + 1], _op_rows(29, 35, op, value))[0]
        want = ref.randaugment_op(torch.from_numpy(x[n]).permute(2, 0, 1), op, float(value), 128.0)
        _check(got, want.permute(1, 2, 0).numpy(), op, (RANDAUGMENT_OPS[op], value))


def _value(op: int, m: float, negative: bool) -> np.float32:
    """The value of ``op`` at magnitude m (FixMatch's ranges, see RANDAUGMENT_OPS)."""
    name = RANDAUGMENT_OPS[op]
    sign = -1.0 if negative else 1.0
    if name == "rotate":
        return np.float32(sign * 30 * m)
    if name == "solarize":
        return np.float32(256 * (1 - m))
    if name in ("color", "contrast", "brightness", "sharpness"):
        return np.float32(0.05 + 0.9 * m)
    if name == "posterize":
        return np.float32(8 - min(4, int(5 * m)))
    if name in ("shear_x", "shear_y", "translate_x", "translate_y"):
        return np.float32(sign * 0.3 * m)
    return np.float32(0)


def test_sampled_strong_views_match_reference_chain():
    """fixmatch_strong end to end: crop, flip, two ops, cutout, normalisation."""
    rng = np.random.default_rng(5)
    x = _random_images(rng, 8, 40, 44)
    specs = A.preset("fixmatch_strong", size=32)
    params = A.sample_params(specs * 4, [(40, 44)] * 8, seed=3)
    got = A.apply(x, params, size=32)
    for r in range(len(params)):
        want = ref.apply_row(
            torch.from_numpy(x[r // 4]), params[r], (32, 32), A.IMAGENET_MEAN, A.IMAGENET_STD
        ).numpy()
        err = np.abs(got[r] - want) * 255 * np.asarray(A.IMAGENET_STD)[:, None, None]
        ops = {int(params[r, COL["ra_op0"]]), int(params[r, COL["ra_op1"]])}
        if ops & AFFINE:
            assert (err > 1e-3).mean() <= AFFINE_MISMATCH, r
        else:
            assert err.max() < 1e-3, (r, ops, err.max())


# ---- sampling -------------------------------------------------------------------------------


def test_sampling_follows_the_spec():
    spec = A.ViewSpec(size=(32, 32), randaugment_n=2, randaugment_p=0.5, cutout_p=0.7)
    p = A.sample_params([spec], [(40, 40)] * 20000, seed=1)
    ops = p[:, [COL["ra_op0"], COL["ra_op1"]]].astype(int)
    # an op slot is identity when its coin says no (p 0.5) or identity was drawn (1 / 14)
    assert abs((ops == 0).mean() - (0.5 + 0.5 / 14)) < 0.01
    counts = np.bincount(ops[ops > 0], minlength=14)[1:]
    assert counts.min() > 0.85 * counts.mean() and counts.max() < 1.15 * counts.mean()
    assert abs(p[:, COL["cutout"]].mean() - 0.7) < 0.015
    for slot in (0, 1):
        op, v = p[:, COL[f"ra_op{slot}"]].astype(int), p[:, COL[f"ra_mag{slot}"]]
        rot = v[op == OP["rotate"]]
        assert rot.min() >= -30 and rot.max() <= 30 and rot.min() < -25 and rot.max() > 25
        f = v[op == OP["sharpness"]]
        assert f.min() >= 0.05 and f.max() <= 0.95
        bits = v[op == OP["posterize"]]
        assert set(np.unique(bits)) == {4.0, 5.0, 6.0, 7.0, 8.0}
        tr = v[op == OP["translate_y"]]
        assert tr.min() >= -0.3 and tr.max() <= 0.3
    # the slots draw independently: P(equal) = P(both identity) + 13 P(same op)
    q0 = 0.5 + 0.5 / 14
    assert abs((ops[:, 0] == ops[:, 1]).mean() - (q0**2 + 13 * (0.5 / 14) ** 2)) < 0.01
    cy = p[:, COL["cutout_y"]]
    assert cy.min() >= 0 and cy.max() < 1 and abs(cy.mean() - 0.5) < 0.01


def test_fixed_magnitude_and_no_randaugment_leave_other_columns_alone():
    base = A.ViewSpec(size=(32, 32))
    fixed = A.ViewSpec(size=(32, 32), randaugment_n=2, randaugment_magnitude=1.0)
    p0 = A.sample_params([base], [(40, 40)] * 500, seed=4)
    p1 = A.sample_params([fixed], [(40, 40)] * 500, seed=4)
    first = COL["ra_op0"]
    np.testing.assert_array_equal(p0[:, :first], p1[:, :first])  # the other draws unchanged
    assert not p0[:, [COL["ra_op0"], COL["ra_op1"], COL["cutout"]]].any()
    rot = p1[p1[:, COL["ra_op0"]] == OP["rotate"], COL["ra_mag0"]]
    np.testing.assert_array_equal(np.abs(rot), 30.0)


# ---- instruction-set paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["baseline", "avx2"])
def test_simd_paths_give_identical_output(monkeypatch, path):
    rng = np.random.default_rng(9)
    x = _random_images(rng, 6, 50, 47)
    spec = A.ViewSpec(
        size=(33, 30), randaugment_n=2, cutout_p=0.5, jitter_p=0.5, blur_p=0.3, blur_kernel=5
    )
    params = A.sample_params([spec] * 40, [(50, 47)] * 6, seed=9)
    assert set(params[:, COL["ra_op0"]].astype(int)) == set(range(len(RANDAUGMENT_OPS)))
    best = A.apply(x, params, size=(33, 30))
    best16 = A.apply(x, params, size=(33, 30), dtype="float16", channels_last=True)
    monkeypatch.setenv("PYXFER_SIMD", path)
    np.testing.assert_array_equal(A.apply(x, params, size=(33, 30)), best)
    np.testing.assert_array_equal(
        A.apply(x, params, size=(33, 30), dtype="float16", channels_last=True), best16
    )


# ---- refusals -------------------------------------------------------------------------------


def test_float_path_refuses_randaugment_rows():
    x = np.zeros((1, 8, 8, 3), np.uint8)
    r = _op_rows(8, 8, OP["equalize"], 0.0)
    with pytest.raises(ValueError, match="RandAugment ops and cutout run in the CPU kernel"):
        A.apply(x, r, size=8, quantize=False)
    A.apply(x, _row(8, 8)[None], size=8, quantize=False)  # rows without them are fine


@pytest.mark.parametrize(
    ("col", "value", "match"),
    [
        ("ra_op0", 14, r"RandAugment op in 0\.\.13"),
        ("ra_op1", 2.5, r"RandAugment op in 0\.\.13"),
        ("ra_fill", 256, "fill levels"),
        ("cutout", 0.5, "flag column"),
        ("cutout_size", 1.5, "cutout column"),
    ],
)
def test_bad_randaugment_columns_raise(col, value, match):
    x = np.zeros((1, 8, 8, 3), np.uint8)
    r = _row(8, 8)[None]
    r[0, COL[col]] = value
    with pytest.raises(ValueError, match=match):
        A.apply(x, r, size=8)


@pytest.mark.parametrize(
    ("op", "value"),
    [("posterize", 9), ("posterize", 3.5), ("brightness", -0.1), ("translate_x", 1.5)],
)
def test_bad_op_values_raise(op, value):
    x = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"posterize bits in 0\.\.8"):
        A.apply(x, _op_rows(8, 8, OP[op], value), size=8)


def test_bad_spec_settings_raise():
    with pytest.raises(ValueError, match="ra_n"):
        A.sample_params([A.ViewSpec(randaugment_n=3)], [(8, 8)])
    with pytest.raises(ValueError, match="ra_magnitude"):
        A.sample_params([A.ViewSpec(randaugment_n=1, randaugment_magnitude=1.5)], [(8, 8)])
    with pytest.raises(ValueError, match="cutout_fill"):
        A.sample_params([A.ViewSpec(cutout_fill=300)], [(8, 8)])
