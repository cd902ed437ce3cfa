"""Nothing reaches pyxfer._C unvalidated, and nothing a kernel reads can change after validation.

Outputs never overlap inputs; the small inputs a kernel indexes with (parameter rows, labels) are
copied before the GIL is released, so another thread rewriting them cannot move a read or a
write; bounds are compared in integers; no setting or normalisation turns into inf or NaN in
float32. The random search over all of this is ``tests/test_fuzz_ops.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pyxfer import _C
from pyxfer.ops import augment as aug

CUDA_BUILD = bool(_C.build_info()["cuda_compiled"])
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _params(n: int, h: int = 16, w: int = 16) -> np.ndarray:
    """Valid parameter rows (whole-image crop, no colour op) for n images of h x w."""
    return aug.sample_params("eval", [(h, w)] * n, size=8)


def _run_isolated(code: str, tmp_path) -> str:
    """Run a script in a fresh interpreter; a crash is a failed test, not a lost session."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # the installed package, not a source tree in the working directory
    )
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stdout


# ----------------------------------------------------------------------------------------------
# Outputs that share memory with an input are refused
# ----------------------------------------------------------------------------------------------
def _normalize_out_over_images():
    buf = np.zeros(4 * 8 * 8 * 3 * 5, np.uint8)
    images = buf[: 4 * 8 * 8 * 3].reshape(4, 8, 8, 3)
    out = buf[256 : 256 + 4 * 8 * 8 * 3 * 4].view(np.float32).reshape(4, 3, 8, 8)
    _C.normalize(images, out, MEAN, STD)


def _preprocess_out_over_second_image():
    first = np.zeros((8, 8, 3), np.uint8)
    buf = np.zeros(2 * 8 * 8 * 3 * 4 + 192, np.uint8)
    second = buf[:192].reshape(8, 8, 3)
    out = buf[64 : 64 + 2 * 8 * 8 * 3 * 4].view(np.float32).reshape(2, 3, 8, 8)
    _C.preprocess([first, second], out, 0, MEAN, STD)


def _augment_out_over_images():
    buf = np.zeros(2 * 16 * 16 * 3 + 2 * 3 * 8 * 8 * 4, np.uint8)
    images = buf[: 2 * 16 * 16 * 3].reshape(2, 16, 16, 3)
    out = buf[512 : 512 + 2 * 3 * 8 * 8 * 4].view(np.float32).reshape(2, 3, 8, 8)
    _C.augment_apply(images, _params(2), out, 1, MEAN, STD)


def _augment_out_over_params():
    images = np.zeros((2, 16, 16, 3), np.uint8)
    buf = np.zeros(2 * 3 * 8 * 8, np.float32)
    params = buf[: 2 * _C.AUGMENT_PARAM_COUNT].reshape(2, -1)
    params[:] = _params(2)
    _C.augment_apply(images, params, buf.reshape(2, 3, 8, 8), 1, MEAN, STD)


# Device pointers are never dereferenced by these checks, so made-up addresses are safe; the
# checks come before the "built without CUDA" answer, so they run in every build.
_CUDA_OVERLAPS = [
    (
        "out",
        "images",
        lambda: _C.normalize_cuda(4096, 4100, 1, 8, 8, 3, MEAN, STD, False, False, 0),
    ),
    (
        "out",
        r"images\[0\]",
        lambda: _C.augment_apply_cuda(
            [4096],
            [16],
            [16],
            3,
            _params(1),
            4096 + 700,
            1,
            8,
            8,
            MEAN,
            STD,
            False,
            False,
            True,
            0,
        ),
    ),
    (
        "out",
        r"images\[1\]",
        lambda: _C.preprocess_cuda(
            [1 << 20, 4096], [8, 8], [8, 8], 3, 4000, 0, 8, 8, MEAN, STD, False, False, True, 0
        ),
    ),
    (
        "out",
        "x",
        lambda: _C.pool_normalize_cuda(
            4096, 4096 + 8, 2, 3, 4, False, "avg", 3.0, 1e-6, False, 1e-12, 0
        ),
    ),
    (
        "values",
        "indices",
        lambda: _C.cosine_topk_cuda(4096, 1 << 20, 1 << 24, (1 << 24) + 8, 2, 5, 4, 2, False, 0),
    ),
    (
        "scores",
        "bank_labels",
        lambda: _C.knn_classify_cuda(
            4096, 1 << 20, 1 << 24, (1 << 24) + 16, 2, 5, 4, 2, False, 3, 0.1, 0
        ),
    ),
]

OVERLAPS = [
    ("out", "images", _normalize_out_over_images),
    ("out", r"images\[1\]", _preprocess_out_over_second_image),
    ("out", "images", _augment_out_over_images),
    ("out", "params", _augment_out_over_params),
    *_CUDA_OVERLAPS,
]


