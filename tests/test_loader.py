"""FusedLoader: sharding, order, view determinism, resume, thread lifetime, torch Datasets."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from pyxfer.data import ImageStore
from pyxfer.engine.loader import FusedLoader
from pyxfer.ops.augment import ViewSpec, augment
from pyxfer.ops.preprocess import preprocess


def _store(n: int = 103, size: int = 12, channels: int = 1, seed: int = 0) -> ImageStore:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return ImageStore(images, np.arange(n) % 5)


def _indices(loader: FusedLoader) -> list[np.ndarray]:
    with loader:
        return [b.indices.numpy() for b in loader]


@pytest.mark.parametrize("drop_last", [True, False])
def test_shards_are_disjoint_equal_length_and_cover(drop_last: bool) -> None:
    store, world = _store(103), 3
    shards = [
        _indices(
            FusedLoader(
                store, 8, None, rank=r, world_size=world, drop_last=drop_last, threads=1, seed=3
            )
        )
        for r in range(world)
    ]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1  # every rank the same number of batches
    assert lengths.pop() == len(
        FusedLoader(store, 8, None, rank=0, world_size=world, drop_last=drop_last)
    )
    flat = [np.concatenate(s) for s in shards]
    if drop_last:
        everything = np.concatenate(flat)
        assert len(np.unique(everything)) == len(everything)  # disjoint
        assert all(len(f) == (103 // world) // 8 * 8 for f in flat)
    else:
        # padded by wrapping: all images appear, the 2 padding images are repeats
        everything = np.concatenate(flat)
        assert set(everything.tolist()) == set(range(103))
        assert len(everything) == 105
        assert {len(f) for f in flat} == {35}


def test_epoch_reshuffle_is_deterministic() -> None:
    store = _store(50)
    a = FusedLoader(store, 10, None, seed=7, threads=1)
    b = FusedLoader(store, 10, None, seed=7, threads=1)
    e0a, e1a = np.concatenate(_indices(a)), np.concatenate(_indices(a))  # epochs 0 then 1
    e0b = np.concatenate(_indices(b))
    assert a.epoch == 2
    np.testing.assert_array_equal(e0a, e0b)
    assert not np.array_equal(e0a, e1a)
    assert sorted(e0a.tolist()) == sorted(e1a.tolist()) == list(range(50))
    b.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate(_indices(b)), e1a)
    other = FusedLoader(store, 10, None, seed=8, threads=1)
    assert not np.array_equal(np.concatenate(_indices(other)), e0a)
    plain = FusedLoader(store, 10, None, shuffle=False, threads=1)
    np.testing.assert_array_equal(np.concatenate(_indices(plain)), np.arange(50))


def test_next_epoch_is_prefetched_without_changing_anything() -> None:
    store = _store(40, size=8, channels=1)
    loader = FusedLoader(store, 8, "simclr", seed=4, threads=1)
    before = threading.active_count()
    with loader:
        epochs = [[b.views[1] for b in loader] for _ in range(3)]  # one producer throughout
        assert threading.active_count() == before + 1  # already working on epoch 3
        loader.set_epoch(1)  # a jump discards the prefetched epoch
        again = [b.views[1] for b in loader]
    assert threading.active_count() == before
    for e in range(3):
        fresh = FusedLoader(store, 8, "simclr", seed=4, threads=1, epoch=e)
        with fresh:
            ref = [b.views[1] for b in fresh]
        assert all(torch.equal(x, y) for x, y in zip(epochs[e], ref, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(again, epochs[1], strict=True))


def test_dropping_the_loader_ends_the_thread() -> None:
    import gc

    before = threading.active_count()
    loader = FusedLoader(_store(40, size=8, channels=1), 8, "simclr", threads=1)
    list(loader)  # leaves a producer prefetching epoch 1
    del loader
    gc.collect()
    for t in threading.enumerate():  # the thread may be finishing the batch it was making
        if t.name == "pyxfer-loader":
            t.join(timeout=10)
    assert threading.active_count() == before


def _views_by_index(loader: FusedLoader) -> dict[int, list[torch.Tensor]]:
    out = {}
    with loader:
        for batch in loader:
            for row, i in enumerate(batch.indices.tolist()):
                out[i] = [v[row] for v in batch.views]
    return out


def test_views_depend_only_on_seed_epoch_index() -> None:
    store = _store(60, size=16, channels=3)
    a = _views_by_index(FusedLoader(store, 8, "simclr", size=12, seed=5, threads=1))
    b = _views_by_index(FusedLoader(store, 5, "simclr", size=12, seed=5, threads=2, prefetch=1))
    common = set(a) & set(b)
    assert len(common) >= 50
    for i in common:
        for va, vb in zip(a[i], b[i], strict=True):
            assert torch.equal(va, vb)
    # two views of one image differ, and another epoch gives other views
    i = min(common)
    assert not torch.equal(a[i][0], a[i][1])
    loader = FusedLoader(store, 8, "simclr", size=12, seed=5, threads=1, epoch=1)
    c = _views_by_index(loader)
    assert not torch.equal(c[i][0], a[i][0])
    # and they are exactly the kernel's views for that (seed, epoch, index)
    ref = augment(store.images[[i]], "simclr", indices=[i], seed=5, epoch=1, size=12, threads=1)
    ref = torch.from_numpy(ref[0])
    assert torch.equal(c[i][0], ref[0]) and torch.equal(c[i][1], ref[1])


def test_multi_size_views_are_split_in_view_order() -> None:
    store = _store(12, size=20, channels=3)
    specs = [ViewSpec(size=(16, 16)), ViewSpec(size=(8, 8)), ViewSpec(size=(16, 16))]
    loader = FusedLoader(store, 4, specs, seed=1, threads=1, shuffle=False)
    with loader:
        batch = next(iter(loader))
    assert [tuple(v.shape) for v in batch.views] == [(4, 3, 16, 16), (4, 3, 8, 8), (4, 3, 16, 16)]
    big, small = augment(store.images[:4], specs, indices=np.arange(4), seed=1, size=16, threads=1)
    big, small = torch.from_numpy(big), torch.from_numpy(small)
    assert torch.equal(batch.views[0], big[0::2])  # image-major rows: image n -> 2n, 2n + 1
    assert torch.equal(batch.views[2], big[1::2])
    assert torch.equal(batch.views[1], small)
    assert all(v.is_contiguous() for v in batch.views)


def test_eval_views_are_the_preprocess_kernel() -> None:
    store = _store(10, size=12, channels=3)
    loader = FusedLoader(store, 4, None, size=8, shuffle=False, drop_last=False, threads=1)
    with loader:
        batches = list(loader)
    assert [len(b) for b in batches] == [4, 4, 2]
    got = torch.cat([b.views[0] for b in batches])
    ref = preprocess(store.images, 8, 8, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), threads=1)
    assert torch.equal(got, torch.from_numpy(ref))
    assert torch.equal(torch.cat([b.labels for b in batches]), torch.arange(10) % 5)


def test_input_spec_gives_size_and_normalisation() -> None:
    from pyxfer.backbone import InputSpec

    store = _store(8, size=12, channels=1)
    spec = InputSpec(1, 6, (0.5,), (0.25,))
    loader = FusedLoader(store, 4, None, input_spec=spec, shuffle=False, threads=1)
    with loader:
        x = next(iter(loader)).views[0]
    assert tuple(x.shape) == (4, 1, 6, 6)
    ref = preprocess(store.images[:4], 6, 6, (0.5,), (0.25,), threads=1)
    assert torch.equal(x, torch.from_numpy(ref))


def test_resume_mid_epoch_continues_identically() -> None:
    store = _store(64, size=12, channels=3)

    def make() -> FusedLoader:
        return FusedLoader(store, 6, "byol", size=10, seed=11, epoch=2, threads=1)

    full = make()
    with full:
        reference = list(full)
    first = make()
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    first.close()
    assert state == {"epoch": 2, "position": 4, "seed": 11}
    resumed = make()
    resumed.load_state_dict(state)
    with resumed:
        rest = list(resumed)
    assert len(rest) == len(reference) - 4
    for a, b in zip(rest, reference[4:], strict=True):
        assert torch.equal(a.indices, b.indices)
        assert all(torch.equal(x, y) for x, y in zip(a.views, b.views, strict=True))
    assert resumed.state_dict() == {"epoch": 3, "position": 0, "seed": 11}
    with pytest.raises(ValueError, match="seed"):
        FusedLoader(store, 6, "byol", size=10, seed=12).load_state_dict(state)


class _Images(torch.utils.data.Dataset):
    """uint8 HWC tensors with labels; raises at ``bad``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, bad: int = -1) -> None:
        self.images, self.labels, self.bad = images, labels, bad

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i == self.bad:
            raise RuntimeError(f"cannot read image {i}")
        return torch.from_numpy(self.images[i]), int(self.labels[i])


