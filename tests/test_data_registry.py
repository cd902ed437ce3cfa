"""Data sets as plugins: spec parsing, resolution through the registry, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _data_helpers import make_folder, make_tar, write_idx

import pyxfer
from pyxfer.data import ImageStore, list_datasets, load_dataset
from pyxfer.registry import UnknownNameError


def test_builtin_sources_are_registered() -> None:
    assert {"digits", "folder", "idx", "packed", "tar"} <= set(list_datasets())
    assert list_datasets("p*") == ["packed"]
    assert pyxfer.load_dataset is load_dataset and pyxfer.ImageStore is ImageStore


def test_resolution_of_every_builtin(tmp_path) -> None:
    digits = load_dataset("digits")
    assert len(digits) == 1797 and digits.source == "digits"

    make_folder(tmp_path / "tree", {"a": 2, "b": 1})
    folder = load_dataset(f"folder:{tmp_path / 'tree'}", size=4, channels=1)
    assert folder.images.shape == (3, 4, 4, 1) and folder.class_names == ["a", "b"]

    make_tar(tmp_path / "t.tgz", tmp_path / "tree", "root")
    assert load_dataset(f"tar:{tmp_path / 't.tgz'}").labels.tolist() == [0, 0, 1]

    write_idx(
        tmp_path / "m" / "t10k-images-idx3-ubyte.gz", np.ones((2, 3, 3), np.uint8), compress=True
    )
    write_idx(
        tmp_path / "m" / "t10k-labels-idx1-ubyte.gz", np.array([3, 1], np.uint8), compress=True
    )
    idx = load_dataset(f"idx:{tmp_path / 'm'}")
    assert idx.labels.tolist() == [3, 1]

    folder.save(tmp_path / "p")
    packed = load_dataset(f"packed:{tmp_path / 'p'}")
    np.testing.assert_array_equal(packed.images, folder.images)
    assert isinstance(packed.images, np.memmap)

    # a bare existing path is recognised by its content
    assert load_dataset(str(tmp_path / "p")).info["packed_path"] == str(tmp_path / "p")
    assert load_dataset(str(tmp_path / "m")).labels.tolist() == [3, 1]
    assert load_dataset(tmp_path / "tree").class_names == ["a", "b"]
    assert len(load_dataset(str(tmp_path / "t.tgz"))) == 3


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'digits'") as info:
        load_dataset("digit")
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet:/data")


def test_bad_options_and_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not accept options"):
        load_dataset("digits", size=32)
    with pytest.raises(ValueError, match="expected folder:DIR"):
        load_dataset("folder")
    with pytest.raises(ValueError, match="digits: expected no argument or 'mnist', received 'x'"):
        load_dataset("digits:x")
    with pytest.raises(ValueError, match="spec: expected"):
        load_dataset(42)  # type: ignore[arg-type]


def test_digits_in_the_mnist_frame() -> None:
    """digits:mnist: 28 px, the digit inside a centred 20 px box, same labels and order."""
    plain, framed = load_dataset("digits"), load_dataset("digits:mnist")
    assert framed.images.shape == (1797, 28, 28, 1) and framed.images.dtype == np.uint8
    np.testing.assert_array_equal(framed.labels, plain.labels)
    ink = framed.images[..., 0].astype(np.float64)
    # each digit's ink fits the 20 px box it was placed in
    for axis in (1, 2):
        lines = ink.sum(axis=axis) > 0  # (N, 28) rows or columns with ink
        first, last = lines.argmax(axis=1), 27 - lines[:, ::-1].argmax(axis=1)
        assert (last - first + 1).max() <= 20
    # centre of mass of each image within a pixel of the canvas centre
    ys, xs = np.indices((28, 28))
    tot = ink.sum(axis=(1, 2))
    cy, cx = (ink * ys).sum(axis=(1, 2)) / tot, (ink * xs).sum(axis=(1, 2)) / tot
    assert np.abs(cy - 13.5).max() <= 1.0 and np.abs(cx - 13.5).max() <= 1.0
    # the ink is the original digit's, scaled by the area ratio (20 / 8)^2, within 10 %
    ratio = tot / plain.images[..., 0].astype(np.float64).sum(axis=(1, 2)) / (20 / 8) ** 2
    assert np.abs(ratio - 1).max() < 0.1, ratio
    assert framed.info["frame"].startswith("mnist")


def test_third_party_source_through_a_plugin() -> None:
    from pyxfer import hookimpl
    from pyxfer.pluginmanager import get_host

    class Plugin:
        @hookimpl
        def pyxfer_register_datasets(self, register):
            register(
                "zeros",
                lambda argument=None: ImageStore(np.zeros((int(argument or 1), 2, 2, 1), np.uint8)),
            )

    host = get_host()
    host.register(Plugin(), name="test-zeros")
    try:
        assert len(load_dataset("zeros:4")) == 4
    finally:
        host.unregister("test-zeros")
    assert "zeros" not in list_datasets()


def test_data_layer_does_not_import_torch(tmp_path) -> None:
    code = (
        "import sys, pyxfer.data as d; s = d.load_dataset('digits'); "
        "d.stratified_split(s.labels, (0.5, 0.5)); import pyxfer.data.grid; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
