"""Random search over every entry point of pyxfer._C: no input crashes the process.

Each test draws a valid call (arrays whose shapes fit together), then breaks it at random: other
dtypes, byte orders, ranks, shapes and strides, read-only, empty or huge-but-empty arrays,
objects that are not arrays, NaN/inf values, huge sizes and counts, and buffers that share
memory (any set of the call's arrays may be placed in one buffer at random offsets, so every
pair can overlap). A call must give a correct result or raise a ValueError whose message starts
with the argument's name (TypeError for Python objects pybind11 cannot convert, MemoryError for
an allocation too large); anything else fails the test, and a crash ends the session, which
fails it too. The last test calls the kernels from several threads on shared arrays while
another thread rewrites them.

``PYXFER_FUZZ_EXAMPLES`` sets the cases per entry point: 100 by default (the file runs in well
under a minute); docs/reliability.md gives the long run (10,000 per entry point):

    PYXFER_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz_ops.py -p no:cacheprovider \\
        --hypothesis-show-statistics
"""

from __future__ import annotations

import os
import re
import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxfer import _C
from pyxfer.ops import augment as aug

EXAMPLES = int(os.environ.get("PYXFER_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
CUDA_BUILD = bool(_C.build_info()["cuda_compiled"])
P = _C.AUGMENT_PARAM_COUNT

# "name: ..." or "name[3]['key']: ..." or "heights/widths: ...": the argument comes first.
NAMED = re.compile(r"^[A-Za-z_][\w/]*(\[[^\]]*\])*: ")


def _call(fn, *args, runtime_ok: str | None = None):
    """fn(*args), or None after an accepted error; any other outcome fails the test."""
    try:
        return fn(*args)
    except ValueError as e:
        assert NAMED.match(str(e)), f"ValueError that names no argument: {e}"
    except TypeError as e:
        assert "incompatible function arguments" in str(e), f"unexpected TypeError: {e}"
    except MemoryError:
        pass
    except RuntimeError as e:
        if runtime_ok is None or runtime_ok not in str(e):
            raise
    return None


# ---- building blocks -----------------------------------------------------------------------
SEEDS = st.integers(0, 2**32 - 1)
THREADS = st.sampled_from([0, 1, 2, 3] * 3 + [-1, 2**31])
SIDE = st.integers(1, 12)
ODD_DTYPES = [
    np.float64,
    np.float16,
    np.float32,
    np.int64,
    np.int32,
    np.uint8,
    np.uint32,
    np.bool_,
    np.complex64,
]
SPECIAL_FLOATS = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, 1e-300, 1e-39, 3e38, 2.0**24 + 1]
SPECIAL_INTS = [-1, 0, 2**24 + 1, 2**31, 2**40, 2**62, 2**63 - 1]


def _uint8(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _floats(seed: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _mostly(usual, special):
    """A strategy drawing from `usual` five times in six, else one of the `special` values."""
    return st.integers(0, 5).flatmap(lambda i: usual if i else st.sampled_from(special))


def _number(draw, usual, special=SPECIAL_FLOATS):
    """A usual value most of the time, else a special one (NaN, inf, huge, tiny, negative)."""
    return draw(usual) if draw(st.integers(0, 5)) else draw(st.sampled_from(special))


def _channel_values(draw, c: int, usual) -> list[float]:
    """mean/std: one value per channel; one time in six, one special value or the wrong count."""
    values = [draw(usual) for _ in range(c)]
    how = draw(st.integers(0, 11))
    if how == 0:
        values[draw(st.integers(0, c - 1))] = draw(st.sampled_from(SPECIAL_FLOATS))
    elif how == 1:
        values = [*values, 0.5] if draw(st.booleans()) else values[:-1]
    return values


def _place(draw, arrays: dict[str, object]) -> dict[str, object]:
    """One time in three, copy some of the arrays into one buffer at drawn offsets."""
    names = [k for k, a in arrays.items() if isinstance(a, np.ndarray) and a.size]
    if len(names) < 2 or draw(st.integers(0, 2)):
        return arrays
    chosen = draw(st.lists(st.sampled_from(names), min_size=2, max_size=len(names), unique=True))
    sizes = [arrays[k].nbytes for k in chosen]
    pool = np.zeros(max(sizes) + draw(st.integers(0, sum(sizes))), np.uint8)
    out = dict(arrays)
    for k in chosen:
        a = arrays[k]
        slots = (pool.nbytes - a.nbytes) // a.itemsize
        offset = draw(st.integers(0, slots)) * a.itemsize
        view = np.ndarray(a.shape, a.dtype, buffer=pool, offset=offset)
        view[...] = a
        out[k] = view
    return out


def _broken(draw, a: object) -> object:
    """One way of getting an argument wrong."""
    if not isinstance(a, np.ndarray):
        return draw(st.sampled_from([None, "x", 3, [1, 2]]))
    how = draw(
        st.sampled_from(
            [
                "dtype",
                "byteorder",
                "strided",
                "rank",
                "shape",
                "readonly",
                "special",
                "empty",
                "huge",
                "object",
            ]
        )
    )
    if how == "dtype":
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex to real
            return a.astype(draw(st.sampled_from(ODD_DTYPES)))
    if how == "byteorder":
        return a.astype(a.dtype.newbyteorder()) if a.dtype.itemsize > 1 else a
    if how == "strided" and a.size:  # (an empty array may have an axis of 2^40)
        axis = draw(st.integers(0, a.ndim - 1))
        return np.repeat(a, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]
    if how == "rank":
        return a[None] if draw(st.booleans()) else a.reshape(-1)
    if how == "shape" and a.ndim:
        axis = draw(st.integers(0, a.ndim - 1))
        if draw(st.booleans()) and a.size:
            return np.delete(a, 0, axis=axis)
        return np.concatenate([a, a], axis=axis)
    if how == "readonly":
        view = a.view()
        view.setflags(write=False)
        return view
    if how == "special" and a.size:
        b = a.copy()
        if b.dtype.kind == "f":
            with np.errstate(all="ignore"):  # 1e300 is inf in float16
                value = np.array(draw(st.sampled_from(SPECIAL_FLOATS))).astype(b.dtype)
            b.flat[draw(st.integers(0, b.size - 1))] = value
        elif b.dtype.kind in "iu":
            info = np.iinfo(b.dtype)
            value = draw(st.sampled_from([info.min, info.max, -1, 2**31, 2**40]))
            b.flat[draw(st.integers(0, b.size - 1))] = min(max(value, info.min), info.max)
        return b
    if how == "empty" and a.ndim:
        shape = list(a.shape)
        shape[draw(st.integers(0, a.ndim - 1))] = 0
        return np.empty(shape, a.dtype)
    if how == "huge" and a.ndim >= 2:  # no elements, one enormous axis
        shape = [0] * a.ndim
        shape[draw(st.integers(0, a.ndim - 1))] = 2**40
        return np.empty(shape, a.dtype)
    if how == "object":
        return a.tolist() if a.size < 64 and max(a.shape, default=0) < 64 else None
    return a


def _break(draw, arrays: dict[str, object]) -> dict[str, object]:
    """Break up to two of the arguments (none, two times in three)."""
    out = dict(arrays)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        k = draw(st.sampled_from(sorted(out)))
        out[k] = _broken(draw, out[k])
    return out


def _images(draw, n: int, c: int, max_side: int = 16):
    """A dense (n, h, w, c) batch or a list of n (h_i, w_i, c) images, as named arrays."""
    seed = draw(SEEDS)
    if draw(st.booleans()):
        h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
        return {"images": _uint8(seed, (n, h, w, c))}, True
    return {
        f"images[{i}]": _uint8(
            seed + i, (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)), c)
        )
        for i in range(n)
    }, False


def _image_arg(arrays: dict[str, object], dense: bool, n: int):
    return arrays["images"] if dense else [arrays[f"images[{i}]"] for i in range(n)]


# ---- normalize -------------------------------------------------------------------------------
@st.composite
def normalize_case(draw):
    n, h, w = draw(st.integers(0, 3)), draw(SIDE), draw(SIDE)
    c = draw(st.sampled_from([1, 3]))
    cl, half = draw(st.booleans()), draw(st.booleans())
    out = np.empty((n, h, w, c) if cl else (n, c, h, w), np.float16 if half else np.float32)
    arrays = _break(draw, _place(draw, {"images": _uint8(draw(SEEDS), (n, h, w, c)), "out": out}))
    mean = _channel_values(draw, c, st.floats(0, 1))
    std = _channel_values(draw, c, st.floats(0.01, 2))
    return arrays, mean, std, cl, draw(THREADS)


@FUZZ
@given(normalize_case())
def test_fuzz_normalize(case):
    arrays, mean, std, cl, threads = case
    images, out = arrays["images"], arrays["out"]
    done = _call(lambda *a: _C.normalize(*a) or True, images, out, mean, std, cl, threads)
    if done and out.dtype == np.float32 and images.size:
        m, sd = np.asarray(mean), np.asarray(std)
        ref = (images.astype(np.float64) / 255 - m) / sd
        ref = ref if cl else ref.transpose(0, 3, 1, 2)
        # x * (1 / (255 std)) - mean / std in float32: the error scales with the larger term,
        # plus the spacing of subnormal floats (a huge std gives subnormal factors)
        scale = float(((1 + np.abs(m)) / np.abs(sd)).max())
        if scale < 1e30:
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6 * scale + 1e-40)


