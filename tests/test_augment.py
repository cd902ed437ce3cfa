"""Fused augmentation: Philox, parameter sampling and the apply kernel vs torchvision."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from _optional_torch import needs_torch, ref, torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxfer import _C
from pyxfer.ops import augment as A
from pyxfer.ops.augment import COL, PARAM_COLUMNS

DATA = Path(__file__).parent / "data" / "aug_golden_subset.npz"
REPLAY = Path(__file__).parent / "data" / "aug_golden_replay.npz"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Paths PYXFER_SIMD can force below the best one: the plain C++ copy everywhere, and on x86 the
# AVX2 copy below AVX-512 (AArch64 has the NEON copy and the baseline one).
X86 = platform.machine().lower() in ("x86_64", "amd64")
LOWER_PATHS = ["baseline", "avx2"] if X86 else ["baseline"]

# ---- Philox ---------------------------------------------------------------------------------

# Random123's kat_vectors for philox4x32-10: (counter, key, expected output).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_philox_known_answers(ctr, key, expected):
    out = _C.philox4x32_10(np.array([ctr], np.uint32), *key)
    assert tuple(int(v) for v in out[0]) == expected


def _philox_numpy(ctr: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Independent numpy Philox4x32-10 (uint64 products)."""
    c = ctr.astype(np.uint64)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    m0, m1, mask = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & mask
            k1 = (k1 + np.uint64(0xBB67AE85)) & mask
        p0, p1 = m0 * c[:, 0], m1 * c[:, 2]
        c = np.stack(
            [
                (p1 >> np.uint64(32)) ^ c[:, 1] ^ k0,
                p1 & mask,
                (p0 >> np.uint64(32)) ^ c[:, 3] ^ k1,
                p0 & mask,
            ],
            axis=1,
        )
    return c.astype(np.uint32)


def test_philox_matches_numpy_reimplementation():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(500, 4), dtype=np.uint64).astype(np.uint32)
    key = (123456789, 4000000000)
    np.testing.assert_array_equal(_C.philox4x32_10(ctr, *key), _philox_numpy(ctr, key))


# ---- sampling -------------------------------------------------------------------------------


def test_param_columns_match_the_kernel():
    assert len(PARAM_COLUMNS) == _C.AUGMENT_PARAM_COUNT
    p = A.sample_params("simclr", [(40, 50)] * 3, seed=1, size=32)
    assert p.shape == (6, len(PARAM_COLUMNS)) and p.dtype == np.float32


def test_sampling_is_keyed_by_seed_epoch_index_and_view():
    sizes = [(100, 80)] * 8
    a = A.sample_params("byol", sizes, seed=5, epoch=2, threads=1)
    np.testing.assert_array_equal(a, A.sample_params("byol", sizes, seed=5, epoch=2, threads=2))
    # The same dataset index gives the same views whatever batch it sits in.
    b = A.sample_params("byol", sizes[:3], indices=[5, 6, 7], seed=5, epoch=2)
    np.testing.assert_array_equal(a[10:16], b)
    assert not np.array_equal(a, A.sample_params("byol", sizes, seed=6, epoch=2))
    assert not np.array_equal(a, A.sample_params("byol", sizes, seed=5, epoch=3))
    assert not np.array_equal(a[0::2, :4], a[1::2, :4])  # the two views differ


def test_sampled_params_are_valid():
    sizes = [(h, w) for h in (1, 7, 32, 375) for w in (1, 9, 500)]
    p = A.sample_params("dino", sizes, seed=0)
    v = len(A.preset("dino"))
    hw = np.repeat(np.asarray(sizes), v, axis=0)
    assert (p[:, COL["top"]] >= 0).all() and (p[:, COL["crop_h"]] >= 1).all()
    assert (p[:, COL["top"]] + p[:, COL["crop_h"]] <= hw[:, 0]).all()
    assert (p[:, COL["left"]] + p[:, COL["crop_w"]] <= hw[:, 1]).all()
    orders = np.sort(p[:, COL["order0"] : COL["order0"] + 4], axis=1)
    assert (orders == np.arange(4)).all()


