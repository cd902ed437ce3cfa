"""Data files that would exhaust memory or never end fail fast with a clear error.

Each bomb is built small but shaped like the real one: a tar header claiming 40 GB, a gzip IDX
header claiming terabytes, a PNG header claiming 13,000² 16-bit pixels, a class folder that
links to itself. Limits that real-sized data would hit are lowered through their parameter.
"""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import tarfile
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import make_folder, write_idx
from PIL import Image, ImageFile

from pyxfer.data import decode
from pyxfer.data.decode import ImageDecodeError, decode_image, decode_many
from pyxfer.data.folder import read_folder
from pyxfer.data.idx import read_idx_array
from pyxfer.data.tar import read_tar

# -- tar ---------------------------------------------------------------------------------------


def _png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_tar_member_claiming_40_gb_fails_before_it_is_read(tmp_path) -> None:
    """The header alone says 40 GB: refused from the header, nothing of the data is read."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "set/cat/0.png", _png_bytes())
        big = tarfile.TarInfo("set/dog/zeros.png")
        big.size = 40 * 2**30
        raw.write(big.tobuf(tarfile.PAX_FORMAT))  # the header, then (a little of) the zeros
        raw.write(bytes(1 << 16))
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(ValueError, match=r"set/dog/zeros\.png is 42949672960 bytes.*max_member"):
        read_tar(archive)


def test_tar_caps_per_member_and_in_total(tmp_path) -> None:
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "set/cat/0.png", _png_bytes(0))
        _add(tf, "set/cat/zeros.png", bytes(2 << 20))  # 2 MiB of zeros, 2 KiB compressed
        for i in range(3):
            _add(tf, f"set/dog/{i}.png", _png_bytes(i))
    with pytest.raises(ValueError, match=r"zeros\.png is 2097152 bytes, over max_member_bytes"):
        read_tar(archive, max_member_bytes=1 << 20)
    with pytest.raises(ValueError, match=r"more than max_total_bytes=1000000"):
        read_tar(archive, max_total_bytes=1_000_000)
    with pytest.raises(ValueError, match="max_member_bytes: expected a positive int"):
        read_tar(archive, max_member_bytes=0)


# -- idx ---------------------------------------------------------------------------------------


def _idx_gzip(path: Path, dims: tuple[int, ...], payload: bytes) -> None:
    header = bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, ">u4").tobytes()
    path.write_bytes(gzip.compress(header + payload, compresslevel=1))


@pytest.fixture
def bounded_gzip_reads(monkeypatch):
    """Fail any gzip read that asks for 'everything' (unbounded decompression)."""
    real_read = gzip.GzipFile.read

    def read(self, size=-1):
        if size is None or size < 0:
            raise AssertionError("unbounded gzip read")
        return real_read(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", read)


def test_gzip_idx_header_claiming_terabytes_fails_from_the_header(
    tmp_path, bounded_gzip_reads
) -> None:
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    _idx_gzip(path, (2**31, 28, 28), bytes(4 << 20))  # claims 1.7 TB; 4 MiB of zeros follow
    with pytest.raises(ValueError, match=r"header claims 1683627180032 data bytes.*max_bytes"):
        read_idx_array(path)


def test_gzip_idx_with_more_data_than_its_header_is_read_bounded(
    tmp_path, bounded_gzip_reads
) -> None:
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    _idx_gzip(path, (10, 28, 28), bytes(8 << 20))  # 7840 bytes announced, 8 MiB inside
    with pytest.raises(ValueError, match="holds more data than its header dimensions"):
        read_idx_array(path)
    ok = tmp_path / "ok-images-idx3-ubyte.gz"
    write_idx(ok, np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), compress=True)
    np.testing.assert_array_equal(read_idx_array(ok), np.arange(18).reshape(2, 3, 3))
    with pytest.raises(ValueError, match=r"claims 18 data bytes .*more than max_bytes=10"):
        read_idx_array(ok, max_bytes=10)


# -- folder ------------------------------------------------------------------------------------


def test_class_folder_linking_to_itself_is_an_error(tmp_path) -> None:
    make_folder(tmp_path / "set", {"cat": 2, "dog": 1})
    (tmp_path / "set" / "cat" / "again").symlink_to(tmp_path / "set" / "cat")
    with pytest.raises(ValueError, match=r"cat/again.*symlink loop"):
        read_folder(tmp_path / "set")
    (tmp_path / "set" / "cat" / "again").unlink()
    (tmp_path / "set" / "dog" / "up").symlink_to(tmp_path / "set")  # back to the root
    with pytest.raises(ValueError, match=r"dog/up.*symlink loop"):
        read_folder(tmp_path / "set")


def test_links_that_do_not_loop_are_followed(tmp_path) -> None:
    make_folder(tmp_path / "elsewhere", {"x": 2})
    make_folder(tmp_path / "set", {"cat": 1, "dog": 1})
    (tmp_path / "set" / "cat" / "more").symlink_to(tmp_path / "elsewhere" / "x")
    (tmp_path / "set" / "dog" / "same").symlink_to(tmp_path / "elsewhere" / "x")
    store = read_folder(tmp_path / "set")
    assert store.labels.tolist() == [0, 0, 0, 1, 1, 1]


# -- images ------------------------------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A 16-bit grey PNG whose IHDR claims ``width`` x ``height`` (the data is 16 x 16)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR" and data[24] == 16  # bit depth 16
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail if any pixel data is decoded (the pixel buffer is allocated by load())."""

    def load(self):
        raise AssertionError(f"decoded a {self.size} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("side", [13_000, 20_000])  # over the limit; over twice the limit
def test_huge_png_headers_fail_before_decoding(tmp_path, no_decoding, side: int) -> None:
    paths = [str(_png_claiming(tmp_path / f"{i}.png", side, side)) for i in range(16)]
    message = f"{side * side:,} pixels, over the limit of {decode.max_image_pixels():,}"
    with pytest.raises(ImageDecodeError, match=rf"0\.png.*{message}"):
        decode_many(paths, paths, threads=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Pillow's own DecompressionBombWarning may come too
        _, kept = decode_many(paths, paths, threads=16, on_error="skip")
    skipped = [w for w in caught if "skipping unreadable image" in str(w.message)]
    assert kept.size == 0 and len(skipped) == 16
    assert all(message in str(w.message) for w in skipped)


def test_max_image_pixels_is_explicit_and_can_be_raised(tmp_path) -> None:
    assert Image.MAX_IMAGE_PIXELS == decode.max_image_pixels() == decode.DEFAULT_MAX_IMAGE_PIXELS
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(path)
    old = decode.max_image_pixels()
    try:
        decode.set_max_image_pixels(100)
        assert Image.MAX_IMAGE_PIXELS == 100
        with pytest.raises(ValueError, match=r"320 pixels, over the limit of 100 pixels"):
            decode_image(path)
        decode.set_max_image_pixels(320)
        assert decode_image(path).shape == (16, 20, 3)
        with pytest.raises(ValueError, match="expected a positive int"):
            decode.set_max_image_pixels(0)
    finally:
        decode.set_max_image_pixels(old)
    code = (
        "from PIL import Image; import pyxfer.data.decode as d; "
        "print(d.max_image_pixels(), Image.MAX_IMAGE_PIXELS)"
    )
    env = {"PYXFER_MAX_IMAGE_PIXELS": "250000000", "PATH": ""}
    out = subprocess.run(  # not from the checkout's root: that would import the source tree
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.stdout.split() == ["250000000", "250000000"], out.stderr[-500:]


def test_pixels_decoded_at_once_are_bounded() -> None:
    """Threads hold their image's pixels while decoding: at most the budget at once (an image
    over the budget runs alone)."""
    budget = decode.PixelBudget(25_000)
    state = {"now": 0, "peak": 0}
    violations: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        with budget.hold(n):
            with lock:
                state["now"] += n
                state["peak"] = max(state["peak"], state["now"])
                if state["now"] > 25_000 and state["now"] != n:
                    violations.append(state["now"])
            time.sleep(0.002)
            with lock:
                state["now"] -= n

    sizes = [10_000] * 16 + [40_000]
    threads = [threading.Thread(target=work, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert violations == [] and state["now"] == 0 and state["peak"] >= 20_000


# -- packed stores -----------------------------------------------------------------------------


def test_packed_store_never_unpickles(tmp_path) -> None:
    from pyxfer.data import ImageStore, read_packed

    store = ImageStore(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1]), ["a", "b"])
    root = store.save(tmp_path / "p")
    np.save(root / "labels.npy", np.array([0, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_packed(root)