# ---- augment_sample ----------------------------------------------------------------------------
CONFIG_KEYS = [
    "crop_mode",
    "scale_min",
    "scale_max",
    "ratio_min",
    "ratio_max",
    "flip_p",
    "jitter_p",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "gray_p",
    "blur_p",
    "sigma_min",
    "sigma_max",
    "blur_kernel",
    "solarize_p",
    "solarize_threshold",
]


# Values each setting accepts (the order checks scale_min <= scale_max etc. still bite).
_UNIT = st.floats(0, 1)
CONFIG_VALUES = {
    "crop_mode": st.sampled_from([0, 1]),
    "scale_min": st.floats(0, 0.5),
    "scale_max": st.floats(0.5, 1),
    "ratio_min": st.floats(0.1, 1),
    "ratio_max": st.floats(1, 10),
    "hue": st.floats(0, 0.5),
    "sigma_min": st.floats(1e-6, 1),
    "sigma_max": st.floats(1, 1e30),
    "blur_kernel": st.integers(0, 50).map(lambda k: 2 * k + 1),
    "solarize_threshold": st.floats(0, 256),
    "brightness": st.floats(0, 1e30),
    "contrast": st.floats(0, 2),
    "saturation": st.floats(0, 2),
    **{k: _UNIT for k in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p")},
}


@st.composite
def config(draw):
    """A view's settings: a preset's, some keys set to drawn values (now and then odd ones)."""
    spec = aug.preset(draw(st.sampled_from(aug.PRESETS)), size=16)[0]
    cfg: dict[object, object] = spec.to_config()
    for key in draw(st.lists(st.sampled_from([*CONFIG_KEYS, "bogus"]), max_size=3)):
        cfg[key] = _number(
            draw,
            CONFIG_VALUES.get(key, st.floats(0, 2)),
            [*SPECIAL_FLOATS, 1e30, 1.5, "x", None, True, 10**400],
        )
    if draw(st.sampled_from([False] * 19 + [True])):
        cfg[3] = 1.0  # not a name
    return cfg


@st.composite
def sample_case(draw):
    n = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(SEEDS))
    arrays = {
        "heights": rng.integers(1, 64, n),
        "widths": rng.integers(1, 64, n),
        "indices": rng.integers(0, 2**32, n),
    }
    for k in arrays:
        if n and not draw(st.integers(0, 5)):
            arrays[k][draw(st.integers(0, n - 1))] = draw(st.sampled_from(SPECIAL_INTS))
    configs = draw(
        st.lists(config(), min_size=0 if not draw(st.integers(0, 20)) else 1, max_size=3)
    )
    seed = draw(_mostly(st.integers(0, 2**64 - 1), [0, 2**64 - 1, -1, 2**64]))
    epoch = draw(st.sampled_from([0, 7, 2**32 - 1] * 4 + [2**32, -1, 2**63]))
    return configs, _break(draw, arrays), seed, epoch, draw(THREADS)


