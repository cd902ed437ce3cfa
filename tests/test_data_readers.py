"""Readers: class-per-folder images, tar archives, IDX files and the embedded digits."""

from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import make_folder, make_tar, random_image, write_idx, write_image

from pyxfer.data.decode import ImageDecodeError
from pyxfer.data.digits import read_digits
from pyxfer.data.folder import read_folder
from pyxfer.data.idx import read_idx, read_idx_array
from pyxfer.data.tar import read_tar

# -- folder ------------------------------------------------------------------------------------


def test_folder_labels_follow_sorted_class_names(tmp_path) -> None:
    arrays = make_folder(tmp_path, {"zebra": 2, "ant": 3, "moth": 1})
    store = read_folder(tmp_path, threads=2)
    assert store.class_names == ["ant", "moth", "zebra"]
    assert store.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert store.is_dense and store.image_shape == (6, 6, 3)  # same sizes: stacked
    expected = arrays["ant"] + arrays["moth"] + arrays["zebra"]
    for i, arr in enumerate(expected):  # PNG is lossless: pixels come back exactly
        np.testing.assert_array_equal(store.image(i), arr)
    assert store.source == f"folder:{tmp_path}" and store.name == tmp_path.name


def test_folder_ragged_vs_sized(tmp_path) -> None:
    make_folder(tmp_path, {"a": 2, "b": 2}, sizes=[(5, 9), (12, 7), (6, 6)])
    ragged = read_folder(tmp_path)
    assert not ragged.is_dense
    assert ragged.image_sizes().tolist() == [[5, 9], [12, 7], [6, 6], [5, 9]]
    sized = read_folder(tmp_path, size=4)
    assert sized.is_dense and sized.images.shape == (4, 4, 4, 3)
    assert sized.labels.tolist() == ragged.labels.tolist()
    grey = read_folder(tmp_path, size=(3, 5), channels=1)
    assert grey.images.shape == (4, 3, 5, 1)


def test_fit_crop_keeps_the_centre_and_stretch_keeps_everything(tmp_path) -> None:
    bands = np.zeros((10, 30, 3), np.uint8)
    bands[:, :10, 0] = 255  # red left, green middle, blue right
    bands[:, 10:20, 1] = 255
    bands[:, 20:, 2] = 255
    write_image(tmp_path / "x" / "bands.png", bands)
    crop = read_folder(tmp_path, size=5).image(0).astype(int)
    assert (crop[:, :, 1] > 200).all() and (crop[:, :, [0, 2]] < 60).all()
    stretch = read_folder(tmp_path, size=6, fit="stretch").image(0).astype(int)
    assert stretch[:, 0, 0].min() > 200 and stretch[:, -1, 2].min() > 200


def test_flat_folder_is_unlabelled(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / f"img{i}.jpg", random_image(rng, 8, 8))
    store = read_folder(tmp_path)
    assert len(store) == 3 and not store.is_labelled and store.class_names == []


def test_corrupt_file_raises_naming_the_path_or_is_skipped_with_warning(tmp_path) -> None:
    make_folder(tmp_path, {"a": 2, "b": 2})
    bad = tmp_path / "a" / "001b.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match=r"001b\.png") as info:
        read_folder(tmp_path)
    assert info.value.path == str(bad)
    with pytest.warns(UserWarning, match=r"001b\.png"):
        store = read_folder(tmp_path, on_error="skip")
    assert len(store) == 4 and store.labels.tolist() == [0, 0, 1, 1]
    assert store.info["skipped"] == 1


def test_truncated_png_is_an_error(tmp_path) -> None:
    make_folder(tmp_path, {"a": 1})
    good = tmp_path / "a" / "000.png"
    write_image(good, random_image(np.random.default_rng(0), 40, 40))
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageDecodeError, match=r"000\.png"):
        read_folder(tmp_path)


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no directory"):
        read_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="no image files"):
        read_folder(tmp_path)
    with pytest.raises(ValueError, match="channels: expected 1, 3"):
        read_folder(tmp_path, channels=2)
    with pytest.raises(ValueError, match="on_error"):
        read_folder(tmp_path, on_error="ignore")
    with pytest.raises(ValueError, match="size: expected a positive int"):
        read_folder(tmp_path, size=0)


def test_thread_count_does_not_change_the_result(tmp_path) -> None:
    make_folder(tmp_path, {"a": 4, "b": 3}, sizes=[(9, 7), (5, 11)], ext=".jpg")
    one = read_folder(tmp_path, size=4, threads=1)
    many = read_folder(tmp_path, size=4, threads=3)
    np.testing.assert_array_equal(one.images, many.images)


# -- tar ---------------------------------------------------------------------------------------