@pytest.mark.parametrize(
    "out,other,call", OVERLAPS, ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(OVERLAPS)]
)
def test_output_overlapping_an_input_is_refused(out, other, call):
    with pytest.raises(ValueError, match=rf"^{out}: expected memory that does not overlap {other}"):
        call()


def test_adjacent_buffers_are_not_an_overlap():
    buf = np.zeros(4 * 8 * 8 * 3 * 5, np.uint8)
    images = buf[: 4 * 8 * 8 * 3].reshape(4, 8, 8, 3)
    images[:] = 255
    out = buf[4 * 8 * 8 * 3 :].view(np.float32).reshape(4, 3, 8, 8)  # starts right after
    _C.normalize(images, out, MEAN, STD)
    np.testing.assert_allclose(out, (1.0 - 0.5) / 0.25)


@pytest.mark.skipif(CUDA_BUILD, reason="made-up device pointers must not reach a real kernel")
def test_cuda_entry_points_check_their_arguments_in_every_build():
    with pytest.raises(RuntimeError, match="built without CUDA"):
        _C.normalize_cuda(4096, 1 << 20, 1, 8, 8, 3, MEAN, STD, False, False, 0)
    with pytest.raises(RuntimeError, match="built without CUDA"):
        _C.knn_classify_cuda(4096, 1 << 20, 1 << 24, 1 << 28, 2, 5, 4, 2, False, 3, 0.1, 0)
    with pytest.raises(ValueError, match=r"^images\[0\]: expected a non-empty image with sides"):
        _C.augment_apply_cuda(
            [4096],
            [1 << 40],
            [8],
            3,
            _params(1),
            1 << 50,
            1,
            8,
            8,
            MEAN,
            STD,
            False,
            False,
            True,
            0,
        )
    with pytest.raises(ValueError, match=r"^k: expected k <= 2048 on CUDA"):
        _C.cosine_topk_cuda(4096, 1 << 20, 1 << 24, 1 << 28, 2, 5000, 4, 2049, False, 0)
    with pytest.raises(ValueError, match=r"^bank_labels: expected a pointer to"):
        _C.knn_classify_cuda(4096, 1 << 20, 2**64 - 8, 1 << 28, 2, 5, 4, 2, False, 3, 0.1, 0)


# ----------------------------------------------------------------------------------------------
# What a kernel indexes with cannot change after validation
# ----------------------------------------------------------------------------------------------
_REWRITER = """
    import threading
    import numpy as np
    from pyxfer import _C

    def race(call, target, good, bad, calls=20):
        # Each call's checks see `good`; then, while the kernel runs with the GIL released,
        # another thread writes `bad` into `target` (it gets the GIL as soon as it is released).
        calling, written, stop = threading.Event(), threading.Event(), threading.Event()

        def rewrite():
            while not stop.is_set():
                if calling.wait(0.05):
                    calling.clear()
                    target[:] = bad
                    written.set()

        t = threading.Thread(target=rewrite)
        t.start()
        done = 0
        try:
            for _ in range(calls):
                target[:] = good
                calling.set()
                try:
                    call()
                    done += 1
                except ValueError:  # the checks saw `bad`: refused, which is fine too
                    pass
                assert written.wait(10)
                written.clear()
        finally:
            stop.set()
            t.join()
        print("calls", done)
"""


def test_labels_rewritten_during_knn_cannot_write_outside_the_scores(tmp_path):
    out = _run_isolated(
        _REWRITER
        + """
    rng = np.random.default_rng(0)
    q = rng.standard_normal((256, 32)).astype(np.float32)
    b = rng.standard_normal((4096, 32)).astype(np.float32)
    labels = np.zeros(4096, np.int64)
    race(lambda: _C.knn_classify(q, b, labels, 10, 0.1, 4, 0, "auto", 1), labels, 0, 1 << 40)
    """,
        tmp_path,
    )
    assert "calls" in out


def test_params_rewritten_during_apply_cannot_move_the_crop(tmp_path):
    out = _run_isolated(
        _REWRITER
        + """
    from pyxfer.ops import augment as aug

    images = np.zeros((64, 32, 32, 3), np.uint8)
    params = aug.sample_params("simclr", [(32, 32)] * 64, size=32)[::2].copy()
    out = np.empty((64, 3, 32, 32), np.float32)
    top = params[:, :1]  # the crop's top row
    good = top.copy()
    race(
        lambda: _C.augment_apply(images, params, out, 1, [0.5] * 3, [0.25] * 3, False, True, 1),
        top, good, 1e7,
    )
    """,
        tmp_path,
    )
    assert "calls" in out


