"""normalize kernel vs a numpy reference; layouts, dtypes, threads, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _optional_torch import needs_torch, torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxfer import _C
from pyxfer.ops import normalize


def reference(x: np.ndarray, mean, std) -> np.ndarray:
    y = (x.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return y.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 7, 5), (3, 32, 33)])
def test_matches_reference(c: int, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (*shape, c), dtype=np.uint8)
    mean, std = rng.uniform(0, 1, c), rng.uniform(0.1, 1, c)
    y = normalize(x, mean, std)
    assert y.dtype == np.float32 and y.shape == (shape[0], c, shape[1], shape[2])
    np.testing.assert_allclose(y, reference(x, mean, std), rtol=1e-5, atol=1e-5)


def test_channels_last_and_float16() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    ref = reference(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    nhwc = normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), channels_last=True)
    np.testing.assert_allclose(nhwc, ref.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    half = normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), dtype="float16")
    assert half.dtype == np.float16
    # the kernel's float32 result rounded to nearest even: identical to numpy's cast
    full = normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    np.testing.assert_array_equal(half, full.astype(np.float16))
    np.testing.assert_allclose(half, ref, rtol=1e-3, atol=1e-3)


def test_each_operation_rounds_in_float32() -> None:
    """out = x * (inv_std / 255) + (-mean * inv_std) with the product and the sum each rounded
    to float32, as numpy computes it (and CUDA, built with --fmad=false), on every level. Fails
    where the compiler contracts the two into a fused multiply-add, as GCC does for C++ on
    AArch64 unless told not to (-ffp-contract=off, cpp/CMakeLists.txt)."""
    x = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    for mean, std in [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5,) * 3, (0.3,) * 3)]:
        inv = np.float32(1) / np.float32(std)
        scale, shift = inv / np.float32(255), -np.float32(mean) * inv
        want = x.astype(np.float32) * scale + shift
        np.testing.assert_array_equal(normalize(x, mean, std, channels_last=True), want)
        np.testing.assert_array_equal(normalize(x, mean, std), want.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("c", [1, 3])
def test_vector_and_scalar_paths_agree(monkeypatch, c: int) -> None:
    """Widths around the 16-pixel vector steps, both layouts, float16 with subnormal and
    overflowing halves: the vector rows (NEON on AArch64) equal PYXFER_SIMD=scalar's loops."""
    rng = np.random.default_rng(c)
    norms = [
        ((0.485, 0.456, 0.406)[:c], (0.229, 0.224, 0.225)[:c]),
        ((0.5,) * c, (1e-6,) * c),
        ((0.0,) * c, (3e4,) * c),
    ]
    for w in (1, 15, 16, 17, 33, 64):
        x = rng.integers(0, 256, (2, 3, w, c), dtype=np.uint8)
        for mean, std in norms:
            for kw in (
                {},
                {"channels_last": True},
                {"dtype": "float16"},
                {"dtype": "float16", "channels_last": True},
            ):
                monkeypatch.delenv("PYXFER_SIMD", raising=False)
                best = normalize(x, mean, std, **kw)
                monkeypatch.setenv("PYXFER_SIMD", "scalar")
                np.testing.assert_array_equal(normalize(x, mean, std, **kw), best)


def test_float16_conversion_edge_cases() -> None:
    # mean/std chosen so outputs hit subnormals, overflow to inf and exact halfway points
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    for mean, std in [((0.5,), (1e-3,)), ((0.0,), (1e-6,)), ((0.5,), (3e3,)), ((0.1,), (7.0,))]:
        full = normalize(x, mean, std)
        half = normalize(x, mean, std, dtype="float16")
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(half, full.astype(np.float16))


def test_thread_count_does_not_change_results() -> None:
    x = np.random.default_rng(2).integers(0, 256, (8, 64, 48, 3), dtype=np.uint8)
    outs = [normalize(x, threads=t) for t in (1, 2, 3, 8)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@needs_torch
def test_torch_in_torch_out_zero_copy() -> None:
    x = torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)
    out = torch.empty(2, 3, 4, 4)
    got = normalize(x, out=out)
    assert got is out
    assert isinstance(normalize(x), torch.Tensor)
    np.testing.assert_allclose(
        out.numpy(),
        reference(x.numpy(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_single_image() -> None:
    x = np.full((5, 6, 1), 255, np.uint8)
    y = normalize(x, (0.0,), (1.0,))
    assert y.shape == (1, 5, 6) and np.all(y == 1.0)


def _out(shape=(1, 3, 2, 2), dtype=np.float32):
    return np.empty(shape, dtype)


@pytest.mark.parametrize(
    ("images", "out", "mean", "std", "match"),
    [
        (
            np.zeros((1, 2, 2, 3), np.float32),
            _out(),
            [0] * 3,
            [1] * 3,
            "images: expected dtype uint8",
        ),
        (np.zeros((2, 2, 3), np.uint8), _out(), [0] * 3, [1] * 3, "images: expected a 4-d"),
        (np.zeros((1, 2, 2, 2), np.uint8), _out((1, 2, 2, 2)), [0] * 2, [1] * 2, "1 or 3 channels"),
        (np.zeros((1, 2, 2, 3), np.uint8), _out(), [0] * 2, [1] * 3, "mean: expected 3 values"),
        (
            np.zeros((1, 2, 2, 3), np.uint8),
            _out(),
            [0] * 3,
            [1, 0, 1],
            "std: expected finite non-zero",
        ),
        (
            np.zeros((1, 2, 2, 3), np.uint8),
            _out(),
            [0, np.nan, 0],
            [1] * 3,
            "mean: expected finite",
        ),
        (
            np.zeros((1, 2, 2, 3), np.uint8),
            _out((1, 3, 2, 3)),
            [0] * 3,
            [1] * 3,
            "out: expected shape",
        ),
        (
            np.zeros((1, 2, 2, 3), np.uint8),
            _out(dtype=np.float64),
            [0] * 3,
            [1] * 3,
            "out: expected dtype",
        ),
        (np.zeros((1, 2, 4, 3), np.uint8)[:, :, ::2], _out(), [0] * 3, [1] * 3, "C-contiguous"),
    ],
)
def test_bad_input_raises_value_error(images, out, mean, std, match) -> None:
    with pytest.raises(ValueError, match=match):
        _C.normalize(images, out, mean, std)


def test_read_only_output_is_refused() -> None:
    out = _out()
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writeable"):
        _C.normalize(np.zeros((1, 2, 2, 3), np.uint8), out, [0] * 3, [1] * 3)


def test_negative_threads_refused() -> None:
    with pytest.raises(ValueError, match="threads"):
        normalize(np.zeros((1, 2, 2, 3), np.uint8), threads=-1)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
    dtype=st.sampled_from([np.uint8, np.float32, np.int64, np.float16]),
    out_shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
    out_dtype=st.sampled_from([np.float32, np.float16, np.uint8]),
    nvals=st.integers(0, 4),
    channels_last=st.booleans(),
)
def test_fuzz_binding_never_crashes(shape, dtype, out_shape, out_dtype, nvals, channels_last):
    images = np.zeros(shape, dtype)
    out = np.zeros(out_shape, out_dtype)
    try:
        _C.normalize(images, out, [0.5] * nvals, [0.5] * nvals, channels_last, 1)
    except ValueError:
        return
    # accepted: the call must have been fully valid
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] in (1, 3)
    assert nvals == images.shape[3]