def test_tar_matches_the_extracted_folder(tmp_path) -> None:
    make_folder(tmp_path / "tree", {"cat": 2, "dog": 3})
    make_tar(tmp_path / "set.tar.gz", tmp_path / "tree", "test")
    from_tar = read_tar(tmp_path / "set.tar.gz", threads=2)
    from_dir = read_folder(tmp_path / "tree")
    assert from_tar.class_names == ["cat", "dog"] == from_dir.class_names
    assert from_tar.labels.tolist() == from_dir.labels.tolist()
    np.testing.assert_array_equal(from_tar.images, from_dir.images)
    assert from_tar.name == "set"
    sub = read_tar(tmp_path / "set.tar.gz", root="test/dog")
    assert len(sub) == 3 and not sub.is_labelled


def test_tar_errors(tmp_path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read archive"):
        read_tar(tmp_path / "junk.tar.gz")
    with pytest.raises(FileNotFoundError):
        read_tar(tmp_path / "missing.tar")


# -- idx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    gz = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{gz}", images, compress=compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{gz}", labels, compress=compress)
    store = read_idx(tmp_path)
    assert store.images.shape == (7, 5, 4, 1)
    np.testing.assert_array_equal(store.images[..., 0], images)
    assert store.labels.tolist() == labels.tolist()
    assert store.class_names == [str(i) for i in range(10)]
    assert (
        isinstance(read_idx_array(tmp_path / f"train-images-idx3-ubyte{gz}"), np.memmap) != compress
    )
    same = read_idx(tmp_path / f"train-images-idx3-ubyte{gz}")  # the images file itself
    np.testing.assert_array_equal(same.images, store.images)
    transposed = read_idx(tmp_path, transpose=True)
    np.testing.assert_array_equal(transposed.images[..., 0], images.transpose(0, 2, 1))


def test_idx_validation(tmp_path) -> None:
    imgs = np.zeros((3, 2, 2), np.uint8)
    write_idx(tmp_path / "bad-images-idx3-ubyte", imgs, compress=False, magic=b"\x12\x34\x08\x03")
    with pytest.raises(ValueError, match=r"bad-images-idx3-ubyte' is not an IDX file.*0x12340803"):
        read_idx_array(tmp_path / "bad-images-idx3-ubyte")
    write_idx(tmp_path / "f-images-idx3-ubyte", imgs, compress=False, magic=b"\x00\x00\x0d\x03")
    with pytest.raises(ValueError, match="holds float32 data; expected uint8"):
        read_idx_array(tmp_path / "f-images-idx3-ubyte")
    write_idx(tmp_path / "two.gz", np.zeros((3, 4), np.uint8), compress=True)
    with pytest.raises(ValueError, match="has 2 dimension"):
        read_idx_array(tmp_path / "two.gz", ndim=3)
    path = tmp_path / "short-images-idx3-ubyte"
    write_idx(path, imgs, compress=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="has 11 data bytes"):
        read_idx_array(path)


def test_idx_directory_discovery(tmp_path) -> None:
    for split, n in [("train", 4), ("t10k", 2)]:
        write_idx(
            tmp_path / f"{split}-images-idx3-ubyte.gz", np.zeros((n, 3, 3), np.uint8), compress=True
        )
        write_idx(
            tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8), compress=True
        )
    with pytest.raises(ValueError, match="pass split="):
        read_idx(tmp_path)
    assert len(read_idx(tmp_path, split="t10k")) == 2
    write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(5, np.uint8), compress=False)
    with pytest.raises(ValueError, match="has 4 images but x-labels-idx1-ubyte has 5 labels"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz", labels=tmp_path / "x-labels-idx1-ubyte")


# -- digits ------------------------------------------------------------------------------------


def test_digits() -> None:
    from sklearn.datasets import load_digits

    store = read_digits()
    assert store.images.shape == (1797, 8, 8, 1) and store.images.dtype == np.uint8
    assert store.images.min() == 0 and store.images.max() == 255
    raw = load_digits().images
    np.testing.assert_array_equal(store.images[..., 0], np.rint(raw * 255 / 16).astype(np.uint8))
    assert store.class_names == [str(i) for i in range(10)]
    assert store.class_counts().sum() == 1797 and (store.class_counts() > 170).all()


def test_sixteen_bit_grey_keeps_its_range(tmp_path) -> None:
    from PIL import Image

    deep = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    (tmp_path / "c").mkdir()
    Image.fromarray(deep).save(tmp_path / "c" / "deep.png")
    store = read_folder(tmp_path, channels=1)
    np.testing.assert_array_equal(store.image(0)[..., 0], (deep >> 8).astype(np.uint8))


def test_all_files_unreadable_is_an_error(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"junk")
    with (
        pytest.warns(UserWarning, match=r"x\.png"),
        pytest.raises(ValueError, match="none of the 1"),
    ):
        read_folder(tmp_path, on_error="skip")