# ----------------------------------------------------------------------------------------------
# Integer bounds; nothing non-finite
# ----------------------------------------------------------------------------------------------
def test_crop_box_is_checked_in_integers_above_2_pow_24():
    # 16777219 rounds to 16777220 in float32: a crop of that height passed a float32 check and
    # read one row past the image.
    height = 2**24 + 3
    image = np.zeros((1, height, 1, 1), np.uint8)
    row = _params(1, 16, 1)
    row[0, aug.COL["top"]], row[0, aug.COL["crop_h"]] = 0, 2**24 + 4
    out = np.empty((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"^params\[0\]: expected an integer crop box inside"):
        _C.augment_apply(image, row, out, 1, [0.5], [0.25])
    row[0, aug.COL["top"]], row[0, aug.COL["crop_h"]] = 4, 2**24  # 4 + 2^24 > 2^24 + 3
    with pytest.raises(ValueError, match=r"^params\[0\]: expected an integer crop box inside"):
        _C.augment_apply(image, row, out, 1, [0.5], [0.25])


@pytest.mark.parametrize(
    "key,value",
    [
        ("brightness", 1e300),  # factor 1 + 1e300 is inf in float32
        ("saturation", 1e39),
        ("sigma_max", 1e300),
        ("sigma_min", 1e300),
        ("blur_kernel", 3.5),  # used to be truncated to 3
        ("crop_mode", 0.5),
        ("hue", "0.1"),  # used to surface as a RuntimeError of the argument conversion
    ],
)
def test_sample_rejects_settings_that_make_nonfinite_or_wrong_params(key, value):
    cfg = {key: value, "jitter_p": 1.0, "blur_p": 1.0}
    one = np.array([16])
    with pytest.raises(ValueError, match=rf"^configs\[0\]\['{key}'\]: expected a"):
        _C.augment_sample([cfg], one, one, np.array([0]), 0, 0)


def test_sample_keeps_large_but_finite_settings_finite():
    cfg = {
        "brightness": 1e30,
        "contrast": 1e30,
        "saturation": 1e30,
        "sigma_min": 1e30,
        "sigma_max": 1e30,
        "jitter_p": 1.0,
        "blur_p": 1.0,
    }
    sizes = np.full(64, 16)
    p = _C.augment_sample([cfg], sizes, sizes, np.arange(64), 0, 0)
    assert np.isfinite(p).all()


@pytest.mark.parametrize(
    "name,mean,std",
    [
        ("mean", [1e300] * 3, STD),  # inf in float32
        ("std", MEAN, [1e-300] * 3),  # 0 in float32
        ("std", MEAN, [1e-39] * 3),  # 1 / std is inf in float32
        ("std", MEAN, [0.25, float("nan"), 0.25]),
    ],
)
def test_normalisation_must_be_finite_in_float32(name, mean, std):
    images = np.zeros((1, 4, 4, 3), np.uint8)
    out = np.empty((1, 3, 4, 4), np.float32)
    calls = [
        lambda: _C.normalize(images, out, mean, std),
        lambda: _C.preprocess(images, out, 0, mean, std),
        lambda: _C.augment_apply(images, _params(1, 4, 4), out, 1, mean, std),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=rf"^{name}: expected finite"):
            call()


@pytest.mark.parametrize(
    "name,call",
    [
        # 1e-300 is 0 in float32: a vote weight exp(0 / 0) was NaN
        ("temperature", lambda q: _C.knn_classify(q, q, np.zeros(4, np.int64), 1, 1e-300, 2)),
        ("temperature", lambda q: _C.knn_classify(q, q, np.zeros(4, np.int64), 1, 1e300, 2)),
        ("p", lambda q: _C.pool_normalize(q.reshape(4, 2, 2, 1), "gem", 1e300)),
        ("eps", lambda q: _C.pool_normalize(q.reshape(4, 2, 2, 1), "gem", 3.0, 1e-300)),
        # 1 / 1e-40 is inf in float32: a zero row was normalised to 0 * inf = NaN
        (
            "l2_eps",
            lambda q: _C.pool_normalize(q.reshape(4, 2, 2, 1), "avg", 3.0, 1e-6, True, 1e-40),
        ),
    ],
)
def test_scalar_parameters_must_be_positive_and_finite_in_float32(name, call):
    with pytest.raises(ValueError, match=rf"^{name}: expected a finite value > 0"):
        call(np.eye(4, dtype=np.float32))


def test_non_native_byte_order_is_refused():
    images = np.zeros((1, 4, 4, 3), np.uint8)
    swapped = np.empty((1, 3, 4, 4), np.dtype(">f4" if sys.byteorder == "little" else "<f4"))
    with pytest.raises(ValueError, match=r"^out: expected dtype float32 or float16, received"):
        _C.normalize(images, swapped, MEAN, STD)
    q = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^bank: expected dtype float32 or float16, received"):
        _C.cosine_topk(q, q.astype(swapped.dtype), 1)


def test_resize_and_crop_sizes_cannot_overflow():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    out = np.empty((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^resize: expected 0 \(no resize\) or a size in"):
        _C.preprocess(images, out, 2**62, MEAN, STD)
    with pytest.raises(ValueError, match=r"^num_classes: expected a buffer of at most 2"):
        q = np.ones((4, 8), np.float32)
        _C.knn_classify(q, q, np.zeros(4, np.int64), 1, 0.1, 2**62)