@FUZZ
@given(sample_case())
def test_fuzz_augment_sample(case):
    configs, a, seed, epoch, threads = case
    prm = _call(
        _C.augment_sample, configs, a["heights"], a["widths"], a["indices"], seed, epoch, threads
    )
    if prm is not None:
        assert prm.dtype == np.float32 and prm.shape == (len(a["heights"]) * len(configs), P)
        assert np.isfinite(prm).all()


# ---- augment_apply -----------------------------------------------------------------------------
@st.composite
def sane_config(draw):
    """Settings augment_sample accepts: a preset's with drawn probabilities and blur kernel."""
    cfg = aug.preset(draw(st.sampled_from(aug.PRESETS)), size=16)[0].to_config()
    for key in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
        cfg[key] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    cfg["blur_kernel"] = draw(st.sampled_from([1, 3, 5, 23]))
    return cfg


@st.composite
def apply_case(draw):
    n, views = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3]))
    arrays, dense = _images(draw, n, c)
    sizes = [a.shape[:2] if not dense else a.shape[1:3] for a in arrays.values()]
    sizes = sizes * n if dense else sizes
    params = (
        _C.augment_sample(
            [draw(sane_config()) for _ in range(views)],
            np.array([s[0] for s in sizes], np.int64),
            np.array([s[1] for s in sizes], np.int64),
            np.arange(n, dtype=np.int64),
            draw(SEEDS),
            0,
        )
        if n
        else np.empty((0, P), np.float32)
    )
    if n and not draw(st.integers(0, 3)):  # one odd value in one column
        value = draw(st.sampled_from([*SPECIAL_FLOATS, 0.5, 2.0, 4.0, 16.0, 17.0, 1001.0, 1002.0]))
        with np.errstate(over="ignore"):
            params[draw(st.integers(0, n * views - 1)), draw(st.integers(0, P - 1))] = value
    oh, ow = draw(SIDE), draw(SIDE)
    cl, half = draw(st.booleans()), draw(st.booleans())
    shape = (n * views, oh, ow, c) if cl else (n * views, c, oh, ow)
    arrays.update(params=params, out=np.empty(shape, np.float16 if half else np.float32))
    arrays = _break(draw, _place(draw, arrays))
    views = draw(_mostly(st.just(views), [0, -1, 2**62]))
    mean = _channel_values(draw, c, st.floats(0, 1))
    std = _channel_values(draw, c, st.floats(0.01, 2))
    return arrays, dense, n, views, mean, std, cl, draw(st.booleans()), draw(THREADS)


