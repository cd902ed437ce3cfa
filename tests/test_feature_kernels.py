"""Feature kernels (pool_normalize, cosine_topk, knn_classify) against pure-torch references."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxfer import _C
from pyxfer.ops import cosine_topk, knn_classify, pool_normalize

SIMD = _C.simd_paths()


# ----------------------------------------------------------------------------------------------
# Pure-torch references (the oracle)
# ----------------------------------------------------------------------------------------------
def _reference_pool(x: torch.Tensor, mode: str, p: float, eps: float, l2: bool) -> torch.Tensor:
    x = x.double()
    if mode == "avg":
        out = x.mean(dim=(2, 3))
    else:
        out = x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
    if l2:
        out = torch.nn.functional.normalize(out, dim=1, eps=1e-12)
    return out.float()


def _reference_sims(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    return queries.double() @ bank.double().T  # (M, N)


def _reference_knn(
    queries: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, k: int, t: float, c: int
) -> torch.Tensor:
    # DINO's eval_knn: top-k similarities, weights exp(s / T), summed per class.
    sims, idx = _reference_sims(queries, bank).topk(k, dim=1)
    weights = (sims / t).exp()  # (M, k)
    onehot = torch.nn.functional.one_hot(labels[idx], c).double()  # (M, k, C)
    return (onehot * weights[..., None]).sum(1).float()


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check_topk(queries, bank, values, indices, k, tol):
    """Values match the reference; an index differs only where the similarities (near-)tie."""
    ref = _reference_sims(torch.from_numpy(queries), torch.from_numpy(bank.astype(np.float32)))
    ref_v, ref_i = ref.topk(k, dim=1)
    np.testing.assert_allclose(values, ref_v.numpy(), atol=tol, rtol=0)
    # the returned value is the similarity of the returned index
    mine = torch.gather(ref, 1, torch.from_numpy(indices)).numpy()
    np.testing.assert_allclose(values, mine, atol=tol, rtol=0)
    differ = indices != ref_i.numpy()
    assert np.all(np.abs(mine - ref_v.numpy())[differ] <= tol)
    assert all(len(set(row)) == k for row in indices.tolist())
    assert np.all(np.diff(values, axis=1) <= 0)


# ----------------------------------------------------------------------------------------------
# pool_normalize
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,p", [("avg", 3.0), ("gem", 3.0), ("gem", 2.5), ("gem", 1.0)])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pool_matches_reference(mode, p, l2, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 17, 5, 7)).astype(dtype)
    out = pool_normalize(x, mode, p=p, l2=l2)
    ref = _reference_pool(torch.from_numpy(x.astype(np.float32)), mode, p, 1e-6, l2)
    assert out.dtype == np.float32 and out.shape == (3, 17)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_pool_threads_and_tensor_io():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((9, 33, 4, 4), dtype=np.float32))
    outs = [pool_normalize(x, "gem", l2=True, threads=t) for t in (1, 2, 3)]
    assert isinstance(outs[0], torch.Tensor)
    for o in outs[1:]:
        assert torch.equal(o, outs[0])
    np.testing.assert_allclose(
        outs[0].numpy(), _reference_pool(x, "gem", 3.0, 1e-6, True).numpy(), rtol=1e-5, atol=1e-6
    )


def test_pool_l2_is_eps_safe():
    out = pool_normalize(np.zeros((2, 4, 3, 3), np.float32), "avg", l2=True)
    assert np.all(out == 0) and np.all(np.isfinite(out))


# ----------------------------------------------------------------------------------------------
# cosine_topk
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("m,n,d,k", [(37, 301, 67, 10), (5, 64, 128, 64), (70, 500, 16, 1)])
def test_topk_matches_reference(simd, half, m, n, d, k):
    rng = np.random.default_rng(m * n + d)
    q, b = _unit(rng, m, d), _unit(rng, n, d)
    if half:
        b = b.astype(np.float16)
    values, indices = cosine_topk(q, b, k, simd=simd, threads=2)
    assert values.dtype == np.float32 and indices.dtype == np.int64
    assert values.shape == indices.shape == (m, k)
    _check_topk(q, b, values, indices, k, tol=1e-4 if half else 1e-5)


@pytest.mark.parametrize("simd", SIMD)
def test_topk_independent_of_threads_and_block(simd):
    rng = np.random.default_rng(2)
    q, b = _unit(rng, 53, 40), _unit(rng, 211, 40)
    base_v, base_i = cosine_topk(q, b, 17, simd=simd, threads=1)
    for threads in (2, 3):
        for block in (0, 1, 7, 64, 211, 1000):
            v, i = cosine_topk(q, b, 17, simd=simd, threads=threads, block=block)
            assert np.array_equal(v, base_v) and np.array_equal(i, base_i), (threads, block)


def test_topk_few_queries_split_bank_same_result():
    # Fewer query blocks than threads: the bank is split across threads and merged.
    rng = np.random.default_rng(12)
    distinct = _unit(rng, 50, 16)
    b = distinct[rng.integers(0, 50, size=7000)]  # exact ties straddle the shard boundaries
    q = _unit(rng, 2, 16)
    base_v, base_i = cosine_topk(q, b, 40, threads=1)
    _check_topk(q, b, base_v, base_i, 40, tol=1e-5)
    labels = rng.integers(0, 3, size=7000)
    base_s = knn_classify(q, b, labels, k=40, threads=1)
    for threads in (2, 3, 4):
        v, i = cosine_topk(q, b, 40, threads=threads, block=33)
        assert np.array_equal(v, base_v) and np.array_equal(i, base_i), threads
        assert np.array_equal(knn_classify(q, b, labels, k=40, threads=threads), base_s)


@pytest.mark.parametrize("simd", SIMD)
def test_topk_ties_go_to_the_lower_index(simd):
    rng = np.random.default_rng(3)
    distinct = _unit(rng, 5, 24)
    b = distinct[rng.integers(0, 5, size=90)]  # many exactly equal similarities
    q = _unit(rng, 11, 24)
    full_v, full_i = cosine_topk(q, b, 90, simd=simd, block=13, threads=3)
    for row_v, row_i in zip(full_v, full_i, strict=True):
        order = np.lexsort((row_i, -row_v))  # value descending, then index ascending
        assert np.array_equal(order, np.arange(90))
    for k in (1, 7, 30):
        v, i = cosine_topk(q, b, k, simd=simd, block=4, threads=2)
        assert np.array_equal(i, full_i[:, :k]) and np.array_equal(v, full_v[:, :k])


@pytest.mark.parametrize("half", [False, True])
def test_topk_simd_paths_agree_bit_for_bit(half):
    # Every path computes a similarity as the same fused multiply-add chain over the dimensions,
    # so values, indices and kNN scores are identical (odd sizes: partial tiles and vectors).
    rng = np.random.default_rng(4)
    q, b = _unit(rng, 45, 99), _unit(rng, 151, 99)
    if half:
        b = b.astype(np.float16)
    labels = rng.integers(0, 7, size=151)
    ref_v, ref_i = cosine_topk(q, b, 12, simd="scalar")
    ref_s = knn_classify(q, b, labels, k=12, simd="scalar")
    _check_topk(q, b, ref_v, ref_i, 12, tol=1e-4 if half else 1e-5)
    for simd in SIMD:
        v, i = cosine_topk(q, b, 12, simd=simd)
        assert np.array_equal(v, ref_v) and np.array_equal(i, ref_i), simd
        assert np.array_equal(knn_classify(q, b, labels, k=12, simd=simd), ref_s), simd
        # a few queries alone (the half-width tiles) score as they do among many
        v, i = cosine_topk(q[:3], b, 12, simd=simd, threads=1)
        assert np.array_equal(v, ref_v[:3]) and np.array_equal(i, ref_i[:3]), simd


def test_simd_env_override(monkeypatch):
    assert _C.simd_best() in SIMD and "scalar" in SIMD
    rng = np.random.default_rng(13)
    q, b = _unit(rng, 6, 37), _unit(rng, 50, 37)
    scalar = cosine_topk(q, b, 4, simd="scalar")
    for value in ("scalar", "baseline"):  # the augmentation kernel's name for it too
        monkeypatch.setenv("PYXFER_SIMD", value)
        forced = cosine_topk(q, b, 4)
        assert all(np.array_equal(x, y) for x, y in zip(scalar, forced, strict=True))
    best = cosine_topk(q, b, 4, simd=_C.simd_best())
    monkeypatch.setenv("PYXFER_SIMD", "")  # empty: unset, as `export PYXFER_SIMD=` leaves it
    assert all(np.array_equal(x, y) for x, y in zip(best, cosine_topk(q, b, 4), strict=True))
    monkeypatch.setenv("PYXFER_SIMD", "sse9")
    with pytest.raises(ValueError, match=r"^simd"):
        cosine_topk(q, b, 4)


def test_topk_torch_and_normalize():
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(9, 32, generator=gen) * 3
    b = torch.randn(80, 32, generator=gen) * 0.5
    v, i = cosine_topk(q, b, 5, normalize=True)
    assert isinstance(v, torch.Tensor) and i.dtype == torch.int64
    ref = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    ref_v, ref_i = ref.topk(5, dim=1)
    torch.testing.assert_close(v, ref_v, atol=1e-5, rtol=0)
    assert torch.equal(i, ref_i)


def test_topk_empty_queries():
    v, i = cosine_topk(np.zeros((0, 8), np.float32), np.eye(8, dtype=np.float32), 3)
    assert v.shape == i.shape == (0, 3)


# ----------------------------------------------------------------------------------------------
# knn_classify
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("k,t", [(20, 0.07), (50, 0.5), (1, 1.0)])
def test_knn_matches_reference(half, k, t):
    rng = np.random.default_rng(6)
    q, b = _unit(rng, 31, 48), _unit(rng, 260, 48)
    if half:
        b = b.astype(np.float16)
    labels = rng.integers(0, 7, size=260)
    scores = knn_classify(q, b, labels, k=k, temperature=t, num_classes=9, threads=2)
    ref = _reference_knn(
        torch.from_numpy(q),
        torch.from_numpy(b.astype(np.float32)),
        torch.from_numpy(labels),
        k,
        t,
        9,
    )
    assert scores.shape == (31, 9) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref.numpy(), rtol=1e-3 if half else 2e-5, atol=1e-6)


def test_knn_threads_block_identical_and_predictions():
    rng = np.random.default_rng(7)
    q, b = _unit(rng, 45, 33), _unit(rng, 140, 33)
    labels = torch.from_numpy(rng.integers(0, 4, size=140))
    base, pred = knn_classify(
        torch.from_numpy(q),
        torch.from_numpy(b),
        labels,
        k=25,
        threads=1,
        return_predictions=True,
    )
    assert isinstance(base, torch.Tensor) and torch.equal(pred, base.argmax(1))
    assert base.shape == (45, 4)  # num_classes inferred from the labels
    for threads, block in ((2, 0), (3, 5), (2, 140)):
        s = knn_classify(
            torch.from_numpy(q), torch.from_numpy(b), labels, k=25, threads=threads, block=block
        )
        assert torch.equal(s, base)


def test_knn_separable_problem_is_accurate():
    rng = np.random.default_rng(8)
    classes, d = 6, 32
    centres = _unit(rng, classes, d) * 4
    train_y = rng.integers(0, classes, 600)
    test_y = rng.integers(0, classes, 200)
    train = centres[train_y] + rng.standard_normal((600, d)).astype(np.float32)
    test = centres[test_y] + rng.standard_normal((200, d)).astype(np.float32)
    _, pred = knn_classify(test, train, train_y, k=20, normalize=True, return_predictions=True)
    assert (pred == test_y).mean() > 0.95


# ----------------------------------------------------------------------------------------------
# Bad input: a clear ValueError naming the argument, never a crash
# ----------------------------------------------------------------------------------------------
_Q = np.ones((4, 8), np.float32)
_B = np.ones((10, 8), np.float32)
_L = np.zeros(10, np.int64)
_NAN = _B.copy()
_NAN[3, 2] = np.nan
_INF16 = _B.astype(np.float16)
_INF16[0, 0] = np.inf

BAD = [
    ("bank", lambda: cosine_topk(_Q, np.ones((10, 9), np.float32), 3)),
    ("k", lambda: cosine_topk(_Q, _B, 11)),
    ("k", lambda: cosine_topk(_Q, _B, 0)),
    ("k", lambda: cosine_topk(_Q, _B, -1)),
    ("bank", lambda: cosine_topk(_Q, np.ones((0, 8), np.float32), 1)),
    ("bank", lambda: cosine_topk(_Q, _NAN, 3)),
    ("bank", lambda: cosine_topk(_Q, _INF16, 3)),
    ("queries", lambda: cosine_topk(_Q * np.inf, _B, 3)),
    ("queries", lambda: cosine_topk(_Q.astype(np.float64), _B, 3)),
    ("queries", lambda: cosine_topk(_Q.astype(np.float16), _B, 3)),
    ("bank", lambda: cosine_topk(_Q, _B.astype(np.int32), 3)),
    ("queries", lambda: cosine_topk(_Q[None], _B, 3)),
    ("queries", lambda: cosine_topk(torch.ones(4, 8, dtype=torch.bfloat16), _B, 3)),
    ("queries", lambda: cosine_topk([[1.0]], _B, 3)),
    ("block", lambda: cosine_topk(_Q, _B, 3, block=-1)),
    ("simd", lambda: cosine_topk(_Q, _B, 3, simd="sse9")),
    ("threads", lambda: cosine_topk(_Q, _B, 3, threads=-2)),
    ("queries", lambda: _C.cosine_topk(_Q[:, ::2], _B[:, :4], 3)),
    ("bank_labels", lambda: knn_classify(_Q, _B, np.full(10, 5), k=3, num_classes=5)),
    ("bank_labels", lambda: knn_classify(_Q, _B, np.full(10, -1), k=3, num_classes=5)),
    ("bank_labels", lambda: knn_classify(_Q, _B, np.zeros(9, np.int64), k=3)),
    ("bank_labels", lambda: knn_classify(_Q, _B, np.zeros(10, np.float32), k=3)),
    ("bank_labels", lambda: _C.knn_classify(_Q, _B, _L.astype(np.int32), 3, 0.1, 2)),
    ("temperature", lambda: knn_classify(_Q, _B, _L, k=3, temperature=0.0)),
    ("temperature", lambda: knn_classify(_Q, _B, _L, k=3, temperature=float("nan"))),
    ("num_classes", lambda: knn_classify(_Q, _B, _L, k=3, num_classes=0)),
    ("k", lambda: knn_classify(_Q, _B, _L, k=200)),
    ("bank", lambda: knn_classify(_Q, _NAN, _L, k=3)),
    ("x", lambda: pool_normalize(np.ones((2, 3, 4), np.float32))),
    ("x", lambda: pool_normalize(np.ones((2, 3, 0, 4), np.float32))),
    ("x", lambda: pool_normalize(np.ones((2, 3, 4, 4), np.int64))),
    ("mode", lambda: pool_normalize(np.ones((2, 3, 4, 4), np.float32), "max")),
    ("p", lambda: pool_normalize(np.ones((2, 3, 4, 4), np.float32), "gem", p=0.0)),
    ("eps", lambda: pool_normalize(np.ones((2, 3, 4, 4), np.float32), "gem", eps=-1.0)),
    ("x", lambda: _C.pool_normalize(np.ones((2, 3, 4, 4), np.float32)[..., ::2])),
]


@pytest.mark.parametrize("name,call", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_input_raises_value_error(name, call):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


_DTYPES = [np.float32, np.float16, np.float64, np.int64, np.int32, np.uint8]


@st.composite
def _arrays(draw, max_ndim=4):
    ndim = draw(st.integers(0, max_ndim))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(_DTYPES))
    arr = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape)
    if draw(st.booleans()) and arr.size:
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 1e6]))
    with np.errstate(invalid="ignore", over="ignore"):
        arr = arr.astype(dtype)
    if draw(st.booleans()) and ndim >= 1 and shape[-1] > 1:
        arr = arr[..., ::2]  # non-contiguous
    return arr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=_arrays(3),
    b=_arrays(3),
    labels=_arrays(2),
    x=_arrays(5),
    k=st.integers(-2, 8),
    t=st.sampled_from([0.07, 0.0, -1.0, float("inf")]),
    c=st.integers(-1, 5),
    block=st.integers(-1, 9),
    simd=st.sampled_from([*SIMD, "bogus"]),
    threads=st.integers(-1, 3),
)
def test_bindings_fuzz_only_value_error(q, b, labels, x, k, t, c, block, simd, threads):
    calls = [
        lambda: _C.cosine_topk(q, b, k, block, simd, threads),
        lambda: _C.knn_classify(q, b, labels, k, t, c, block, simd, threads),
        lambda: _C.pool_normalize(x, "gem" if k % 2 else "avg", 3.0, 1e-6, k > 3, 1e-12, threads),
    ]
    for call in calls:
        with contextlib.suppress(ValueError):
            call()


# ----------------------------------------------------------------------------------------------
# CUDA: same results as the CPU kernels
# ----------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("half", [False, True])
def test_cuda_pool_matches_cpu(half):
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((4, 70, 7, 7)).astype(np.float32))
    if half:
        x = x.half()
    for mode in ("avg", "gem"):
        cpu = pool_normalize(x, mode, l2=True)
        gpu = pool_normalize(x.cuda(), mode, l2=True)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("m,n,d,k", [(37, 3001, 67, 10), (300, 2500, 128, 200), (3, 50, 8, 50)])
def test_cuda_topk_and_knn_match_cpu(half, m, n, d, k):
    rng = np.random.default_rng(10)
    q, b = torch.from_numpy(_unit(rng, m, d)), torch.from_numpy(_unit(rng, n, d))
    if half:
        b = b.half()
    labels = torch.from_numpy(rng.integers(0, 5, size=n))
    v_cpu, _ = cosine_topk(q, b, k)
    v_gpu, i_gpu = cosine_topk(q.cuda(), b.cuda(), k)
    assert v_gpu.is_cuda and i_gpu.dtype == torch.int64
    torch.testing.assert_close(v_gpu.cpu(), v_cpu, atol=1e-5, rtol=0)
    _check_topk(q.numpy(), b.numpy(), v_gpu.cpu().numpy(), i_gpu.cpu().numpy(), k, 1e-4)
    s_cpu = knn_classify(q, b, labels, k=k, num_classes=6)
    s_gpu = knn_classify(q.cuda(), b.cuda(), labels.cuda(), k=k, num_classes=6)
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=1e-3, atol=1e-5)


@pytest.mark.cuda
def test_cuda_bad_input_raises_value_error():
    q = torch.ones(4, 8, device="cuda")
    with pytest.raises(ValueError, match=r"^k"):
        cosine_topk(q, q, 5)
    with pytest.raises(ValueError, match=r"^bank_labels"):
        knn_classify(q, q, torch.full((4,), 3, device="cuda"), k=2, num_classes=3)
    with pytest.raises(ValueError, match=r"^queries"):
        cosine_topk(q * float("nan"), q, 2)