def test_torch_dataset_gives_the_same_batches_as_a_store() -> None:
    store = _store(30, size=12, channels=3)
    ds = _Images(store.images, store.labels)
    a = FusedLoader(store, 7, "simclr", size=10, seed=2, threads=1)
    b = FusedLoader(ds, 7, "simclr", size=10, seed=2, threads=1)
    with a, b:
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x.indices, y.indices) and torch.equal(x.labels, y.labels)
            assert all(torch.equal(u, v) for u, v in zip(x.views, y.views, strict=True))


def test_ragged_images() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(10, 14), (16, 9)] * 5]
    store = ImageStore(images, np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="size"):
        FusedLoader(store, 4, "simclr")
    loader = FusedLoader(store, 4, "simclr", size=8, seed=0, threads=1)
    with loader:
        batches = list(loader)
    assert len(batches) == 2 and tuple(batches[0].views[1].shape) == (4, 3, 8, 8)
    i = int(batches[0].indices[0])
    ref = augment([images[i]], "simclr", indices=[i], seed=0, size=8, threads=1)[0]
    assert torch.equal(batches[0].views[0][0], torch.from_numpy(ref[0]))


def test_producer_error_is_raised_in_the_consumer() -> None:
    store = _store(40, size=8, channels=1)
    before = threading.active_count()
    loader = FusedLoader(_Images(store.images, store.labels, bad=13), 4, "simclr", shuffle=False)
    with pytest.raises(RuntimeError, match="cannot read image 13"):
        for _ in loader:
            pass
    assert loader.position == 3  # the batches before the bad one were delivered
    assert threading.active_count() == before