@FUZZ
@given(apply_case())
def test_fuzz_augment_apply(case):
    arrays, dense, n, views, mean, std, cl, quantize, threads = case
    images = _image_arg(arrays, dense, n)
    out = arrays["out"]
    done = _call(
        lambda *a: _C.augment_apply(*a) or True,
        images,
        arrays["params"],
        out,
        views,
        mean,
        std,
        cl,
        quantize,
        threads,
    )
    if done and out.size:
        assert not np.isnan(out.astype(np.float32)).any()


# ---- preprocess --------------------------------------------------------------------------------
@st.composite
def preprocess_case(draw):
    n = draw(st.integers(0, 3))
    c = draw(st.sampled_from([1, 3]))
    arrays, dense = _images(draw, n, c)
    oh, ow = draw(SIDE), draw(SIDE)
    cl, half = draw(st.booleans()), draw(st.booleans())
    shape = (n, oh, ow, c) if cl else (n, c, oh, ow)
    arrays["out"] = np.empty(shape, np.float16 if half else np.float32)
    arrays = _break(draw, _place(draw, arrays))
    resize = draw(_mostly(st.integers(0, 20), [2**20, 2**20 + 1, 2**62, -1, 2**63]))
    mean = _channel_values(draw, c, st.floats(0, 1))
    std = _channel_values(draw, c, st.floats(0.01, 2))
    return arrays, dense, n, resize, mean, std, cl, draw(st.booleans()), draw(THREADS)


