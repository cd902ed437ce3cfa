"""The extension's persistent thread pool (``parallel_for``): results, errors, nesting, fork."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest

from pyxfer import _C
from pyxfer.ops import augment as A


def _expected(n: int, nested: bool = False) -> list[int]:
    return [i * i + (28 if nested else 0) for i in range(n)]


@pytest.mark.parametrize("threads", [1, 2, 3, 8, 0])
@pytest.mark.parametrize("grain", [1, 7, 1000])
def test_every_item_once(threads, grain):
    for n in (0, 1, 5, 257):
        assert _C._parallel_check(n, threads, grain) == _expected(n)


def test_many_calls_with_varying_thread_counts():
    for k in range(300):
        threads = (1, 2, 8, 3)[k % 4]
        assert _C._parallel_check(40 + k % 13, threads) == _expected(40 + k % 13)


def test_nested_parallel_for_runs_inline():
    for threads in (2, 4, 8):
        assert _C._parallel_check(33, threads, nested=True) == _expected(33, nested=True)


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_exceptions_propagate_and_pool_survives(threads):
    for fail_at in (0, 17, 99):
        with pytest.raises(RuntimeError, match=f"failure at item {fail_at}"):
            _C._parallel_check(100, threads, 1, fail_at)
    assert _C._parallel_check(100, threads) == _expected(100)


def test_concurrent_callers_share_the_pool():
    """Callers that find the pool busy run on threads of their own: same results, same errors."""
    results: list[bool] = []

    def call() -> None:
        ok = True
        for k in range(30):
            ok &= _C._parallel_check(64, 4) == _expected(64)
            if k % 5 == 0:
                try:
                    _C._parallel_check(64, 4, 1, 33)
                    ok = False
                except RuntimeError as e:
                    ok &= "failure at item 33" in str(e)
        results.append(ok)

    workers = [threading.Thread(target=call) for _ in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert results == [True] * 4


def _child(q) -> None:
    q.put(_C._parallel_check(50, 4) == _expected(50))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_forked_child_gets_a_working_pool():
    assert _C._parallel_check(50, 4) == _expected(50)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 0
    assert q.get(timeout=5) is True
    assert _C._parallel_check(50, 4) == _expected(50)


def test_augment_is_identical_for_any_thread_count_over_many_calls():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(9, 30, 41, 3), dtype=np.uint8)
    spec = A.ViewSpec(size=(16, 16), jitter_p=1.0, blur_p=0.5, blur_kernel=5)
    params = A.sample_params([spec, spec], [(30, 41)] * 9, seed=2)
    want = A.apply(x, params, size=16, threads=1)
    out = np.empty_like(want)
    for k in range(20):
        got = A.apply(x, params, out, threads=(2, 8, 3, 0)[k % 4])
        np.testing.assert_array_equal(got, want)
