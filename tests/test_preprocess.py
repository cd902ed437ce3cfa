"""Fused inference preprocessing vs torchvision Resize + CenterCrop + Normalize."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from _optional_torch import needs_torch, ref, torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxfer import _C
from pyxfer.ops import preprocess

DATA = Path(__file__).parent / "data" / "aug_golden_subset.npz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _check_golden(z):
    ids = sorted(k.split("/")[1] for k in z.files if k.startswith("inputs/"))
    checked = 0
    for i in ids:
        k = f"{i}/eval/"
        if k + "output" not in z.files:
            continue
        mean, std = tuple(z[k + "mean"]), tuple(z[k + "std"])
        got = preprocess(
            z[f"inputs/{i}"],
            int(z[k + "resize"]),
            int(z[k + "crop"]),
            mean,
            std,
            channels_last=True,
        )
        err = np.abs(got - z[k + "output"]) * 255 * np.asarray(std)
        assert err.max() < 1e-3, (i, err.max())  # the same grey levels as torchvision
        checked += 1
    assert checked


def test_matches_torchvision_golden_subset():
    _check_golden(np.load(DATA))


def test_matches_torchvision_golden_full(shared_data):
    _check_golden(np.load(shared_data / "torchvision-golden" / "aug_golden.npz"))


@needs_torch
@pytest.mark.parametrize(
    ("h", "w", "resize", "crop"),
    [
        (50, 70, 32, 28),
        (71, 40, 36, 32),
        (33, 33, 33, 33),
        (20, 90, 16, 24),
        (64, 48, 0, 40),
        (30, 31, 40, 36),
        (17, 9, 8, 12),
    ],
)
def test_matches_reference(h, w, resize, crop):
    rng = np.random.default_rng(h * w)
    x = rng.integers(0, 256, size=(2, h, w, 3), dtype=np.uint8)
    got = preprocess(x, resize, crop, MEAN, STD)
    for i in range(2):
        want = ref.preprocess(torch.from_numpy(x[i]), resize or min(h, w), crop, MEAN, STD)
        if resize == 0:  # no resize: crop only
            want = ref.preprocess(torch.from_numpy(x[i]), min(h, w), crop, MEAN, STD)
        np.testing.assert_allclose(got[i], want.numpy(), atol=1e-5)


@needs_torch
def test_ragged_dense_threads_fp16_channels_last():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 40, 52, 3), dtype=np.uint8)
    a = preprocess(x, 36, 32, threads=1)
    np.testing.assert_array_equal(a, preprocess(x, 36, 32, threads=2))
    np.testing.assert_array_equal(a, preprocess(x, 36, 32, threads=8))
    np.testing.assert_array_equal(a, preprocess(list(x), 36, 32))
    np.testing.assert_array_equal(a[2:], preprocess(x[2:], 36, 32))
    np.testing.assert_array_equal(
        a.transpose(0, 2, 3, 1), preprocess(x, 36, 32, channels_last=True)
    )
    np.testing.assert_array_equal(a.astype(np.float16), preprocess(x, 36, 32, dtype="float16"))
    ims = [rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8) for h, w in ((30, 50), (61, 20))]
    out = preprocess([torch.from_numpy(im) for im in ims], 24, 20, (0.5,), (0.5,))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 20, 20)
    for i, im in enumerate(ims):
        want = ref.preprocess(torch.from_numpy(im), 24, 20, (0.5,), (0.5,))
        torch.testing.assert_close(out[i], want, atol=1e-5, rtol=0)
    assert preprocess(x[0], 36, 32).shape == (3, 32, 32)


def test_simd_path_name_and_the_scalar_override(monkeypatch):
    """build_info()["preprocess_simd"] names the preprocess and normalize path: NEON on AArch64,
    the plain loops elsewhere and wherever PYXFER_SIMD=scalar (or baseline) asks for them."""
    arm = platform.machine().lower() in ("aarch64", "arm64")
    assert _C.build_info()["preprocess_simd"] == ("neon" if arm else "baseline")
    for forced in ("scalar", "baseline"):
        monkeypatch.setenv("PYXFER_SIMD", forced)
        assert _C.build_info()["preprocess_simd"] == "baseline"


@pytest.mark.parametrize("c", [1, 3])
def test_vector_and_scalar_paths_agree(monkeypatch, c):
    """Crops inside and past the resized image (padding), widths around the 16-value vector
    steps, both layouts, float16 with subnormal and overflowing halves, quantized and float
    resampling: the vector paths (NEON on AArch64) equal PYXFER_SIMD=scalar's loops exactly."""
    rng = np.random.default_rng(10 + c)
    ims = [
        rng.integers(0, 256, (h, w, c), dtype=np.uint8) for h, w in ((37, 53), (64, 48), (9, 90))
    ]
    norms = [(MEAN[:c], STD[:c]), ((0.5,) * c, (1e-6,) * c), ((0.0,) * c, (3e4,) * c)]
    for resize, crop in ((32, 24), (40, (50, 45)), (20, 17), (64, 33), (90, (9, 61))):
        for mean, std in norms:
            for kw in ({}, {"channels_last": True}, {"dtype": "float16"}, {"quantize": False}):
                monkeypatch.delenv("PYXFER_SIMD", raising=False)
                best = preprocess(ims, resize, crop, mean, std, **kw)
                monkeypatch.setenv("PYXFER_SIMD", "scalar")
                np.testing.assert_array_equal(preprocess(ims, resize, crop, mean, std, **kw), best)


def test_bad_input():
    x = np.zeros((2, 10, 12, 3), np.uint8)
    out = np.empty((2, 3, 8, 8), np.float32)
    args = (8, list(MEAN), list(STD), False, True, 1)
    with pytest.raises(ValueError, match="images"):
        _C.preprocess(x.astype(np.int16), out, *args)
    with pytest.raises(ValueError, match="images"):
        _C.preprocess(np.zeros((2, 10, 12, 4), np.uint8), out, *args)
    with pytest.raises(ValueError, match="images"):
        _C.preprocess(np.zeros((2, 10, 0, 3), np.uint8), out, *args)
    with pytest.raises(ValueError, match="out"):
        _C.preprocess(x, np.empty((3, 3, 8, 8), np.float32), *args)
    with pytest.raises(ValueError, match="out"):
        _C.preprocess(x, np.empty((2, 3, 8, 8), np.int32), *args)
    with pytest.raises(ValueError, match="resize"):
        _C.preprocess(x, out, -1, list(MEAN), list(STD), False, True, 1)
    with pytest.raises(ValueError, match="mean"):
        _C.preprocess(x, out, 8, [0.5], list(STD), False, True, 1)
    with pytest.raises(ValueError, match="std"):
        _C.preprocess(x, out, 8, list(MEAN), [1, float("nan"), 1], False, True, 1)
    with pytest.raises(ValueError, match="dtype"):
        preprocess(x, 8, 8, dtype="int8")
    # empty batch is fine
    empty = _C.preprocess(
        np.zeros((0, 4, 4, 3), np.uint8), np.empty((0, 3, 8, 8), np.float32), *args
    )
    assert empty is None


@needs_torch
@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    resize=st.integers(1, 40),
    crop=st.integers(1, 40),
    c=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzzed_sizes_match_reference(h, w, resize, crop, c, seed):
    x = np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)
    mean, std = (0.5,) * c, (0.25,) * c
    got = preprocess(x, resize, crop, mean, std)
    want = ref.preprocess(torch.from_numpy(x), resize, crop, mean, std)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