@FUZZ
@given(preprocess_case())
def test_fuzz_preprocess(case):
    arrays, dense, n, resize, mean, std, cl, quantize, threads = case
    images = _image_arg(arrays, dense, n)
    out = arrays["out"]
    done = _call(
        lambda *a: _C.preprocess(*a) or True,
        images,
        out,
        resize,
        mean,
        std,
        cl,
        quantize,
        threads,
    )
    if done and out.size:
        assert not np.isnan(out.astype(np.float32)).any()


# ---- pool_normalize ----------------------------------------------------------------------------
@st.composite
def pool_case(draw):
    shape = (draw(st.integers(0, 5)), draw(st.integers(0, 5)), draw(SIDE), draw(SIDE))
    x = _floats(draw(SEEDS), shape, draw(st.sampled_from([np.float32, np.float16])))
    x = _break(draw, {"x": x})["x"]
    mode = draw(_mostly(st.sampled_from(["avg", "gem"]), ["max", ""]))
    p = _number(draw, st.floats(0.5, 4))
    eps = _number(draw, st.floats(1e-8, 1e-3))
    l2_eps = _number(draw, st.floats(1e-12, 1e-6))
    return x, mode, p, eps, draw(st.booleans()), l2_eps, draw(THREADS)


@FUZZ
@given(pool_case())
def test_fuzz_pool_normalize(case):
    x, mode, p, eps, l2, l2_eps, threads = case
    out = _call(_C.pool_normalize, x, mode, p, eps, l2, l2_eps, threads)
    if out is not None:
        assert out.shape == x.shape[:2] and out.dtype == np.float32
        if mode == "avg" and not l2 and np.isfinite(x).all():
            ref = x.astype(np.float64).mean(axis=(2, 3))
            np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)


# ---- cosine_topk / knn_classify ----------------------------------------------------------------
SIMD = st.sampled_from(["auto", "scalar", *_C.simd_paths(), "avx512", "bogus"])


@st.composite
def features_case(draw):
    m, n, d = draw(st.integers(0, 6)), draw(st.integers(1, 40)), draw(st.integers(1, 9))
    seed = draw(SEEDS)
    arrays = {
        "queries": _floats(seed, (m, d)),
        "bank": _floats(seed + 1, (n, d), draw(st.sampled_from([np.float32, np.float16]))),
        "bank_labels": np.random.default_rng(seed).integers(0, 4, n),
    }
    arrays = _break(draw, _place(draw, arrays))
    k = draw(_mostly(st.integers(1, n), [0, -1, n + 1, 2**31, 2**62, 2**63]))
    block = draw(_mostly(st.sampled_from([0, 1, 3, 240]), [-1, 2**62]))
    return arrays, k, block, draw(SIMD), draw(THREADS)


def _fits_float32(q, b) -> bool:
    """No inner product of these finite rows can overflow float32 (else inf - inf gives NaN)."""
    bound = q.shape[1] * float(np.abs(q).max(initial=0)) * float(np.abs(b).max(initial=0))
    return bound < 1e37


def _check_topk(q, b, k, values, indices):
    assert values.shape == indices.shape == (q.shape[0], k)
    assert ((indices >= 0) & (indices < b.shape[0])).all()  # even when similarities overflow
    if _fits_float32(q, b):
        assert (np.diff(values, axis=1) <= 0).all()
        sims = q.astype(np.float64) @ b.astype(np.float64).T
        np.testing.assert_allclose(
            values, np.take_along_axis(sims, indices, 1), rtol=1e-4, atol=1e-4
        )


@FUZZ
@given(features_case())
def test_fuzz_cosine_topk(case):
    a, k, block, simd, threads = case
    result = _call(_C.cosine_topk, a["queries"], a["bank"], k, block, simd, threads)
    if result is not None:
        _check_topk(a["queries"], a["bank"], k, *result)


