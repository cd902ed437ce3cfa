"""The compressed (JPEG) store: packing, reading, decoding inside the fused loader, bad input."""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zlib

import numpy as np
import pytest
from _data_helpers import write_image
from PIL import Image

from pyxfer.cli import main
from pyxfer.data import ImageStore, JpegStore, load_dataset, pack_jpeg
from pyxfer.data.decode import ImageDecodeError, ImageTooLargeError
from pyxfer.data.jpegstore import StoreCorruptError
from pyxfer.engine.loader import FusedLoader
from pyxfer.ops.augment import COL, ViewSpec, apply, sample_params


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Photo-like content: smooth colour gradients, a few discs and a little noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin(x / (w / rng.uniform(2, 5)) + rng.uniform(0, 6)),
            128 + 90 * np.cos(y / (h / rng.uniform(2, 5)) + rng.uniform(0, 6)),
            128 + 60 * np.sin((x + y) / (w / rng.uniform(1, 4))),
        ],
        axis=2,
    )
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.25) * min(h, w)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_jpeg(path, arr: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(path, quality=quality)


def make_photos(root, sizes, classes=("cat", "dog"), seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for k, (h, w) in enumerate(sizes):
        p = root / classes[k % len(classes)] / f"{k:03d}.jpg"
        write_jpeg(p, photo(rng, h, w))
        paths.append(p)
    return paths


def decoded(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture
def photos(tmp_path):
    sizes = [(400, 480), (420, 560), (480, 400), (512, 640), (400, 400), (450, 600)] * 2
    make_photos(tmp_path / "photos", sizes)
    return tmp_path / "photos"


def test_pack_keeps_the_jpeg_bytes_and_reads_back(photos, tmp_path) -> None:
    out = pack_jpeg(f"folder:{photos}", tmp_path / "p.px", threads=2, progress=False)
    store = load_dataset(f"packed:{out}")
    folder = load_dataset(f"folder:{photos}")
    assert isinstance(store, JpegStore) and not store.is_dense and len(store) == len(folder)
    assert store.class_names == folder.class_names
    assert store.labels.tolist() == folder.labels.tolist()
    assert store.image_sizes().tolist() == folder.image_sizes().tolist()
    for i in (0, 5, 11):
        np.testing.assert_array_equal(store[i][0], folder[i][0])  # the same bytes decoded
    jpeg_bytes = sum(p.stat().st_size for p in photos.rglob("*.jpg"))
    data = (out / "data.bin").read_bytes()
    assert len(data) == jpeg_bytes  # every file kept byte for byte
    assert store.disk_bytes() <= 1.1 * jpeg_bytes
    d = store.describe()
    assert d["storage"] == "jpeg" and d["reencoded"] == 0 and "DCT scaling" in d["decode"]
    assert d["disk_bytes"] == store.disk_bytes() and d["source_bytes"] == jpeg_bytes
    assert load_dataset(str(out)).describe()["count"] == len(store)  # a bare path is guessed


def test_reencodes_what_is_not_a_plain_jpeg(tmp_path) -> None:
    rng = np.random.default_rng(1)
    png = photo(rng, 64, 80)
    write_image(tmp_path / "src" / "a" / "x.png", png)
    big = photo(rng, 300, 200)
    write_jpeg(tmp_path / "src" / "a" / "y.jpg", big)
    rotated = Image.fromarray(photo(rng, 40, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    rotated.save(tmp_path / "src" / "a" / "z.jpg", exif=exif.tobytes())
    cmyk = Image.fromarray(photo(rng, 32, 48)).convert("CMYK")
    cmyk.save(tmp_path / "src" / "a" / "w.jpg")
    out = pack_jpeg(
        f"folder:{tmp_path / 'src'}", tmp_path / "p", max_side=150, quality=90, progress=False
    )
    store = load_dataset(f"packed:{out}")
    folder = load_dataset(f"folder:{tmp_path / 'src'}")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["reencoded"] == 4 and meta["quality"] == 90 and meta["max_side"] == 150
    sizes = dict(
        zip(json.loads((out / "names.json").read_text()), store.image_sizes().tolist(), strict=True)
    )
    assert sizes[str(tmp_path / "src" / "a" / "y.jpg")] == [150, 100]  # longer side capped
    assert sizes[str(tmp_path / "src" / "a" / "z.jpg")] == [60, 40]  # EXIF rotation applied
    for i in range(len(store)):
        im, ref = store[i][0], folder[i][0]
        if im.shape == ref.shape:  # re-encoded at quality 90 (4:2:0 chroma): the same picture
            err = np.abs(im.astype(int) - ref).mean()
            assert err < 8 and err < np.abs(im.astype(int) - ref[::-1, ::-1]).mean() / 4


def test_pack_from_pixels_and_grey_channels(tmp_path) -> None:
    out = pack_jpeg("digits", tmp_path / "d", channels=1, progress=False)
    store = load_dataset(f"packed:{out}")
    digits = load_dataset("digits")
    assert store.channels == 1 and len(store) == len(digits)
    assert store[3][0].shape == (8, 8, 1) and store.labels.tolist() == digits.labels.tolist()


def test_a_grey_store_decodes_libjpeg_luma(photos, tmp_path) -> None:
    out = pack_jpeg(f"folder:{photos}", tmp_path / "g", channels=1, progress=False)
    store = load_dataset(f"packed:{out}")
    folder = load_dataset(f"folder:{photos}", channels=1)
    assert store.channels == 1 and (out / "data.bin").stat().st_size == sum(
        p.stat().st_size for p in photos.rglob("*.jpg")
    )  # the colour files are kept; only decoding is grey
    for i in (0, 7):
        im = store[i][0]
        assert im.shape == folder[i][0].shape  # (H, W, 1)
        # JPEG's own Y vs Pillow's luma of the decoded RGB, which clips out-of-gamut colours
        assert np.abs(im.astype(int) - folder[i][0]).mean() < 1
    idx = np.arange(len(store))
    params = sample_params("simclr", store.image_sizes(), idx, size=32)
    images, _, _ = store.decode_views(idx, params, [(32, 32), (32, 32)])
    assert all(im.ndim == 3 and im.shape[2] == 1 for im in images)


def loader_views(store, **kw) -> list[np.ndarray]:
    with FusedLoader(store, shuffle=False, drop_last=False, threads=2, **kw) as loader:
        batches = list(loader)
    return [np.concatenate([b.views[v].numpy() for b in batches]) for v in range(2)]


def test_views_are_drawn_on_the_original_size(photos, tmp_path, monkeypatch) -> None:
    """The same Philox parameters as a raw store of the decoded images; at full scale the
    views are the same numbers."""
    store = load_dataset(f"packed:{pack_jpeg(f'folder:{photos}', tmp_path / 'p', progress=False)}")
    raw = ImageStore([store[i][0] for i in range(len(store))], store.labels, store.class_names)
    seen: list[np.ndarray] = []
    original = JpegStore.decode_views

    def spy(self, idx, params, sizes, threads=0):
        seen.append(np.array(params))
        return original(self, idx, params, sizes, threads)

    monkeypatch.setattr(JpegStore, "decode_views", spy)
    # 400 px outputs: no crop is 2x the output, so everything decodes at full scale
    kw = dict(batch_size=5, views="simclr", size=400, seed=3, epoch=2)
    got, want = loader_views(store, **kw), loader_views(raw, **kw)
    idx = np.arange(len(store))
    ref = sample_params("simclr", raw.image_sizes(), idx, seed=3, epoch=2, size=400)
    np.testing.assert_array_equal(np.concatenate(seen)[: len(ref)], ref)  # then the next epoch
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_dct_scaled_views_match_the_fully_decoded_image(photos, tmp_path) -> None:
    """Small outputs decode at 1/2-1/8 scale; the views stay within a few grey levels of the
    views of the fully decoded image (same parameters, boxes mapped)."""
    store = load_dataset(f"packed:{pack_jpeg(f'folder:{photos}', tmp_path / 'p', progress=False)}")
    idx = np.arange(len(store))
    spec = ViewSpec(size=(48, 48), scale=(0.3, 1.0), jitter_p=0.0, gray_p=0.0)
    params = sample_params([spec, spec], store.image_sizes(), idx, seed=1)
    images, mapped, kept = store.decode_views(idx, params, [(48, 48), (48, 48)])
    assert kept.tolist() == idx.tolist()
    none = store.decode_views([], np.zeros((0, params.shape[1]), np.float32), [(48, 48)] * 2)
    assert none[0] == [] and none[1].shape == (0, params.shape[1]) and none[2].size == 0
    with pytest.raises(ValueError, match=r"params: expected 24 rows \(12 images x 2 views\)"):
        store.decode_views(idx, params[:-1], [(48, 48)] * 2)
    scales = [store.image_sizes()[i][0] / im.shape[0] for i, im in enumerate(images)]
    assert max(scales) >= 4  # the DCT scaling is used
    one = dict(size=(48, 48), views=2, mean=(0, 0, 0), std=(1, 1, 1))
    got = apply(images, mapped, **one) * 255
    full = apply([store[i][0] for i in idx], params, **one) * 255
    err = np.abs(got - full).reshape(len(idx), -1).mean(axis=1)
    # DCT scaling low-passes like the antialiased resize it replaces, and a box edge moves by
    # at most half a decoded pixel (half an output pixel): a few grey levels on average,
    # while the same views from the other image's box differ by tens of levels
    assert err.max() < 3, err
    other = sample_params([spec, spec], store.image_sizes(), idx, seed=2)
    unrelated = apply([store[i][0] for i in idx], other, **one) * 255
    assert np.abs(unrelated - full).mean() > 5 * err.mean()


def test_loader_scales_each_image_to_its_crops(photos, tmp_path) -> None:
    store = load_dataset(f"packed:{pack_jpeg(f'folder:{photos}', tmp_path / 'p', progress=False)}")
    idx = np.arange(len(store))
    out = [(224, 224), (224, 224)]
    params = sample_params("simclr", store.image_sizes(), idx, seed=0, size=224)
    images, mapped, _ = store.decode_views(idx, params, out)
    for n, im in enumerate(images):
        s = round(store.image_sizes()[n][1] / im.shape[1])
        rows = params[2 * n : 2 * n + 2]
        # the smallest decode that still gives every crop at least the output's pixels
        assert s == 1 or all(
            r[COL["crop_h"]] >= s * 224 and r[COL["crop_w"]] >= s * 224 for r in rows
        )
        assert s == 8 or not all(
            r[COL["crop_h"]] >= 2 * s * 224 and r[COL["crop_w"]] >= 2 * s * 224 for r in rows
        )
        box = mapped[2 * n : 2 * n + 2]
        assert (box[:, COL["top"]] + box[:, COL["crop_h"]] <= im.shape[0]).all()


def test_eval_preprocessing_decodes_at_the_scale_of_the_resize(photos, tmp_path) -> None:
    from pyxfer.ops.preprocess import preprocess

    store = load_dataset(f"packed:{pack_jpeg(f'folder:{photos}', tmp_path / 'p', progress=False)}")
    small = store.batch([0, 7], min_side=64)  # 400x480 at 1/4, 512x640 at 1/8: short side >= 64
    assert [im.shape[:2] for im in small] == [(100, 120), (64, 80)]
    with FusedLoader(store, batch_size=12, views=None, size=64, shuffle=False) as loader:
        got = next(iter(loader)).views[0].numpy()
    full = np.asarray(
        preprocess([store[i][0] for i in range(12)], 64, 64, mean=(0, 0, 0), std=(1, 1, 1))
    )
    std = np.asarray((0.229, 0.224, 0.225))[None, :, None, None]
    mean = np.asarray((0.485, 0.456, 0.406))[None, :, None, None]
    err = np.abs((got * std + mean) - full) * 255  # the same picture, a few grey levels apart
    assert err.mean() < 3 and got.shape == (12, 3, 64, 64)


def test_pickled_store_reopens_its_bytes(photos, tmp_path) -> None:
    store = load_dataset(f"packed:{pack_jpeg(f'folder:{photos}', tmp_path / 'p', progress=False)}")
    sub = store.subset([3, 1])
    back = pickle.loads(pickle.dumps(sub))
    assert len(back) == 2 and back.labels.tolist() == store.labels[[3, 1]].tolist()
    np.testing.assert_array_equal(back[0][0], store[3][0])


def test_cli_pack_and_data_show_the_store(photos, tmp_path, capsys) -> None:
    assert (
        main(["pack", f"folder:{photos}", str(tmp_path / "p"), "--format", "jpeg", "--no-progress"])
        == 0
    )
    assert "JPEG" in capsys.readouterr().out
    assert main(["data", f"packed:{tmp_path / 'p'}"]) == 0
    text = capsys.readouterr().out
    assert "storage" in text and "MiB on disk" in text and "DCT scaling" in text
    assert (
        main(["pack", f"folder:{photos}", str(tmp_path / "q"), "--format", "jpeg", "--size", "64"])
        == 2
    )
    assert "--size and --fit apply to the raw format only" in capsys.readouterr().err
    assert main(["pack", f"folder:{photos}", str(tmp_path / "q")]) == 2
    assert "--size S is required for the raw format" in capsys.readouterr().err
    argv = ["pack", f"folder:{photos}", str(tmp_path / "q"), "--format", "jpeg"]
    assert main([*argv, "--shard-size", "5", "--no-progress"]) == 0  # 12 photos: 5 5 2
    out = capsys.readouterr().out
    assert "packed 12 images (2 classes)" in out and "sharded (jpeg shards): 3 shards" in out
    assert main(["data", f"packed:{tmp_path / 'q'}"]) == 0
    text = capsys.readouterr().out
    assert "sharded (jpeg shards): 3 shards, JPEG" in text and "DCT scaling" in text
    assert main([*argv, "--shard-size", "0"]) == 2
    assert "shard_size: expected a positive integer" in capsys.readouterr().err


def test_report_names_the_store_format(packed) -> None:
    from pyxfer.report.build import _views

    html = _views({"data": f"packed:{packed}", "views": "simclr", "size": 32, "seed": 0})
    assert "Store: JPEG" in html and "MiB on disk" in html and "DCT scaling" in html


# -- bad input ----------------------------------------------------------------------------------
def test_bad_members_fail_the_pack_naming_the_file_or_are_skipped(tmp_path) -> None:
    src = tmp_path / "src"
    make_photos(src, [(64, 80)] * 3)
    good = (src / "cat" / "000.jpg").read_bytes()
    (src / "cat" / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (src / "dog" / "text.jpg").write_text("not an image")
    for bad in ("trunc.jpg", "text.jpg"):
        with pytest.raises(ImageDecodeError, match=bad):
            only = tmp_path / f"only-{bad}"
            (only / "x").mkdir(parents=True)
            (only / "x" / bad).write_bytes(next(src.rglob(bad)).read_bytes())
            pack_jpeg(f"folder:{only}", tmp_path / "never", progress=False)
        assert not (tmp_path / "never").exists()
    with pytest.warns(UserWarning) as caught:
        out = pack_jpeg(f"folder:{src}", tmp_path / "ok", on_error="skip", progress=False)
    assert sorted(str(w.message).split("/")[-1].split(":")[0] for w in caught) == [
        "text.jpg",
        "trunc.jpg",
    ]
    store = load_dataset(f"packed:{out}")
    assert len(store) == 3 and store.info["skipped"] == 2


def _sof_size_offset(data: bytes) -> int:
    """Offset of the height field of the first SOF marker of a JPEG."""
    i = 2
    while True:
        assert data[i] == 0xFF
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xC3:
            return i + 5
        i += 2 + length


def test_a_header_that_lies_about_the_size_is_refused(tmp_path) -> None:
    make_photos(tmp_path / "src", [(64, 80)])
    path = next((tmp_path / "src").rglob("*.jpg"))
    data = bytearray(path.read_bytes())
    k = _sof_size_offset(bytes(data))
    data[k : k + 2] = (640).to_bytes(2, "big")  # 10x the rows the data holds
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match=path.name + ".*ends before the rows its header"):
        pack_jpeg(f"folder:{tmp_path / 'src'}", tmp_path / "p", progress=False)
    data[k : k + 4] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="over the limit") as info:
        pack_jpeg(f"folder:{tmp_path / 'src'}", tmp_path / "p", progress=False)
    assert isinstance(info.value.__cause__, ImageTooLargeError)


@pytest.fixture
def packed(tmp_path):
    make_photos(tmp_path / "src", [(64, 80), (72, 64), (80, 96), (64, 64)])
    return pack_jpeg(f"folder:{tmp_path / 'src'}", tmp_path / "p", progress=False)


def first_batch(store, **kw):
    with FusedLoader(store, batch_size=4, views="simclr", size=32, shuffle=False, **kw) as loader:
        return next(iter(loader))


def test_a_flipped_byte_is_an_error_naming_the_image(packed) -> None:
    index = np.load(packed / "index.npy")
    data = bytearray((packed / "data.bin").read_bytes())
    data[int(index[2, 0] + index[2, 1] // 2)] ^= 0x10  # inside image 2's entropy-coded data
    (packed / "data.bin").write_bytes(bytes(data))
    store = load_dataset(f"packed:{packed}")
    with pytest.raises(StoreCorruptError, match=r"image 2 \(from .*dog/001\.jpg\).*CRC-32"):
        first_batch(store)
    with pytest.raises(StoreCorruptError, match="image 2"):
        store[2]
    assert store[1][0].shape == (80, 96, 3)  # the other images still decode


def test_skipping_corrupt_images_drops_them_from_the_batch(packed) -> None:
    index = np.load(packed / "index.npy")
    data = bytearray((packed / "data.bin").read_bytes())
    data[int(index[1, 0] + 100)] ^= 0xFF
    (packed / "data.bin").write_bytes(bytes(data))
    store = load_dataset(f"packed:{packed}", on_error="skip")
    with pytest.warns(UserWarning, match="image 1"):
        batch = first_batch(store, drop_last=False)
    assert batch.indices.tolist() == [0, 2, 3] and batch.views[0].shape[0] == 3


def test_a_member_that_is_not_what_the_index_says_is_refused(packed, tmp_path) -> None:
    index = np.load(packed / "index.npy")
    data = (packed / "data.bin").read_bytes()
    # image 0 replaced by a JPEG of another size, its CRC recomputed: the header check catches it
    other = io.BytesIO()
    Image.fromarray(photo(np.random.default_rng(5), 48, 48)).save(other, "JPEG")
    member = other.getvalue()
    index2 = index.copy()
    index2[0, 1] = len(member)
    index2[1:, 0] += len(member) - index[0, 1]
    index2[0, 4] = zlib.crc32(member)
    (packed / "data.bin").write_bytes(member + data[index[0, 1] :])
    np.save(packed / "index.npy", index2)
    meta = json.loads((packed / "meta.json").read_text())
    meta["data_bytes"] = len(member) + len(data) - int(index[0, 1])
    (packed / "meta.json").write_text(json.dumps(meta))
    store = load_dataset(f"packed:{packed}")
    with pytest.raises(StoreCorruptError, match=r"image 0 .*header says 48x48, index.npy 80x64"):
        first_batch(store)
    # a truncated member whose CRC matches: libjpeg's truncation is an error, not grey pixels
    cut = data[: index[0, 1] // 2]
    index3 = index.copy()
    index3[0, 1] = len(cut)
    index3[1:, 0] -= index[0, 1] - len(cut)
    index3[0, 4] = zlib.crc32(cut)
    (packed / "data.bin").write_bytes(cut + data[index[0, 1] :])
    np.save(packed / "index.npy", index3)
    meta["data_bytes"] = len(cut) + len(data) - int(index[0, 1])
    (packed / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreCorruptError, match=r"image 0 .*(truncated|broken)"):
        first_batch(load_dataset(f"packed:{packed}"))
    # a member whose header claims 10x its rows, index and CRC made to agree: libjpeg fills
    # the missing rows with grey, which is refused
    lying = bytearray(data[: index[0, 1]])
    k = _sof_size_offset(bytes(lying))
    lying[k : k + 2] = (640).to_bytes(2, "big")
    index4 = index.copy()
    index4[0, 2], index4[0, 4] = 640, zlib.crc32(bytes(lying))
    (packed / "data.bin").write_bytes(bytes(lying) + data[index[0, 1] :])
    np.save(packed / "index.npy", index4)
    meta["data_bytes"] = len(data)
    (packed / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreCorruptError, match=r"image 0 .*ends before the rows its header"):
        first_batch(load_dataset(f"packed:{packed}"))


def test_index_and_data_that_disagree_fail_on_open(packed) -> None:
    data = (packed / "data.bin").read_bytes()
    (packed / "data.bin").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"index\.npy and data\.bin disagree"):
        load_dataset(f"packed:{packed}")
    (packed / "data.bin").write_bytes(data)
    index = np.load(packed / "index.npy")
    index[2, 0] += 1
    np.save(packed / "index.npy", index)
    with pytest.raises(ValueError, match=r"disagree at image 2 \(.*dog/001\.jpg\)"):
        load_dataset(f"packed:{packed}")
    index[2, 0] -= 1
    index[3, 2] = 10**6  # a size over the pixel limit
    index[3, 3] = 10**6
    np.save(packed / "index.npy", index)
    with pytest.raises(ValueError, match=r"image 3 .*over the limit"):
        load_dataset(f"packed:{packed}")


def test_a_store_never_unpickles(packed) -> None:
    np.save(packed / "index.npy", np.array([object()] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_dataset(f"packed:{packed}")


def test_warnings_are_not_raised_for_a_clean_store(packed) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = first_batch(load_dataset(f"packed:{packed}", on_error="skip"))
    assert len(batch) == 4


def test_pixels_are_packed_in_one_call_as_numpy_would() -> None:
    """The decode hands the kernel Pillow's pixels packed in one encoder call: the same array
    as ``np.asarray(img)`` (read-only too), for RGB and grey, odd sizes and a 1x1 image."""
    from pyxfer.data.jpegstore import _pixels

    rng = np.random.default_rng(3)
    for h, w in ((1, 1), (7, 5), (301, 517)):
        for c in (3, 1):
            arr = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            img = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
            got = _pixels(img)
            assert got.shape == (h, w, c) and got.dtype == np.uint8 and not got.flags.writeable
            np.testing.assert_array_equal(got, arr)