def test_no_thread_left_after_break_close_or_error() -> None:
    store = _store(80, size=8, channels=1)
    before = threading.active_count()
    loader = FusedLoader(store, 4, "simclr", prefetch=2, threads=1)
    for _ in loader:
        break
    assert threading.active_count() == before
    it = iter(loader)
    next(it)
    assert threading.active_count() == before + 1
    loader.close()
    assert threading.active_count() == before
    with pytest.raises(KeyError), loader:
        for _ in loader:
            raise KeyError("consumer failed")
    assert threading.active_count() == before
    assert loader.wait_time >= 0.0


class _Slow(_Images):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        time.sleep(0.05)
        return super().__getitem__(i)


def test_starved_counts_batches_that_were_not_ready() -> None:
    store = _store(6, size=8, channels=1)
    loader = FusedLoader(_Slow(store.images, store.labels), 2, "simclr", shuffle=False)
    with loader:
        batches = list(loader)  # the loop asks at once; each batch takes >= 0.1 s to make
    assert len(batches) == 3 and loader.starved >= 2
    assert loader.wait_time > 0.0


def test_len_and_bad_arguments() -> None:
    store = _store(50)
    assert len(FusedLoader(store, 8, None)) == 6
    assert len(FusedLoader(store, 8, None, drop_last=False)) == 7
    assert len(FusedLoader(store, 8, None, rank=1, world_size=4)) == 1
    with pytest.raises(ValueError, match="batch_size"):
        FusedLoader(store, 0, None)
    with pytest.raises(ValueError, match="rank"):
        FusedLoader(store, 8, None, rank=2, world_size=2)
    with pytest.raises(ValueError, match="mean/std"):
        FusedLoader(store, 8, None, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="views"):
        FusedLoader(store, 8, [])
    with pytest.raises(ValueError, match="dataset"):
        FusedLoader(object(), 8, None)