@FUZZ
@given(
    features_case(),
    _mostly(st.sampled_from([0.07, 1.0, 1e-300, 1e300]), [0.0, -1.0, np.nan, np.inf]),
    _mostly(st.integers(4, 8), [1, 3, 0, -1, 2**20, 2**62, 2**63]),
)
def test_fuzz_knn_classify(case, temperature, num_classes):
    a, k, block, simd, threads = case
    scores = _call(
        _C.knn_classify,
        a["queries"],
        a["bank"],
        a["bank_labels"],
        k,
        temperature,
        num_classes,
        block,
        simd,
        threads,
    )
    if scores is not None:
        assert scores.shape == (a["queries"].shape[0], num_classes)
        if _fits_float32(a["queries"], a["bank"]):
            assert not np.isnan(scores).any() and (scores >= 0).all()


# ---- small helpers: philox, half_bits, the thread pool -------------------------------------------
@FUZZ
@given(
    st.integers(0, 5),
    SEEDS,
    _mostly(st.sampled_from([0, 1, 2**32 - 1]), [2**32, -1, 2**64]),
    _mostly(st.sampled_from([0, 7, 2**32 - 1]), [2**32]),
    st.data(),
)
def test_fuzz_philox(n, seed, key0, key1, data):
    counters = np.random.default_rng(seed).integers(0, 2**32, (n, 4), dtype=np.uint32)
    counters = _break(data.draw, {"counters": counters})["counters"]
    first = _call(_C.philox4x32_10, counters, key0, key1)
    if first is not None:
        assert first.shape == (len(counters), 4) and first.dtype == np.uint32
        np.testing.assert_array_equal(first, _C.philox4x32_10(counters, key0, key1))


@FUZZ
@given(st.integers(0, 64), SEEDS, st.data())
def test_fuzz_half_bits(n, seed, data):
    values = _floats(seed, (n,)) * data.draw(st.sampled_from([1.0, 1e3, 1e6, 1e-6]))
    values = _break(data.draw, {"values": values})["values"]
    bits = _call(_C.half_bits, values)
    if bits is not None:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex input: the imaginary part is dropped
            ref = np.asarray(values, np.float32).reshape(-1).astype(np.float16)
        keep = ~np.isnan(ref)
        np.testing.assert_array_equal(bits[keep], ref.view(np.uint16)[keep])


@FUZZ
@given(
    st.integers(0, 3000) | st.sampled_from([-1, 2**24 + 1, 2**62]),
    st.sampled_from([0, 1, 2, 3, -1]),
    st.integers(1, 64) | st.sampled_from([0, -1, 2**62]),
    st.integers(-1, 3000),
    st.booleans(),
)
def test_fuzz_parallel_check(n, threads, grain, fail_at, nested):
    got = _call(
        _C._parallel_check, n, threads, grain, fail_at, nested, runtime_ok="parallel_check failure"
    )
    if got is not None:
        assert not 0 <= fail_at < n
        assert got == [i * i + (28 if nested else 0) for i in range(n)]


# ---- the *_cuda entry points: argument checks (the build without CUDA then refuses) ------------
# Made-up device addresses are never dereferenced by the checks; in a CUDA build a call that
# passes them would launch a kernel on them, so these run in CPU-only builds.
# Addresses in slots of 2^20 bytes (buffers there do not overlap), else odd or colliding ones.
ADDRESS = _mostly(
    st.integers(1, 2**20).map(lambda i: i << 20),
    [0, 1, 4096, 4096 + 4, 4096 + 64, 2**63, 2**64 - 8, 2**64, -1],
)
SIZE = _mostly(st.integers(0, 9), [-1, 2**31, 2**40, 2**62, 2**63])
BUILT_WITHOUT = "built without CUDA"
cuda_checks = pytest.mark.skipif(CUDA_BUILD, reason="made-up device pointers in a CUDA build")