def _rrc_features(boxes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    bh, bw = boxes[:, 2].astype(float), boxes[:, 3].astype(float)
    return bh * bw / (h * w), bw / bh


@needs_torch
@pytest.mark.parametrize(("h", "w"), [(32, 32), (375, 500)])
def test_rrc_distribution_matches_torch_reference(h, w):
    """Against torchvision's get_params run with torch's RNG (self-contained)."""
    from scipy.stats import ks_2samp

    gen = torch.Generator().manual_seed(0)
    theirs = np.array([ref.get_params_rrc(h, w, generator=gen) for _ in range(4000)])
    spec = A.ViewSpec(size=(32, 32))
    ours = A.sample_params(spec, [(h, w)] * 20000, seed=3)[:, :4]
    for a, b in zip(_rrc_features(ours, h, w), _rrc_features(theirs, h, w), strict=True):
        assert ks_2samp(a, b).pvalue > 0.01


def test_distributions_match_torchvision_draws(shared_data):
    from scipy.stats import ks_2samp

    z = np.load(shared_data / "torchvision-golden" / "sampler_golden.npz")
    for key, (h, w) in (("rrc_32x32", (32, 32)), ("rrc_375x500", (375, 500))):
        theirs = z[f"{key}/boxes_top_left_h_w"]
        ours = A.sample_params(A.ViewSpec(), [(h, w)] * 100_000, seed=11)[:, :4]
        for a, b in zip(_rrc_features(ours, h, w), _rrc_features(theirs, h, w), strict=True):
            assert ks_2samp(a, b).pvalue > 0.01, key
        # top/left given the box size are uniform: compare normalised offsets
        ours64 = ours.astype(np.float64)
        for col, side in ((0, h), (1, w)):  # offsets are uniform over the free range
            a = (ours64[:, col] + 0.5) / (side - ours64[:, col + 2] + 1)
            b = (theirs[:, col] + 0.5) / (side - theirs[:, col + 2] + 1)
            assert ks_2samp(a, b).pvalue > 0.01, key
    cj = "color_jitter_0.4_0.4_0.4_0.1"
    spec = A.ViewSpec(jitter_p=1.0)
    ours = A.sample_params(spec, [(8, 8)] * 100_000, seed=12)
    for name in ("brightness", "contrast", "saturation", "hue"):
        assert ks_2samp(ours[:, COL[name]], z[f"{cj}/{name}_factor"]).pvalue > 0.01, name
    # the order: every op equally likely at each position
    order = ours[:, COL["order0"] : COL["order0"] + 4]
    theirs = z[f"{cj}/order"]
    for pos in range(4):
        f_ours = np.bincount(order[:, pos].astype(int), minlength=4) / len(order)
        f_theirs = np.bincount(theirs[:, pos], minlength=4) / len(theirs)
        np.testing.assert_allclose(f_ours, f_theirs, atol=0.02)


def test_probabilities_follow_the_preset():
    p = A.sample_params("byol", [(64, 64)] * 20000, seed=4)
    v0, v1 = p[0::2], p[1::2]
    assert v0[:, COL["blur"]].mean() == 1.0
    assert abs(v1[:, COL["blur"]].mean() - 0.1) < 0.01
    assert v0[:, COL["solarize"]].mean() == 0.0
    assert abs(v1[:, COL["solarize"]].mean() - 0.2) < 0.015
    assert abs(p[:, COL["jitter"]].mean() - 0.8) < 0.01
    assert abs(p[:, COL["gray"]].mean() - 0.2) < 0.01
    assert abs(p[:, COL["flip"]].mean() - 0.5) < 0.015
    sig = v0[:, COL["blur_sigma"]]
    assert sig.min() >= 0.1 and sig.max() <= 2.0


# ---- apply vs torchvision golden outputs ----------------------------------------------------


def _identity_row(h: int, w: int) -> np.ndarray:
    r = np.zeros(len(PARAM_COLUMNS), np.float32)
    r[COL["crop_h"]], r[COL["crop_w"]] = h, w
    r[COL["brightness"] : COL["saturation"] + 1] = 1
    r[COL["order0"] : COL["order0"] + 4] = (0, 1, 2, 3)
    r[COL["blur_kernel"]], r[COL["solarize_threshold"]] = 1, 128
    return r


def _case_row(z, i: str, case: str, h: int, w: int):
    """(param row, output size, expected uint8/float HWC output, is_float) for a golden case."""
    k = f"{i}/{case}/"
    r = _identity_row(h, w)
    size = (h, w)
    if case.startswith("resized_crop") or case == "simclr_chain":
        r[:4] = z[k + "box"]
        size = tuple(int(s) for s in z[k + "size"])
    if case in ("brightness", "contrast", "saturation", "hue"):
        r[COL["jitter"]], r[COL[case]] = 1, z[k + "factor"]
    if case == "grayscale":
        r[COL["gray"]] = 1
    if case == "solarize":
        r[COL["solarize"]], r[COL["solarize_threshold"]] = 1, z[k + "threshold"]
    if case == "gaussian_blur":
        r[COL["blur"]], r[COL["blur_sigma"]], r[COL["blur_kernel"]] = (
            1,
            z[k + "sigma"],
            z[k + "kernel"],
        )
    if case == "hflip":
        r[COL["flip"]] = 1
    if case == "simclr_chain":
        r[COL["flip"]] = z[k + "flip"]
        r[COL["jitter"]] = 1
        r[COL["brightness"] : COL["hue"] + 1] = z[k + "jitter"]
        r[COL["order0"] : COL["order0"] + 4] = z[k + "jitter_order"]
        r[COL["blur"]], r[COL["blur_sigma"]], r[COL["blur_kernel"]] = (
            1,
            z[k + "blur_sigma"],
            z[k + "blur_kernel"],
        )
    return r, size, z[k + "output"]


UINT8_CASES = [
    "resized_crop_32",
    "resized_crop_96",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "grayscale",
    "solarize",
    "gaussian_blur",
    "hflip",
]


def _check_golden(z):
    ids = sorted(k.split("/")[1] for k in z.files if k.startswith("inputs/"))
    assert ids
    for i in ids:
        x = z[f"inputs/{i}"]
        h, w = x.shape[:2]
        for case in [*UINT8_CASES, "simclr_chain"]:
            if f"{i}/{case}/output" not in z.files:
                continue
            row, size, want = _case_row(z, i, case, h, w)
            chain = case == "simclr_chain"
            mean = tuple(z[f"{i}/{case}/mean"]) if chain else (0.0, 0.0, 0.0)
            std = tuple(z[f"{i}/{case}/std"]) if chain else (1 / 255,) * 3
            got = A.apply(x[None], row[None], size=size, mean=mean, std=std, channels_last=True)
            got = got[0].astype(np.float64)
            if chain:  # back to grey levels
                got = (got * np.asarray(std) + np.asarray(mean)) * 255
                want = (want * np.asarray(std) + np.asarray(mean)) * 255
            err = np.abs(got - want.astype(np.float64))
            if case in (
                "resized_crop_32",
                "resized_crop_96",
                "hflip",
                "brightness",
                "contrast",
                "hue",
                "grayscale",
                "solarize",
            ):
                assert err.max() < 1e-3, (i, case, err.max())  # bit-exact grey levels
            elif chain:
                # the golden jitter factors are float64, ours float32 (saturation below)
                assert (err <= 2.001).mean() >= 0.999, (i, case)
                assert err.max() <= 3.001, (i, case, err.max())
            else:
                assert err.max() <= 1.001, (i, case, err.max())
                # saturation: the golden factor is float64, ours is float32, and pixels that are
                # already grey sit exactly on a truncation boundary
                assert (err > 0.5).mean() < (0.15 if case == "saturation" else 0.01), (i, case)


def test_apply_matches_torchvision_golden_subset():
    _check_golden(np.load(DATA))


def test_apply_matches_torchvision_golden_full(shared_data):
    _check_golden(np.load(shared_data / "torchvision-golden" / "aug_golden.npz"))


@pytest.mark.parametrize("path", [None, *LOWER_PATHS])
def test_sampled_views_match_torchvision_replay(monkeypatch, path):
    """SimCLR and BYOL views (32 and 96 px of CIFAR-10 photos) sampled by pyxfer and replayed
    through torchvision with the same float32 factors (bench/torchvision_replay.py writes the
    file; its first nine views were 2 to 4 grey levels off while grayscale, contrast and
    saturation rounded torchvision's `add_(..., alpha=...)` as a separate multiply and add, and
    hue divided its input by 255 where to_dtype multiplies by 1 / 255): every op but the blur is
    bit-identical on every path, the blur (a 2-D convolution in torchvision) within one level."""
    if path is not None:
        monkeypatch.setenv("PYXFER_SIMD", path)
    z = np.load(REPLAY)
    n = sum(k.endswith("/output") for k in z.files)
    assert n >= 15
    for j in range(n):
        x, row, size, want = (z[f"{j:02d}/{f}"] for f in ("input", "params", "size", "output"))
        size = (int(size), int(size))
        # rows written before the RandAugment and cutout columns: those stages off (zeros)
        row = np.concatenate([row, np.zeros(len(PARAM_COLUMNS) - len(row), np.float32)])
        got = A.apply(x[None], row[None], size=size, mean=(0.0,) * 3, std=(1 / 255,) * 3)[0]
        err = np.abs(np.rint(got).astype(np.int32) - want.astype(np.int32))
        assert err.max() <= (1 if row[COL["blur"]] else 0), (str(z[f"{j:02d}/view"]), err.max())


# ---- apply vs the pure-torch reference on random inputs and sampled params ------------------


def _random_images(rng, n, h, w, c=3):
    # smooth + noise content so resize and colour ops see realistic statistics
    base = rng.integers(0, 256, size=(n, h // 4 + 1, w // 4 + 1, c)).repeat(4, 1).repeat(4, 2)
    noise = rng.integers(-20, 21, size=(n, h, w, c))
    return np.clip(base[:, :h, :w] + noise, 0, 255).astype(np.uint8)


@needs_torch
@pytest.mark.parametrize("preset", ["simclr", "byol", "fixmatch_strong"])
def test_apply_matches_reference_chain(preset):
    rng = np.random.default_rng(1)
    x = _random_images(rng, 3, 45, 61)
    specs = [
        A.ViewSpec(**{**s.__dict__, "size": (24, 20), "blur_kernel": 5})
        for s in A.preset(preset, size=24)
    ]
    params = A.sample_params(specs, [(45, 61)] * 3, seed=7)
    got = A.apply(x, params, size=(24, 20), mean=MEAN, std=STD)
    for r in range(len(params)):
        want = ref.apply_row(torch.from_numpy(x[r // len(specs)]), params[r], (24, 20), MEAN, STD)
        err = np.abs(got[r] - want.numpy()) * 255 * np.asarray(STD)[:, None, None]
        assert (err <= 1.001).mean() >= 0.999 and err.max() <= 2.001, (r, err.max())


@needs_torch
def test_apply_grayscale_single_channel_reference():
    rng = np.random.default_rng(2)
    x = _random_images(rng, 2, 30, 40, c=1)
    spec = A.ViewSpec(size=(16, 16), jitter_p=1.0, blur_p=1.0, blur_kernel=3, solarize_p=0.5)
    params = A.sample_params([spec, spec], [(30, 40)] * 2, seed=2)
    got = A.apply(x, params, size=16, mean=(0.5,), std=(0.25,))
    for r in range(4):
        want = ref.apply_row(torch.from_numpy(x[r // 2]), params[r], (16, 16), (0.5,), (0.25,))
        err = np.abs(got[r] - want.numpy()) * 255 * 0.25
        assert err.max() <= 1.001


def test_float_mode_stays_close_to_quantized():
    rng = np.random.default_rng(3)
    x = _random_images(rng, 2, 50, 50)
    params = A.sample_params("simclr", [(50, 50)] * 2, seed=3, size=32)
    a = A.apply(x, params, size=32, quantize=True)
    b = A.apply(x, params, size=32, quantize=False)
    err = np.abs(a - b) * 255 * np.asarray(STD)[:, None, None]
    # torchvision truncates after each blend op (about -0.5 level each), float mode does not
    assert np.median(err) < 3.0 and np.quantile(err, 0.99) < 8.0
    assert not np.array_equal(a, b)


# ---- determinism, layouts, dtypes, ragged -------------------------------------------------


def test_threads_and_batch_splits_give_identical_output():
    rng = np.random.default_rng(4)
    x = _random_images(rng, 6, 40, 36)
    params = A.sample_params("simclr", [(40, 36)] * 6, seed=9, size=24)
    outs = [A.apply(x, params, size=24, threads=t) for t in (1, 2, 8)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    half = A.apply(x[3:], params[6:], size=24, threads=2)
    np.testing.assert_array_equal(outs[0][6:], half)


def _colour_params(h: int, w: int, factors, order, gray=0.0) -> np.ndarray:
    row = np.zeros(len(PARAM_COLUMNS), np.float32)
    row[[COL["crop_h"], COL["crop_w"]]] = (h, w)
    row[COL["jitter"]] = 1.0
    for name, f in zip(("brightness", "contrast", "saturation", "hue"), factors, strict=True):
        row[COL[name]] = f
    row[COL["order0"] : COL["order0"] + 4] = order
    row[COL["gray"]] = gray
    row[COL["blur_kernel"]] = 3.0
    return row


@pytest.mark.parametrize("path", LOWER_PATHS)
def test_colour_ops_match_lower_simd_paths_on_all_levels(monkeypatch, path):
    """Colour jitter on every grey level, saturated colours and random colours (an odd pixel
    count, so the vector loops have a tail): the best path equals the lower ones bit for bit."""
    rng = np.random.default_rng(21)
    h, w = 61, 67
    x = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
    flat = x.reshape(-1, 3)
    levels = np.arange(256, dtype=np.uint8)
    flat[:256] = levels[:, None]  # greys
    flat[256:512, 0], flat[256:512, 1:] = levels, 0  # pure reds, ...
    flat[512:768] = np.stack([levels, 255 - levels, levels // 2], axis=1)
    flat[768:1024] = np.stack([levels, levels, 255 - levels], axis=1)  # ties of the maximum
    rows = [
        _colour_params(h, w, (1.0, 1.0, 1.0, hue), (3, 0, 1, 2))
        for hue in (-0.5, -0.25, -0.1, -1e-4, 1e-4, 0.03, 0.1, 1 / 6, 0.5)
    ]
    for k in range(24):
        f = rng.uniform(0.0, 2.0, 3)
        rows.append(
            _colour_params(
                h, w, (*f, rng.uniform(-0.5, 0.5)), rng.permutation(4), gray=float(k % 5 == 0)
            )
        )
    # factors around and far past the AVX2 blends' unclamped range (|f| <= 60), up to 1e30
    for f in (0.0, 59.99, 60.0, 60.01, 200.0, 1e4, 1e30):
        for order in ((0, 1, 2, 3), (1, 2, 0, 3), (2, 0, 1, 3)):
            rows.append(_colour_params(h, w, (f, f, f, 0.0), order))
            rows.append(_colour_params(h, w, (1.0, f, 1.0, 0.0), order))
    params = np.stack(rows)
    args = dict(size=(h, w), mean=MEAN, std=STD, views=len(rows))
    best = A.apply(x, params, **args)
    monkeypatch.setenv("PYXFER_SIMD", path)
    np.testing.assert_array_equal(A.apply(x, params, **args), best)


@pytest.mark.slow
@pytest.mark.parametrize("path", LOWER_PATHS)
def test_hue_matches_lower_simd_paths_on_every_colour(monkeypatch, path):
    """Hue shifts of all 2^24 colours (16 images of 1024 x 1024 pixels, whole-image views):
    the vector paths drop hue_shift's clamps and select rather than multiply by 0/1 masks,
    which must change no output anywhere in the colour cube."""
    side = 1024
    cube = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([cube >> 16, (cube >> 8) & 255, cube & 255], axis=1).astype(np.uint8)
    images = rgb.reshape(16, side, side, 3)
    hues = (-0.5, -0.3, -0.1, 0.07, 0.25, 0.5)
    rows = np.stack([_colour_params(side, side, (1.0, 1.0, 1.0, h), (3, 0, 1, 2)) for h in hues])
    args = dict(size=(side, side), dtype="float16", views=len(hues))
    for start in range(0, 16, 2):  # 2 images (12 views, 75 MB of output) per call
        x = images[start : start + 2]
        params = np.tile(rows, (2, 1))
        monkeypatch.delenv("PYXFER_SIMD", raising=False)
        best = A.apply(x, params, **args)
        monkeypatch.setenv("PYXFER_SIMD", path)
        np.testing.assert_array_equal(A.apply(x, params, **args), best)


@pytest.mark.parametrize("shift", [0, 1, 5])
def test_large_views_into_unaligned_outputs(monkeypatch, shift):
    """Views of 256 KB and more (streamed stores on AVX-512) into outputs at any float offset
    equal the lower paths' views."""
    rng = np.random.default_rng(shift)
    x = rng.integers(0, 256, size=(2, 90, 120, 3), dtype=np.uint8)
    params = A.sample_params("simclr", [(90, 120)] * 2, seed=shift, size=161)
    buf = np.full(4 * 3 * 161 * 161 + shift, np.nan, np.float32)
    out = buf[shift:].reshape(4, 3, 161, 161)
    A.apply(x, params, out, mean=MEAN, std=STD)
    assert np.isnan(buf[:shift]).all()
    monkeypatch.setenv("PYXFER_SIMD", "baseline")
    np.testing.assert_array_equal(out, A.apply(x, params, size=161, mean=MEAN, std=STD))


@pytest.mark.parametrize("path", LOWER_PATHS)
@pytest.mark.parametrize("hw", [(12, 13), (16, 16), (31, 130), (40, 145), (130, 33)])
def test_blur_agrees_with_lower_simd_paths(monkeypatch, path, hw):
    """Blur kernels of 3 to 23 taps and sigmas from 0.1 to 2 on widths that are and are not
    multiples of the vector blocks: identical views on every path."""
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    h, w = hw
    x = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
    rows = []
    for k, sigma in zip((3, 5, 9, 23, 23, 11), (0.1, 0.8, 1.3, 2.0, 0.5, 1.7), strict=True):
        row = _colour_params(h, w, (1.0, 1.0, 1.0, 0.0), (0, 1, 2, 3))
        row[COL["jitter"]] = 0.0
        row[[COL["blur"], COL["blur_sigma"], COL["blur_kernel"]]] = (1.0, sigma, k)
        rows.append(row)
    params = np.stack(rows)
    args = dict(size=hw, views=len(rows))
    best = A.apply(x, params, **args)
    monkeypatch.setenv("PYXFER_SIMD", path)
    np.testing.assert_array_equal(A.apply(x, params, **args), best)


@pytest.mark.parametrize("path", LOWER_PATHS)
@pytest.mark.parametrize("out_hw", [(20, 16), (9, 47), (33, 64), (64, 15), (17, 53)])
def test_resample_agrees_with_lower_simd_paths_on_many_crops(monkeypatch, path, out_hw):
    """Random crops from 0.3x to 3x the output size, both flips, crops touching the image's
    right and bottom edges: the resized views of every path are identical."""
    rng = np.random.default_rng(out_hw[0] * 100 + out_hw[1])
    h, w = 83, 97
    x = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
    rows = []
    for k in range(40):
        ch = int(np.clip(out_hw[0] * rng.uniform(0.3, 3.0), 1, h))
        cw = int(np.clip(out_hw[1] * rng.uniform(0.3, 3.0), 1, w))
        top = h - ch if k % 3 == 0 else int(rng.integers(0, h - ch + 1))
        left = w - cw if k % 4 == 0 else int(rng.integers(0, w - cw + 1))
        row = _colour_params(h, w, (1.0, 1.0, 1.0, 0.0), (0, 1, 2, 3))
        row[:4] = (top, left, ch, cw)
        row[COL["flip"]] = k % 2
        row[COL["jitter"]] = 0.0
        rows.append(row)
    params = np.stack(rows)
    args = dict(size=out_hw, views=len(rows))
    best = A.apply(x, params, **args)
    monkeypatch.setenv("PYXFER_SIMD", path)
    np.testing.assert_array_equal(A.apply(x, params, **args), best)


def test_simd_path_names_and_the_scalar_override(monkeypatch):
    """build_info() names the path in use; PYXFER_SIMD=scalar (or baseline) selects the plain
    C++ copy on every machine, and AArch64 runs the NEON copy otherwise."""
    best = _C.build_info()["augment_simd"]
    if platform.machine().lower() in ("aarch64", "arm64"):
        assert best == "neon"
    for forced in ("scalar", "baseline"):
        monkeypatch.setenv("PYXFER_SIMD", forced)
        assert _C.build_info()["augment_simd"].startswith("baseline")


@pytest.mark.parametrize("path", LOWER_PATHS)
def test_simd_paths_give_identical_output(monkeypatch, path):
    """The run-time chosen instruction-set copy (build_info()["augment_simd"]) and the lower
    ones forced through PYXFER_SIMD write bit-identical views."""
    assert _C.build_info()["augment_simd"]
    rng = np.random.default_rng(8)
    x = _random_images(rng, 3, 75, 90)
    spec = A.ViewSpec(
        size=(40, 36), jitter_p=1.0, gray_p=0.3, blur_p=1.0, blur_kernel=9, solarize_p=0.5
    )
    params = A.sample_params([spec, spec], [(75, 90)] * 3, seed=8)
    params[0, :4] = (75 - 50, 90 - 61, 50, 61)  # bottom-right crop: loads end at the image end
    params[1, :4] = (0, 0, 75, 90)
    args = dict(size=(40, 36), mean=MEAN, std=STD)
    # float16 planes: the vector paths convert with F16C where it rounds as the table; a std
    # of 1e5 puts every value among the subnormal halves
    tiny = dict(size=(40, 36), dtype="float16", mean=MEAN, std=(1e5, 0.224, 3e4))
    best = A.apply(x, params, **args)
    best16 = A.apply(x, params, dtype="float16", channels_last=True, **args)
    best16p = A.apply(x, params, dtype="float16", **args)
    best16t = A.apply(x, params, **tiny)
    monkeypatch.setenv("PYXFER_SIMD", path)
    np.testing.assert_array_equal(A.apply(x, params, **args), best)
    np.testing.assert_array_equal(
        A.apply(x, params, dtype="float16", channels_last=True, **args), best16
    )
    np.testing.assert_array_equal(A.apply(x, params, dtype="float16", **args), best16p)
    np.testing.assert_array_equal(A.apply(x, params, **tiny), best16t)
    np.testing.assert_array_equal(best16p, best.astype(np.float16))
    f32t = A.apply(x, params, size=(40, 36), mean=MEAN, std=tiny["std"])
    np.testing.assert_array_equal(best16t, f32t.astype(np.float16))
    if ref is None:  # the aarch64 emulation run: no torch oracle (tests/_optional_torch.py)
        return
    for r in (0, 1):
        want = ref.apply_row(torch.from_numpy(x[0]), params[r], (40, 36), MEAN, STD).numpy()
        err = np.abs(best[r] - want) * 255 * np.asarray(STD)[:, None, None]
        assert err.max() <= 2.001


def test_ragged_equals_dense_and_channels_last_and_fp16():
    rng = np.random.default_rng(5)
    x = _random_images(rng, 3, 33, 47)
    params = A.sample_params("byol", [(33, 47)] * 3, seed=1, size=20)
    dense = A.apply(x, params, size=20)
    ragged = A.apply(list(x), params, size=20)
    np.testing.assert_array_equal(dense, ragged)
    cl = A.apply(x, params, size=20, channels_last=True)
    np.testing.assert_array_equal(cl, dense.transpose(0, 2, 3, 1))
    half = A.apply(x, params, size=20, dtype="float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, dense.astype(np.float16))


@needs_torch
def test_ragged_sizes_and_torch_tensors():
    rng = np.random.default_rng(6)
    ims = [_random_images(rng, 1, h, w)[0] for h, w in ((20, 30), (64, 17), (5, 5))]
    params = A.sample_params("simclr", [im.shape[:2] for im in ims], seed=0, size=16)
    out = A.apply([torch.from_numpy(im) for im in ims], params, size=16)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 3, 16, 16)
    for r in range(6):
        want = ref.apply_row(torch.from_numpy(ims[r // 2]), params[r], (16, 16), MEAN, STD)
        err = (out[r] - want).abs() * 255 * torch.tensor(STD)[:, None, None]
        assert err.max() <= 2.001


def test_augment_groups_multicrop_views():
    x = np.zeros((2, 40, 50, 3), np.uint8)
    outs = A.augment(x, A.preset("dino", size=32, local_size=16, n_local=3), seed=0)
    assert [o.shape for o in outs] == [(4, 3, 32, 32), (6, 3, 16, 16)]
    assert [a.shape for a in A.augment(x, "simclr", size=24)] == [(4, 3, 24, 24)]
    for name in A.PRESETS:
        assert A.augment(x, name, size=24)[0].shape[1:] == (3, 24, 24)


@needs_torch
def test_resized_crops_of_repeated_and_colliding_sizes_match_torch():
    """A thread reuses the resample weights it built for an earlier view of the same crop size,
    output size and channel count (sizes 64 apart share a slot). Crop sizes that repeat, collide,
    and alternate with other output sizes and channel counts still give torch's antialiased
    resize exactly."""
    rng = np.random.default_rng(11)
    h, w = 150, 160
    sizes = [(20, 21), (84, 85), (148, 149), (20, 21), (84, 21), (20, 149), (148, 85), (21, 20)]
    for c in (3, 1, 3):
        x = _random_images(rng, 1, h, w, c=c)
        xt = torch.from_numpy(x[0]).permute(2, 0, 1)
        for out in ((24, 24), (16, 40), (24, 24), (150, 160)):
            rows = []
            for k, (ch, cw) in enumerate(sizes * 2):
                row = _identity_row(h, w)
                row[:4] = (k % (h - ch + 1), (3 * k) % (w - cw + 1), ch, cw)
                rows.append(row)
            params = np.stack(rows)
            got = A.apply(x, params, size=out, mean=(0.0,) * c, std=(1 / 255,) * c, threads=1)
            for r, row in enumerate(params):
                top, left, ch, cw = (int(v) for v in row[:4])
                want = ref.resized_crop(xt, top, left, ch, cw, out).numpy()
                np.testing.assert_array_equal(np.rint(got[r]).astype(np.uint8), want)


@needs_torch
def test_eval_preset_is_a_plain_resize():
    rng = np.random.default_rng(7)
    x = _random_images(rng, 1, 37, 29)
    (out,) = A.augment(x, "eval", size=16, mean=(0, 0, 0), std=(1, 1, 1))
    want = ref.resize(torch.from_numpy(x[0]).permute(2, 0, 1), (16, 16)).float() / 255
    np.testing.assert_allclose(out[0], want.numpy(), atol=1e-6)


# ---- bad input ---------------------------------------------------------------------------


def _ok():
    x = np.zeros((2, 10, 10, 3), np.uint8)
    p = A.sample_params("simclr", [(10, 10)] * 2, seed=0, size=8)
    out = np.empty((4, 3, 8, 8), np.float32)
    return x, p, out


def _call(x, p, out, views=2, mean=MEAN, std=STD):
    _C.augment_apply(x, p, out, views, list(mean), list(std), False, True, 1)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda x, p, o: (x.astype(np.float32), p, o), "images"),
        (lambda x, p, o: (x[0], p, o), "images"),
        (lambda x, p, o: (np.zeros((2, 10, 10, 2), np.uint8), p, o), "images"),
        (lambda x, p, o: (np.zeros((2, 0, 10, 3), np.uint8), p, o), "images"),
        (lambda x, p, o: (x, p.astype(np.float64), o), "params"),
        (lambda x, p, o: (x, p[:3], o), "params"),
        (
            lambda x, p, o: (
                x,
                np.where(np.arange(p.size).reshape(p.shape) == 5, np.nan, p).astype(np.float32),
                o,
            ),
            "params",
        ),
        (lambda x, p, o: (x, p, np.empty((4, 3, 8, 8), np.float64)), "out"),
        (lambda x, p, o: (x, p, np.empty((3, 3, 8, 8), np.float32)), "out"),
        (lambda x, p, o: (x, p, np.empty((4, 3, 0, 8), np.float32)), "out"),
        (
            lambda x, p, o: ([np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5, 1), np.uint8)], p, o),
            "images",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(mutate, match):
    x, p, o = mutate(*_ok())
    with pytest.raises(ValueError, match=match):
        _call(x, p, o)


def test_bad_box_and_flags_and_empty_batch():
    x, p, o = _ok()
    q = p.copy()
    q[0, COL["crop_h"]] = 11
    with pytest.raises(ValueError, match="params"):
        _call(x, q, o)
    q = p.copy()
    q[1, COL["flip"]] = 0.5
    with pytest.raises(ValueError, match="params"):
        _call(x, q, o)
    q = p.copy()
    q[2, COL["order0"]] = q[2, COL["order1"]]
    with pytest.raises(ValueError, match="permutation"):
        _call(x, q, o)
    with pytest.raises(ValueError, match="views"):
        _call(x, p, o, views=0)
    with pytest.raises(ValueError, match="std"):
        _call(x, p, o, std=(1, 0, 1))
    # an empty batch is valid and writes nothing
    _C.augment_apply(
        np.zeros((0, 4, 4, 3), np.uint8),
        np.zeros((0, len(PARAM_COLUMNS)), np.float32),
        np.zeros((0, 3, 8, 8), np.float32),
        2,
        list(MEAN),
        list(STD),
        False,
        True,
        1,
    )
    with pytest.raises(ValueError, match="configs"):
        _C.augment_sample([{"blur_kernel": 4}], np.array([4]), np.array([4]), np.array([0]), 0, 0)
    with pytest.raises(ValueError, match="configs"):
        _C.augment_sample(
            [{"scale_min": float("nan")}], np.array([4]), np.array([4]), np.array([0]), 0, 0
        )
    with pytest.raises(ValueError, match="heights"):
        _C.augment_sample([{}], np.array([0]), np.array([4]), np.array([0]), 0, 0)
    with pytest.raises(ValueError, match="name"):
        A.preset("nope")


@settings(max_examples=60, deadline=None)
@given(
    col=st.integers(0, len(PARAM_COLUMNS) - 1),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-5, 40).map(float)
    ),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    oh=st.integers(1, 9),
    ow=st.integers(1, 9),
)
def test_fuzzed_params_raise_or_run(col, value, h, w, oh, ow):
    """Any single corrupted parameter is either valid (runs) or a ValueError naming params."""
    x = np.full((1, h, w, 3), 100, np.uint8)
    p = A.sample_params(A.ViewSpec(blur_p=1.0, blur_kernel=3, solarize_p=0.5), [(h, w)], seed=1)
    p[0, col] = value
    out = np.empty((1, 3, oh, ow), np.float32)
    try:
        _C.augment_apply(x, p, out, 1, list(MEAN), list(STD), False, True, 1)
    except ValueError as e:
        assert "params" in str(e)
    else:
        assert np.isfinite(out).all()


def test_float16_store_rounds_like_numpy():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(20000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 20000),
            np.array(
                [
                    0.0,
                    -0.0,
                    65504,
                    65519.99,
                    65520,
                    1e9,
                    -1e9,
                    np.inf,
                    -np.inf,
                    6e-8,
                    3e-8,
                    2.98e-8,
                    5.96e-8,
                    6.1e-5,
                    6.104e-5,
                ],
                np.float32,
            ),
            (np.arange(-70000, 70000, 0.5)).astype(np.float32),
        ]
    )
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(_C.half_bits(x), want)
    nan = _C.half_bits(np.array([np.nan], np.float32))[0]
    assert nan & 0x7C00 == 0x7C00 and nan & 0x3FF


@needs_torch
@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    oh=st.integers(1, 20),
    ow=st.integers(1, 20),
    c=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzzed_shapes_match_reference(h, w, oh, ow, c, seed):
    """Tiny and odd sizes (1-pixel images, upscaling, kernels wider than the view)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(1, h, w, c), dtype=np.uint8)
    spec = A.ViewSpec(
        size=(oh, ow), jitter_p=1.0, gray_p=0.5, blur_p=0.7, blur_kernel=5, solarize_p=0.5
    )
    params = A.sample_params(spec, [(h, w)], seed=seed)
    mean, std = (0.5,) * c, (0.25,) * c
    got = A.apply(x, params, size=(oh, ow), mean=mean, std=std)
    want = ref.apply_row(torch.from_numpy(x[0]), params[0], (oh, ow), mean, std).numpy()
    err = np.abs(got[0] - want) * 255 * 0.25
    assert err.max() <= 2.001