# ----------------------------------------------------------------------------------------------
# Shutdown in the middle of an epoch: at exit, on close(), on garbage collection, on Ctrl-C.
# Each case runs in a fresh interpreter. Its items are computed by a compiled kernel that releases
# the GIL (as a decoding dataset would), so the producer thread is almost always inside the kernel
# when the script ends: a thread left running there used to abort the interpreter at exit
# ("terminate called without an active exception", status 134).
# ----------------------------------------------------------------------------------------------
_SHUTDOWN_PRELUDE = """
import gc, os, signal, threading
import numpy as np
from pyxfer import _C
from pyxfer.engine.loader import FusedLoader

BANK = np.random.default_rng(0).standard_normal((40000, 64)).astype(np.float32)
QUERY = BANK[:1].copy()


class Computed:
    def __len__(self):
        return 4096

    def __getitem__(self, i):
        _C.cosine_topk(QUERY, BANK, 1, 0, "auto", 1)  # releases the GIL for a few milliseconds
        return np.full((8, 8, 1), i % 256, np.uint8), i % 4


def loader_threads():
    return [t for t in threading.enumerate() if t.name == "pyxfer-loader"]


loader = FusedLoader(Computed(), 4, "simclr", size=8, threads=1, prefetch=1000)
"""

_SHUTDOWN_CASES = {
    # a live iterator at the end of the script (the report)
    "exit": ("it = iter(loader)\nnext(it)\nprint('ended')", 0),
    "close": (
        "it = iter(loader)\nnext(it)\nloader.close()\nassert not loader_threads()\nprint('ended')",
        0,
    ),
    "gc": (
        "it = iter(loader)\nnext(it)\ndel it, loader\ngc.collect()\n"
        "assert not loader_threads()\nprint('ended')",
        0,
    ),
    # Ctrl-C, not caught, with the iterator still referenced: the interpreter exits by SIGINT
    "interrupt": (
        "it = iter(loader)\nnext(it)\nprint('ended', flush=True)\n"
        "signal.raise_signal(signal.SIGINT)",
        -signal.SIGINT,
    ),
    # Ctrl-C caught around a `with loader:` block: the thread is gone right after it
    "interrupt-caught": (
        "try:\n"
        "    with loader:\n"
        "        for i, batch in enumerate(loader):\n"
        "            if i == 1:\n"
        "                signal.raise_signal(signal.SIGINT)\n"
        "except KeyboardInterrupt:\n"
        "    assert not loader_threads()\n"
        "print('ended')",
        0,
    ),
}


@pytest.mark.parametrize("case", list(_SHUTDOWN_CASES))
def test_loader_shuts_down_cleanly_mid_epoch(case: str, tmp_path) -> None:
    body, want_rc = _SHUTDOWN_CASES[case]
    proc = subprocess.run(
        [sys.executable, "-c", _SHUTDOWN_PRELUDE + body],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # the installed package, not a source tree in the working directory
    )
    assert "terminate called" not in proc.stderr
    assert proc.returncode == want_rc, proc.stderr[-2000:]
    assert "ended" in proc.stdout