@cuda_checks
@FUZZ
@given(ADDRESS, ADDRESS, SIZE, SIZE, SIZE, st.sampled_from([1, 3, 2, 0]), st.booleans(), st.data())
def test_fuzz_normalize_cuda(src, dst, n, h, w, c, half, data):
    mean = _channel_values(data.draw, max(c, 1), st.floats(0, 1))
    std = _channel_values(data.draw, max(c, 1), st.floats(0.01, 2))
    _call(
        _C.normalize_cuda, src, dst, n, h, w, c, mean, std, half, False, 0, runtime_ok=BUILT_WITHOUT
    )


@st.composite
def device_images(draw):
    """(pointers, heights, widths) of up to 3 device images; sizes mostly valid."""
    images = draw(st.lists(st.tuples(ADDRESS, SIDE | SIZE, SIDE | SIZE), max_size=3))
    return [list(t) for t in zip(*images, strict=True)] if images else ([], [], [])


@cuda_checks
@FUZZ
@given(
    device_images(),
    st.sampled_from([1, 3, 2]),
    st.integers(1, 2) | SIZE,
    ADDRESS,
    SIDE | SIZE,
    SIDE | SIZE,
    st.booleans(),
    st.data(),
)
def test_fuzz_augment_apply_cuda(images, c, views, out, out_h, out_w, half, data):
    ptrs, hs, ws = images
    try:  # rows for these sizes when they are valid, else a made-up table
        params = aug.sample_params("simclr", list(zip(hs, ws, strict=True)), size=8)[
            : len(hs) * views
        ]
    except (ValueError, TypeError, OverflowError):
        params = np.zeros((len(hs) * max(views, 0) % 7, P), np.float32)
    params = _break(data.draw, {"params": params})["params"]
    mean = _channel_values(data.draw, max(c, 1), st.floats(0, 1))
    std = _channel_values(data.draw, max(c, 1), st.floats(0.01, 2))
    _call(
        _C.augment_apply_cuda,
        ptrs,
        hs,
        ws,
        c,
        params,
        out,
        views,
        out_h,
        out_w,
        mean,
        std,
        half,
        False,
        True,
        0,
        runtime_ok=BUILT_WITHOUT,
    )


@cuda_checks
@FUZZ
@given(
    device_images(),
    st.sampled_from([1, 3, 4]),
    ADDRESS,
    SIZE,
    SIDE | SIZE,
    SIDE | SIZE,
    st.booleans(),
    st.data(),
)
def test_fuzz_preprocess_cuda(images, c, out, resize, crop_h, crop_w, half, data):
    mean = _channel_values(data.draw, c, st.floats(0, 1))
    std = _channel_values(data.draw, c, st.floats(0.01, 2))
    ptrs, hs, ws = images
    _call(
        _C.preprocess_cuda,
        ptrs,
        hs,
        ws,
        c,
        out,
        resize,
        crop_h,
        crop_w,
        mean,
        std,
        half,
        False,
        True,
        0,
        runtime_ok=BUILT_WITHOUT,
    )


@cuda_checks
@FUZZ
@given(
    ADDRESS,
    ADDRESS,
    SIZE,
    SIZE,
    SIZE,
    st.booleans(),
    st.sampled_from(["avg", "gem", "x"]),
    st.sampled_from([3.0, 0.0, np.nan]),
    st.booleans(),
)
def test_fuzz_pool_normalize_cuda(x, out, n, c, hw, half, mode, p, l2):
    _call(
        _C.pool_normalize_cuda,
        x,
        out,
        n,
        c,
        hw,
        half,
        mode,
        p,
        1e-6,
        l2,
        1e-12,
        0,
        runtime_ok=BUILT_WITHOUT,
    )


@cuda_checks
@FUZZ
@given(ADDRESS, ADDRESS, ADDRESS, ADDRESS, SIZE, SIZE, SIZE, SIZE | st.just(2049), st.booleans())
def test_fuzz_cosine_topk_cuda(queries, bank, values, indices, m, n, d, k, half):
    _call(
        _C.cosine_topk_cuda,
        queries,
        bank,
        values,
        indices,
        m,
        n,
        d,
        k,
        half,
        0,
        runtime_ok=BUILT_WITHOUT,
    )


