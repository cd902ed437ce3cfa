"""ImageStore: dense and ragged stores, subsets, the packed format and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyxfer.data import ImageStore, read_packed
from pyxfer.fileio import atomic_directory


@pytest.fixture
def dense() -> ImageStore:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 5, 4, 3), dtype=np.uint8)
    labels = [0, 1, 2, 0, 1, 2, 0, 1, -1, 2]
    return ImageStore(images, labels, ["cat", "dog", "owl"], name="toy", source="test")


def test_dense_basics(dense: ImageStore) -> None:
    assert len(dense) == 10 and dense.is_dense and dense.channels == 3
    assert dense.image_shape == (5, 4, 3)
    image, label = dense[4]
    assert image.shape == (5, 4, 3) and image.dtype == np.uint8 and label == 1
    np.testing.assert_array_equal(image, dense.images[4])
    assert dense[-1][1] == 2
    assert dense.num_classes == 3
    assert dense.class_counts().tolist() == [3, 3, 3]  # the -1 is not counted
    assert dense.is_labelled
    assert dense.labels.dtype == np.int64
    assert [lab for _, lab in dense] == dense.labels.tolist()


def test_grey_hw_array_gets_channel_axis_and_default_names() -> None:
    store = ImageStore(np.zeros((3, 4, 4), np.uint8), np.array([0, 3, 1]))
    assert store.image_shape == (4, 4, 1)
    assert store.class_names == ["0", "1", "2", "3"]


def test_unlabelled_store() -> None:
    store = ImageStore(np.zeros((3, 2, 2, 1), np.uint8))
    assert store.labels.tolist() == [-1, -1, -1]
    assert not store.is_labelled and store.num_classes == 0
    assert store[0][1] == -1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 3, 3, 3), np.float32)}, "images: expected dtype uint8"),
        ({"images": np.zeros((2, 3, 3, 2), np.uint8)}, r"images: expected .*C in"),
        (
            {"images": np.zeros((2, 3, 3, 3), np.uint8), "labels": [0]},
            r"labels: expected shape \(2,\)",
        ),
        (
            {"images": np.zeros((2, 3, 3, 3), np.uint8), "labels": [0, -2]},
            "labels: expected values >= -1",
        ),
        (
            {
                "images": np.zeros((2, 3, 3, 3), np.uint8),
                "labels": [0, 2],
                "class_names": ["a", "b"],
            },
            "labels: expected values < 2",
        ),
        ({"images": [np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 1), np.uint8)]}, "one channel"),
        ({"images": [np.zeros((3, 3, 3), np.int16)]}, r"images\[0\]: expected dtype uint8"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImageStore(**kwargs)


def test_ragged_store() -> None:
    rng = np.random.default_rng(1)
    imgs = [
        rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(4, 6), (7, 3), (4, 6)]
    ]
    store = ImageStore(imgs, [1, 0, 1], ["a", "b"])
    assert not store.is_dense and len(store) == 3 and store.image_shape is None
    image, label = store[1]
    np.testing.assert_array_equal(image, imgs[1])
    assert label == 0
    assert store.image_sizes().tolist() == [[4, 6], [7, 3], [4, 6]]
    with pytest.raises(ValueError, match="ragged"):
        _ = store.images
    batch = store.batch([2, 0])
    assert isinstance(batch, list) and batch[0] is imgs[2]
    d = store.describe()
    assert d["dense"] is False and d["size_min"] == [4, 3] and d["size_max"] == [7, 6]
    assert d["common_sizes"][0] == [4, 6, 2]
    sub = store.subset([1])
    assert sub.image(0) is imgs[1] and sub.labels.tolist() == [0]


def test_subset_is_a_view(dense: ImageStore) -> None:
    sub = dense.subset([7, 2, 2])
    assert len(sub) == 3 and sub.labels.tolist() == [1, 2, 2]
    np.testing.assert_array_equal(sub.images, dense.images[[7, 2, 2]])
    assert np.shares_memory(sub.image(0), dense.images)  # no pixel copy per item
    subsub = sub.subset([-1])
    np.testing.assert_array_equal(subsub.image(0), dense.image(2))
    mask = dense.labels == 0
    assert dense.subset(mask).labels.tolist() == [0, 0, 0]
    assert dense[2:5].labels.tolist() == dense.labels[2:5].tolist()
    sub.class_names.append("extra")  # a subset does not share the name list
    assert dense.num_classes == 3


def test_subset_bad_indices(dense: ImageStore) -> None:
    with pytest.raises(ValueError, match=r"indices: expected values in \[-10, 10\)"):
        dense.subset([10])
    with pytest.raises(ValueError, match="boolean mask must have shape"):
        dense.subset(np.ones(3, bool))
    with pytest.raises(IndexError):
        dense.image(10)


def test_packed_round_trip_is_memory_mapped(dense: ImageStore, tmp_path) -> None:
    out = dense.save(tmp_path / "store")
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "labels.npy", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["shape"] == [10, 5, 4, 3] and meta["class_names"] == ["cat", "dog", "owl"]
    back = ImageStore.open(out)
    assert isinstance(back.images, np.memmap)
    np.testing.assert_array_equal(back.images, dense.images)
    assert back.labels.tolist() == dense.labels.tolist()
    assert (back.name, back.source, back.class_names) == ("toy", "test", ["cat", "dog", "owl"])
    in_memory = read_packed(out, mmap=False)
    assert not isinstance(in_memory.images, np.memmap)
    # a subset of a memory-mapped store saves the selected rows
    sub = back.subset([9, 0])
    sub.save(tmp_path / "sub")
    np.testing.assert_array_equal(ImageStore.open(tmp_path / "sub").images, dense.images[[9, 0]])


def test_save_refuses_existing_and_ragged(dense: ImageStore, tmp_path) -> None:
    dense.save(tmp_path / "s")
    with pytest.raises(ValueError, match="already exists"):
        dense.save(tmp_path / "s")
    dense.subset([0, 1]).save(tmp_path / "s", overwrite=True)
    assert len(ImageStore.open(tmp_path / "s")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp or old dirs left
    ragged = ImageStore([np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2, 3), np.uint8)])
    with pytest.raises(ValueError, match="ragged store has no fixed image size"):
        ragged.save(tmp_path / "r")


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_directory_leaves_nothing_on_failure(tmp_path, exc: type[BaseException]) -> None:
    with pytest.raises(exc), atomic_directory(tmp_path / "out") as tmp:
        (tmp / "half.npy").write_bytes(b"x")
        raise exc("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_read_packed_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no directory"):
        read_packed(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "images.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"missing labels\.npy, meta\.json"):
        read_packed(tmp_path / "bad")
    store = ImageStore(np.zeros((2, 2, 2, 1), np.uint8))
    store.save(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "meta.json").read_text())
    meta["format"] = "other"
    (tmp_path / "ok" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"expected format 'pyxfer\.packed'"):
        read_packed(tmp_path / "ok")


def test_packed_store_pickles_as_its_path(dense: ImageStore, tmp_path) -> None:
    import pickle

    big = ImageStore(np.zeros((64, 32, 32, 3), np.uint8), np.arange(64) % 4)
    big.save(tmp_path / "big")
    opened = ImageStore.open(tmp_path / "big").subset([5, 9])
    blob = pickle.dumps(opened)
    assert len(blob) < 10_000  # the 196 KB of pixels are not in the pickle
    back = pickle.loads(blob)
    assert isinstance(back._base, np.memmap)
    assert back.labels.tolist() == [1, 1] and back.images.shape == (2, 32, 32, 3)
    in_memory = pickle.loads(pickle.dumps(dense))  # an in-memory store pickles its pixels
    np.testing.assert_array_equal(in_memory.images, dense.images)


def test_atomic_write_bytes_gives_the_usual_file_mode(tmp_path) -> None:
    import os
    import stat

    from pyxfer.fileio import atomic_write_bytes

    mask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.json", b"{}")
    finally:
        os.umask(mask)
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
