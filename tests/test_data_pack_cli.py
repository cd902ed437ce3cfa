"""pack(): fixed-size packing, atomicity on failure; the `pyxfer pack` / `pyxfer data` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _data_helpers import make_folder
from PIL import Image

from pyxfer.cli import main
from pyxfer.data import ImageStore, load_dataset, pack


class FailingStore(ImageStore):
    """Raises when image ``fail_at`` is read, like a source dying half-way."""

    fail_at = 300
    error: type[BaseException] = RuntimeError

    def image(self, i: int) -> np.ndarray:
        if i == self.fail_at:
            raise self.error(f"source died at image {i}")
        return super().image(i)


def test_pack_folder_to_fixed_size(tmp_path) -> None:
    make_folder(tmp_path / "src", {"b": 3, "a": 2}, sizes=[(9, 5), (4, 12)])
    out = pack(f"folder:{tmp_path / 'src'}", tmp_path / "dst", size=6, threads=2, progress=False)
    store = load_dataset(f"packed:{out}")
    assert store.images.shape == (5, 6, 6, 3)
    assert store.class_names == ["a", "b"] and store.labels.tolist() == [0, 0, 1, 1, 1]
    assert store.source == f"folder:{tmp_path / 'src'}" and store.info["size"] == [6, 6]
    direct = load_dataset(f"folder:{tmp_path / 'src'}", size=6)
    np.testing.assert_array_equal(store.images, direct.images)


def test_pack_resizes_dense_and_converts_channels(tmp_path) -> None:
    out = pack("digits", tmp_path / "d16", size=16, channels=3, progress=False)
    store = load_dataset(f"packed:{out}")
    assert store.images.shape == (1797, 16, 16, 3)
    img = store.images[5].astype(int)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert store.labels.tolist() == load_dataset("digits").labels.tolist()
    # same size and channels: pixels are copied unchanged
    same = load_dataset(f"packed:{pack('digits', tmp_path / 'd8', size=8, progress=False)}")
    np.testing.assert_array_equal(same.images, load_dataset("digits").images)


def test_pack_ragged_store_object(tmp_path) -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8) for h, w in [(3, 9), (10, 4)]]
    out = pack(ImageStore(imgs, [0, 1]), tmp_path / "r", size=(4, 5), progress=False)
    assert load_dataset(f"packed:{out}").images.shape == (2, 4, 5, 1)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_pack_failing_midway_leaves_nothing(tmp_path, error: type[BaseException]) -> None:
    src = FailingStore(np.zeros((400, 4, 4, 1), np.uint8), np.zeros(400, np.int64))
    src.error = error
    (tmp_path / "out").mkdir()
    with pytest.raises(error, match="source died at image 300"):
        pack(src, tmp_path / "out" / "store", size=8, threads=2, progress=False)
    assert list((tmp_path / "out").iterdir()) == []  # no store, no temporary directory


def test_pack_refuses_existing_destination_and_skips_corrupt(tmp_path) -> None:
    make_folder(tmp_path / "src", {"a": 2, "b": 2})
    (tmp_path / "src" / "b" / "zz.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"zz\.png"):
        pack(f"folder:{tmp_path / 'src'}", tmp_path / "dst", size=4, progress=False)
    assert not (tmp_path / "dst").exists()
    with pytest.warns(UserWarning, match=r"zz\.png"):
        pack(
            f"folder:{tmp_path / 'src'}", tmp_path / "dst", size=4, on_error="skip", progress=False
        )
    assert len(load_dataset(f"packed:{tmp_path / 'dst'}")) == 4
    with pytest.raises(ValueError, match="already exists"):
        pack("digits", tmp_path / "dst", size=4, progress=False)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        pack("digits", tmp_path / "new", size=-1)


def test_cli_pack_and_data(tmp_path, capsys) -> None:
    make_folder(tmp_path / "src", {"cat": 3, "dog": 2}, sizes=[(7, 5)])
    dst = tmp_path / "packed"
    assert (
        main(
            [
                "pack",
                f"folder:{tmp_path / 'src'}",
                str(dst),
                "--size",
                "8",
                "--channels",
                "1",
                "--threads",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "packed 5 images (8x8x1, 2 classes)" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["data", f"packed:{dst}", "--grid", str(grid), "--per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "dense, 8x8x1" in out and "cat" in out and "dog" in out
    with Image.open(grid) as img:
        assert img.mode == "RGB" and img.width > 2 * 64 and img.height > 2 * 64  # 8 px upscaled
    assert main(["data", f"folder:{tmp_path / 'src'}", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (
        d["count"] == 5 and d["classes"] == {"cat": 3, "dog": 2} and d["image_shape"] == [7, 5, 3]
    )


def test_cli_errors_and_help(tmp_path, capsys) -> None:
    assert main(["data", "nosuchset"]) == 2
    assert "unknown dataset 'nosuchset'" in capsys.readouterr().err
    assert main(["pack", "digits", str(tmp_path / "x"), "--size", "0"]) == 2
    for cmd in ("pack", "data"):
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
        assert "packed:" in capsys.readouterr().out


def test_grid_of_ragged_unlabelled_store() -> None:
    from pyxfer.data.grid import sample_grid

    rng = np.random.default_rng(0)
    imgs = [
        rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(300, 200), (50, 80)] * 3
    ]
    sheet = sample_grid(ImageStore(imgs), per_class=3)
    assert sheet.size[0] >= 3 * 96 and sheet.size[1] >= 2 * 96


def test_grid_with_an_empty_class() -> None:
    from pyxfer.data.grid import sample_grid

    store = ImageStore(np.full((3, 4, 4, 1), 200, np.uint8), [0, 0, 2], ["a", "empty", "c"])
    sheet = np.asarray(sample_grid(store, per_class=2))
    assert sheet.shape[0] >= 3 * 64  # three rows, 4 px upscaled to 64
    assert (sheet == 200).any()  # the pixels are drawn