@cuda_checks
@FUZZ
@given(
    ADDRESS,
    ADDRESS,
    ADDRESS,
    ADDRESS,
    SIZE,
    SIZE,
    SIZE,
    SIZE,
    st.booleans(),
    SIZE,
    st.sampled_from([0.07, 0.0, np.nan]),
)
def test_fuzz_knn_classify_cuda(queries, bank, labels, scores, m, n, d, k, half, classes, t):
    _call(
        _C.knn_classify_cuda,
        queries,
        bank,
        labels,
        scores,
        m,
        n,
        d,
        k,
        half,
        classes,
        t,
        0,
        runtime_ok=BUILT_WITHOUT,
    )


# ---- concurrent calls on shared arrays -----------------------------------------------------------
def test_concurrent_calls_on_shared_arrays_while_another_thread_rewrites_them():
    """Four threads call the kernels on the same arrays (the same outputs too) while a fifth
    rewrites the inputs with valid and invalid values: refusals are fine, crashes are not."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    params = aug.sample_params("dino", [(20, 20)] * 6, size=8, seed=1)
    good_params = params.copy()
    queries = rng.standard_normal((16, 8)).astype(np.float32)
    bank = rng.standard_normal((300, 8)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    out_aug = np.empty((len(params), 3, 8, 8), np.float32)
    out_norm = np.empty((6, 3, 20, 20), np.float16)
    out_pre = np.empty((6, 10, 10, 3), np.float32)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]
    calls = [
        lambda: _C.augment_apply(
            images, params, out_aug, len(params) // 6, mean, std, False, True, 2
        ),
        lambda: _C.augment_apply(
            list(images), params, out_aug, len(params) // 6, mean, std, False, False, 1
        ),
        lambda: _C.normalize(images, out_norm, mean, std, False, 2),
        lambda: _C.preprocess(images, out_pre, 12, mean, std, True, True, 0),
        lambda: _C.cosine_topk(queries, bank, 7, 16, "auto", 2),
        lambda: _C.knn_classify(queries, bank, labels, 7, 0.1, 5, 0, "auto", 1),
        lambda: _C.pool_normalize(out_aug, "gem", 3.0, 1e-6, True, 1e-12, 2),
        lambda: _C.augment_sample([{"brightness": 0.4}], labels + 1, labels + 1, labels, 0, 0, 2),
    ]
    stop = threading.Event()
    counts = [[0] * len(calls) for _ in range(4)]  # per worker thread
    errors: list[BaseException] = []

    def rewrite() -> None:
        r = np.random.default_rng(1)
        while not stop.is_set():
            which = r.integers(0, 4)
            if which == 0:
                params[r.integers(0, len(params)), r.integers(0, P)] = r.choice(
                    [np.nan, -1.0, 1e9, 2.0**24 + 1, 3.0]
                )
            elif which == 1:
                params[:] = good_params
                labels[r.integers(0, 300)] = r.choice([-1, 2**40, 7])
            elif which == 2:
                labels[:] = r.integers(0, 5, 300)
                bank[r.integers(0, 300), r.integers(0, 8)] = r.choice([np.nan, np.inf, 0.5])
            else:
                bank[:] = np.abs(bank) + 0.01  # finite again
                images[r.integers(0, 6)] = r.integers(0, 256, (20, 20, 3), dtype=np.uint8)

    def work(worker: int) -> None:
        r = np.random.default_rng(worker)
        try:
            for _ in range(EXAMPLES):
                for i in r.permutation(len(calls)):
                    try:
                        calls[i]()
                    except ValueError as e:
                        assert NAMED.match(str(e)), str(e)
                    counts[worker][i] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=rewrite)] + [
        threading.Thread(target=work, args=(s,)) for s in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not errors, errors[0]
    per_entry_point = [sum(c[i] for c in counts) for i in range(len(calls))]
    assert per_entry_point == [4 * EXAMPLES] * len(calls)
    print(f"concurrent calls per entry point: {per_entry_point}")
