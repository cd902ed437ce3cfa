"""Streaming pack (bounded memory), sharded stores, and how the loader splits their shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _data_helpers import make_folder, random_image, write_image
from PIL import Image

from pyxfer.cli import main
from pyxfer.data import ImageStore, ShardedStore, load_dataset, pack
from pyxfer.data.store import ImagesWriter
from pyxfer.engine.loader import FusedLoader, epoch_order


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    make_folder(tmp_path / "src", {"a": 7, "b": 5, "c": 6}, sizes=[(9, 7), (6, 10)])
    return tmp_path / "src"


def _sharded(tmp_path: Path, photos: Path, shard_size: int = 4) -> Path:
    return pack(f"folder:{photos}", tmp_path / "sh", size=6, shard_size=shard_size, progress=False)


# -- streaming writes ------------------------------------------------------------------------
def test_images_writer_closes_the_gaps_of_skipped_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 3, 2, 3), dtype=np.uint8)
    w = ImagesWriter(tmp_path / "images.npy", 7, (3, 2, 3))
    w.put([5, 6, 1], imgs[[5, 6, 1]])  # any order; rows 0, 2 and 4 never come
    w.put([3], imgs[[3]])
    kept = w.finish()
    assert kept.tolist() == [1, 3, 5, 6]
    back = np.load(tmp_path / "images.npy")
    np.testing.assert_array_equal(back, imgs[[1, 3, 5, 6]])
    with pytest.raises(ValueError, match=r"rows: expected values in \[0, 2\)"):
        ImagesWriter(tmp_path / "x.npy", 2, (3, 2, 3)).put([2], imgs[:1])
    with pytest.raises(ValueError, match="images: expected uint8"):
        ImagesWriter(tmp_path / "y.npy", 2, (3, 2, 3)).put([0], imgs[:1, :2])


def test_pack_of_a_tar_keeps_the_sorted_order_whatever_the_archive_order(tmp_path) -> None:
    rng = np.random.default_rng(1)
    files = []
    for cls in ("b", "a"):
        for i in (3, 1, 2):
            path = tmp_path / "tree" / cls / f"{i}.png"
            write_image(path, random_image(rng, 5 + i, 6))
            files.append(path)
    (tmp_path / "tree" / "a" / "9.png").write_bytes(b"\x89PNG broken")
    files.insert(2, tmp_path / "tree" / "a" / "9.png")
    archive = tmp_path / "x.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for f in files:  # not in sorted order
            tf.add(f, arcname=f"top/{f.relative_to(tmp_path / 'tree')}")
    with pytest.warns(UserWarning, match=r"9\.png"):
        out = pack(f"tar:{archive}", tmp_path / "p", size=4, on_error="skip", progress=False)
    with pytest.warns(UserWarning, match=r"9\.png"):
        direct = load_dataset(f"tar:{archive}", size=4, on_error="skip")
    store = load_dataset(f"packed:{out}")
    assert store.labels.tolist() == direct.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(store.images, direct.images)
    assert store.info["skipped"] == 1


_PEAK = """
import resource, sys
from pyxfer.data import pack, pack_jpeg
if sys.argv[3] == "jpeg":
    pack_jpeg(sys.argv[1], sys.argv[2], threads=2, progress=False, shard_size=%s)
else:
    pack(sys.argv[1], sys.argv[2], size=256, threads=2, progress=False, shard_size=%s)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kib(src: Path, dst: Path, shard_size: int | None = None, fmt: str = "raw") -> int:
    run = subprocess.run(
        [sys.executable, "-c", _PEAK % (shard_size, shard_size), f"folder:{src}", str(dst), fmt],
        capture_output=True,
        text=True,
        check=True,
        cwd=dst.parent,
    )
    return int(run.stdout.split()[-1])


@pytest.mark.parametrize(("shard_size", "fmt"), [(None, "raw"), (200, "raw"), (200, "jpeg")])
def test_pack_memory_does_not_grow_with_the_number_of_images(tmp_path, shard_size, fmt) -> None:
    """Packing 3x the photos peaks at about the same resident memory: the chunk in flight,
    not the data set (each 256x256 RGB image is 192 KiB: 600 more would be 113 MiB; a JPEG
    store holds the images in flight, at most two per thread)."""
    x = np.linspace(0, 255, 384, dtype=np.float32)
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    for i in range(900):
        if i < 300:
            img = (x[None, :, None] * 0.5 + x[:320, None, None] * 0.5 + i) % 256
            Image.fromarray(np.repeat(img, 3, 2).astype(np.uint8)).save(small / f"{i:04d}.jpg")
        os.link(small / f"{i % 300:04d}.jpg", big / f"{i:04d}.jpg")
    low = _peak_kib(small, tmp_path / "p-small", shard_size, fmt)
    high = _peak_kib(big, tmp_path / "p-big", shard_size, fmt)
    assert len(load_dataset(f"packed:{tmp_path / 'p-big'}")) == 900
    assert high - low < 60 * 1024, (low, high)  # KiB


# -- sharded stores --------------------------------------------------------------------------
def test_sharded_pack_reads_as_the_unsharded_store(tmp_path, photos) -> None:
    out = _sharded(tmp_path, photos)
    plain = load_dataset(f"packed:{pack(f'folder:{photos}', tmp_path / 'plain', size=6)}")
    store = load_dataset(f"packed:{out}")
    assert isinstance(store, ShardedStore) and store.num_shards == 5
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.npy",
        "shard-00000",
        "shard-00001",
        "shard-00002",
        "shard-00003",
        "shard-00004",
        "shards.json",
    ]
    assert store.shard_bounds.tolist() == [0, 4, 8, 12, 16, 18]
    assert store.labels.tolist() == plain.labels.tolist() and store.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(store.images, plain.images)
    idx = np.array([17, 0, 5, 4])
    np.testing.assert_array_equal(store.batch(idx), plain.images[idx])
    sub = store.subset([3, 9, 10])
    assert sub.shard_bounds.tolist() == [0, 1, 1, 3, 3, 3]
    np.testing.assert_array_equal(sub.images, plain.images[[3, 9, 10]])
    assert store.subset([9, 3]).shard_bounds is None  # not in store order
    np.testing.assert_array_equal(store.image(-1), plain.image(17))
    d = store.describe()
    assert d["storage"] == "sharded" and d["member"] == "raw" and d["shards"] == 5
    assert d["disk_bytes"] == sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    import pickle

    back = pickle.loads(pickle.dumps(store.subset([1, 2])))
    np.testing.assert_array_equal(back.images, plain.images[[1, 2]])


def test_cli_pack_shards_and_data_shows_them(tmp_path, photos, capsys) -> None:
    dst = tmp_path / "sh"
    args = ["pack", f"folder:{photos}", str(dst), "--size", "6", "--shard-size", "10"]
    assert main([*args, "--no-progress"]) == 0
    assert "packed 18 images (6x6x3, 3 classes)" in capsys.readouterr().out
    assert main(["data", f"packed:{dst}"]) == 0
    assert "sharded (raw shards): 2 shards" in capsys.readouterr().out
    assert main(["data", f"packed:{dst}/shard-00001"]) == 0  # one shard is a store
    assert "raw, 0.0 MiB on disk" in capsys.readouterr().out
    assert main(["data", str(dst), "--json"]) == 0  # a bare path is guessed
    d = json.loads(capsys.readouterr().out)
    assert d["shards"] == 2 and d["count"] == 18
    assert main([*args, "--no-progress"]) == 2  # exists
    assert main([*args, "--no-progress", "--overwrite", "--shard-size", "5"]) == 0
    assert load_dataset(f"packed:{dst}").num_shards == 4
    assert main(["pack", "digits", str(tmp_path / "z"), "--size", "8", "--shard-size", "0"]) == 2
    assert "shard_size: expected a positive integer" in capsys.readouterr().err


def test_a_missing_shard_is_an_error_naming_it_before_any_batch(tmp_path, photos) -> None:
    import shutil

    out = _sharded(tmp_path, photos)
    shutil.rmtree(out / "shard-00002")
    with pytest.raises(ValueError, match=r"shard 2 \(shard-00002\) is missing"):
        load_dataset(f"packed:{out}")


def test_a_truncated_or_replaced_shard_is_an_error_naming_it(tmp_path, photos) -> None:
    out = _sharded(tmp_path, photos)
    images = out / "shard-00001" / "images.npy"
    with open(images, "r+b") as f:
        f.truncate(images.stat().st_size - 10)
    with pytest.raises(ValueError, match=r"shard-00001/images\.npy is .* bytes, shards\.json says"):
        load_dataset(f"packed:{out}")
    # a shard packed again (another store in its place) no longer matches the index
    out = _sharded(tmp_path / "again", photos)
    other = pack("digits", tmp_path / "d", size=6, channels=3, progress=False)
    import shutil

    shutil.rmtree(out / "shard-00003")
    shutil.copytree(other, out / "shard-00003")
    with pytest.raises(ValueError, match=r"shard-00003/\S+ is .* bytes|shard-00003/\S+ does not"):
        load_dataset(f"packed:{out}")


def test_index_and_data_that_disagree_fail_at_the_first_batch_touching_them(
    tmp_path, photos
) -> None:
    out = _sharded(tmp_path, photos)
    doc = json.loads((out / "shards.json").read_text())
    # the index and the top-level labels say shard 1 holds other labels than its own
    labels = np.load(out / "labels.npy")
    labels[4:8] = (labels[4:8] + 1) % 3
    np.save(out / "labels.npy", labels)
    store = load_dataset(f"packed:{out}")
    store.batch([0, 1, 2, 3])  # shard 0 is fine
    with pytest.raises(ValueError, match=r"shard 1 \(shard-00001\): its labels differ"):
        store.batch([0, 5])
    loader = FusedLoader(store, 6, None, size=6, shuffle=False, threads=1)
    with loader, pytest.raises(ValueError, match="shard-00001"):
        list(loader)
    # a count that disagrees with the shard
    doc["shards"][4]["count"] += 1
    doc["count"] += 1
    (out / "shards.json").write_text(json.dumps(doc))
    np.save(out / "labels.npy", np.concatenate([labels, [0]]))
    with pytest.raises(ValueError, match=r"shard-00004\): holds 2 images, shards\.json says 3"):
        load_dataset(f"packed:{out}").batch([17])


def test_an_index_naming_a_path_outside_the_store_is_refused(tmp_path, photos) -> None:
    out = _sharded(tmp_path, photos)
    doc = json.loads((out / "shards.json").read_text())
    for bad in ("../sh/shard-00000", "/etc", ".hidden"):
        doc["shards"][0]["path"] = bad
        (out / "shards.json").write_text(json.dumps(doc))
        with pytest.raises(ValueError, match="expected a plain directory name inside the store"):
            load_dataset(f"packed:{out}")
    doc["shards"][0]["path"] = "shard-00000"
    doc["shards"][0]["files"]["../../x"] = {"bytes": 1, "sha256": ""}
    (out / "shards.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"has no file '\.\./\.\./x'"):
        load_dataset(f"packed:{out}")


def test_verify_hashes_the_pixels_too(tmp_path, photos) -> None:
    out = _sharded(tmp_path, photos)
    from pyxfer.data import shards

    images = out / "shard-00000" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF  # same size, other pixels
    images.write_bytes(bytes(data))
    old = shards.SMALL_FILE
    shards.SMALL_FILE = 0  # every file counts as large here
    try:
        load_dataset(f"packed:{out}")  # sizes match: opens
        with pytest.raises(ValueError, match=r"shard-00000/images\.npy does not have the SHA-256"):
            load_dataset(f"packed:{out}", verify=True)
    finally:
        shards.SMALL_FILE = old


# -- the order of an epoch -------------------------------------------------------------------
def test_a_plain_store_keeps_its_order() -> None:
    """Without shards the order is the permutation it always was (runs resume across it)."""
    n, w = 103, 4
    rng = np.random.Generator(np.random.Philox(key=5 + (3 << 64)))
    old = np.resize(rng.permutation(n), 26 * w)
    new = epoch_order(n, w, 26, seed=5, epoch=3)
    np.testing.assert_array_equal(new, old)
    np.testing.assert_array_equal(epoch_order(n, w, 25, seed=5, epoch=3), old[:100])


@pytest.mark.parametrize(
    ("sizes", "world"), [([10] * 8, 2), ([10] * 8, 4), ([7, 10, 3, 10, 10], 3)]
)
def test_sharded_order_gives_each_rank_its_own_shards(sizes, world) -> None:
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    n = int(bounds[-1])
    shard_of = np.searchsorted(bounds, np.arange(n), side="right") - 1
    seen_shards = []
    for epoch in range(3):
        order = epoch_order(n, world, -(-n // world), seed=1, epoch=epoch, bounds=bounds)
        ranks = [order[r::world] for r in range(world)]
        assert {len(r) for r in ranks} == {-(-n // world)}
        assert set(np.concatenate(ranks).tolist()) == set(range(n))  # every image
        mine = [set(shard_of[r].tolist()) for r in ranks]
        if len(sizes) % world == 0 and len(set(sizes)) == 1:  # whole shards, disjoint
            assert all(len(m) == len(sizes) // world for m in mine)
            assert set().union(*mine) == set(range(len(sizes)))
            assert sum(len(m) for m in mine) == len(sizes)
        else:  # at most the runs' boundary shards are shared
            assert sum(len(m) for m in mine) <= len(sizes) + world - 1
        seen_shards.append(mine)
        again = epoch_order(n, world, -(-n // world), seed=1, epoch=epoch, bounds=bounds)
        np.testing.assert_array_equal(order, again)  # deterministic
        # a rank's images are shuffled across its shards, not read shard after shard
        assert not np.all(np.diff(shard_of[ranks[0]]) >= 0)
    assert seen_shards[0] != seen_shards[1] or seen_shards[1] != seen_shards[2]  # reshuffled
    cut = epoch_order(n, world, n // world, seed=1, epoch=0, bounds=bounds)
    assert len(set(cut.tolist())) == len(cut) == n // world * world  # drop_last: no repeats


def _assert_resumes_bit_for_bit_on_its_shards(store, size: int) -> None:
    """Rank 1 of 2 on a store of 6 shards of 3 images: a loader stopped after 2 batches and
    resumed from its state gives the rest of the uninterrupted run's batches, bit for bit, and
    the rank's epoch touches only its 3 whole shards."""

    def make() -> FusedLoader:
        return FusedLoader(
            store, 2, "byol", size=size, seed=4, epoch=1, threads=1, rank=1, world_size=2
        )

    with make() as full:
        reference = list(full)
    first = make()
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    first.close()
    resumed = make()
    resumed.load_state_dict(state)
    with resumed:
        rest = list(resumed)
    assert len(rest) == len(reference) - 2 == 2
    for a, b in zip(rest, reference[2:], strict=True):
        assert torch_equal(a.indices, b.indices)
        assert all(torch_equal(x, y) for x, y in zip(a.views, b.views, strict=True))
    assert len(store.shards_of(full.epoch_indices(1))) == 3


def test_loader_on_a_sharded_store_resumes_bit_for_bit(tmp_path, photos) -> None:
    store = load_dataset(f"packed:{_sharded(tmp_path, photos, shard_size=3)}")
    _assert_resumes_bit_for_bit_on_its_shards(store, size=6)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_plain_packed_store_with_a_bad_images_file_is_a_clear_error(tmp_path) -> None:
    out = ImageStore(np.zeros((3, 2, 2, 1), np.uint8)).save(tmp_path / "s")
    with open(out / "images.npy", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match=r"images\.npy is .* bytes, its header says"):
        load_dataset(f"packed:{out}")
    np.save(out / "images.npy", np.zeros((3, 2, 2, 1), np.uint8))
    np.save(out / "labels.npy", np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"labels\.npy holds \(2,\) labels, images\.npy 3"):
        load_dataset(f"packed:{out}")


def test_shards_that_decode_at_load_time_are_split_by_shard_too(tmp_path, photos) -> None:
    """A sharded store of compressed shards hands the loader's decode-aware calls to each
    shard with its own rows, and puts the answers back in batch order (kept positions)."""
    from pyxfer.data.shards import DecodingShardedStore

    path = _sharded(tmp_path, photos)
    raw = load_dataset(f"packed:{path}")  # 5 shards: 4 4 4 4 2
    plain = load_dataset(f"packed:{path}")  # shards of its own, left raw

    class Compressed:  # what a compressed shard answers: sizes from its index, decoded views
        def __init__(self, k: int) -> None:
            self.k, self.store = k, raw._shards.get(k)

        def original_sizes(self, local):
            return np.stack([np.asarray(local) + 100 * self.k, np.full(len(local), 7)], axis=1)

        def decode_views(self, local, params, sizes, threads=0):
            keep = np.asarray([i for i, r in enumerate(local) if (r + self.k) % 3], np.int64)
            prm = params.reshape(len(local), len(sizes), -1)[keep] + 1000 * (self.k + 1)
            imgs = [self.store.image(int(local[i])) for i in keep]
            return imgs, prm.reshape(len(keep) * len(sizes), params.shape[1]), keep

    shards = raw._shards
    shards.opened = {k: Compressed(k) for k in range(5)}
    store = DecodingShardedStore(shards, raw.class_names)
    idx = np.array([17, 0, 5, 9, 4, 16])
    bounds = shards.bounds
    k_of = np.searchsorted(bounds, idx, side="right") - 1
    local = idx - bounds[k_of]
    assert store.original_sizes(idx).tolist() == [
        [int(r + 100 * k), 7] for r, k in zip(local, k_of, strict=True)
    ]
    params = np.arange(len(idx) * 2 * 3, dtype=np.float32).reshape(len(idx) * 2, 3)
    images, prm, kept = store.decode_views(idx, params, [(4, 4), (2, 2)])
    expect = [i for i in range(len(idx)) if (local[i] + k_of[i]) % 3]
    assert kept.tolist() == expect
    for j, i in enumerate(expect):
        np.testing.assert_array_equal(images[j], plain.image(int(idx[i])))
        np.testing.assert_array_equal(
            prm[2 * j : 2 * j + 2], params[2 * i : 2 * i + 2] + 1000 * (k_of[i] + 1)
        )
    assert isinstance(store.subset([1, 2]), DecodingShardedStore)


# -- sharded compressed (JPEG) stores ----------------------------------------------------------
@pytest.fixture
def jpegs(tmp_path: Path) -> Path:
    """18 JPEG files of 40-64 px a side (views at 8 px decode some of them at 1/2 to 1/8)."""
    sizes = [(40, 56), (64, 48), (48, 48)]
    make_folder(tmp_path / "jpg", {"a": 7, "b": 5, "c": 6}, sizes=sizes, ext=".jpg")
    return tmp_path / "jpg"


def _jpeg_pair(tmp_path: Path, jpegs: Path, shard_size: int = 4) -> tuple[Any, Any]:
    from pyxfer.data import pack_jpeg

    plain = pack_jpeg(f"folder:{jpegs}", tmp_path / "plain.px", threads=2, progress=False)
    sh = pack_jpeg(
        f"folder:{jpegs}", tmp_path / "sh.px", threads=2, progress=False, shard_size=shard_size
    )
    return load_dataset(f"packed:{plain}"), load_dataset(f"packed:{sh}")


def _views_by_index(store: Any, **kw: Any) -> dict[int, list[np.ndarray]]:
    with FusedLoader(store, 3, "simclr", size=8, threads=2, drop_last=False, **kw) as loader:
        batches = list(loader)
    out: dict[int, list[np.ndarray]] = {}
    for b in batches:
        for j, i in enumerate(b.indices.tolist()):
            assert i not in out
            out[i] = [v[j].numpy() for v in b.views]
    return out


def test_jpeg_shards_read_and_augment_as_the_unsharded_jpeg_store(tmp_path, jpegs) -> None:
    """pack --format jpeg --shard-size: a directory of compressed stores with the raw shards'
    index; every image, label and view (same seed) is the unsharded store's."""
    from pyxfer.data.shards import DecodingShardedStore, storage_info, storage_text

    plain, store = _jpeg_pair(tmp_path, jpegs)
    root = Path(store.info["sharded_path"])
    assert isinstance(store, DecodingShardedStore) and store.num_shards == 5
    assert sorted(p.name for p in (root / "shard-00001").iterdir()) == [
        "data.bin",
        "index.npy",
        "labels.npy",
        "meta.json",
        "names.json",
    ]
    doc = json.loads((root / "shards.json").read_text())
    assert [e["storage"] for e in doc["shards"]] == ["jpeg"] * 5
    assert doc["info"]["shard_size"] == 4 and doc["info"]["quality"] == 90
    assert store.shard_bounds.tolist() == [0, 4, 8, 12, 16, 18]
    assert store.labels.tolist() == plain.labels.tolist() and store.class_names == ["a", "b", "c"]
    assert store.image_shape is None and store.channels == 3
    np.testing.assert_array_equal(store.original_sizes(np.arange(18)), plain.image_sizes())
    for i in (0, 5, 17):
        np.testing.assert_array_equal(store.image(i), plain.image(i))
    # the bytes of each file are kept: the shards hold the same data as the plain store
    data = b"".join((root / f"shard-{k:05d}" / "data.bin").read_bytes() for k in range(5))
    assert data == (Path(plain.info["packed_path"]) / "data.bin").read_bytes()
    for epoch in (0, 1):
        got = _views_by_index(store, seed=2, epoch=epoch)
        want = _views_by_index(plain, seed=2, epoch=epoch)
        assert sorted(got) == sorted(want) == list(range(18))
        for i in range(18):
            for a, b in zip(got[i], want[i], strict=True):
                np.testing.assert_array_equal(a, b)
    text = storage_text(storage_info(store) or {})
    assert text.startswith("sharded (jpeg shards): 5 shards, JPEG,") and "quality 90" not in text
    assert "every JPEG kept as it was" in text and "DCT scaling" in text
    assert store.describe()["member"] == "jpeg"


def test_loader_on_jpeg_shards_resumes_bit_for_bit_and_reads_its_shards(tmp_path, jpegs) -> None:
    _, store = _jpeg_pair(tmp_path, jpegs, shard_size=3)
    _assert_resumes_bit_for_bit_on_its_shards(store, size=8)


def test_bad_jpeg_shards_are_errors_naming_the_shard(tmp_path, jpegs) -> None:
    import shutil

    from pyxfer.data.jpegstore import StoreCorruptError
    from pyxfer.data.shards import _sha256

    _, store = _jpeg_pair(tmp_path, jpegs)
    root = Path(store.info["sharded_path"])
    doc = json.loads((root / "shards.json").read_text())
    # a shard's index that disagrees with its data.bin, the hashes brought up to date (so only
    # the shard's own checks can see it): an error naming the shard at the first batch
    index_file = root / "shard-00001" / "index.npy"
    index = np.load(index_file)
    index[2, 1] += 1
    np.save(index_file, index)
    doc["shards"][1]["files"]["index.npy"] = {
        "bytes": index_file.stat().st_size,
        "sha256": _sha256(index_file),
    }
    (root / "shards.json").write_text(json.dumps(doc))
    bad = load_dataset(f"packed:{root}")
    bad.batch([0, 1])  # shard 0 is fine
    loader = FusedLoader(bad, 18, "simclr", size=8, shuffle=False, threads=1)
    with loader, pytest.raises(ValueError, match=r"shard 1 \(shard-00001\): cannot be read: "):
        list(loader)
    # without the hashes brought up to date, opening the store names the file
    doc["shards"][1]["files"]["index.npy"]["sha256"] = "0" * 64
    (root / "shards.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"shard-00001/index\.npy does not have the SHA-256"):
        load_dataset(f"packed:{root}")
    # a truncated data.bin, and a shard missing in the middle
    _, store = _jpeg_pair(tmp_path / "2", jpegs)
    root = Path(store.info["sharded_path"])
    data = root / "shard-00003" / "data.bin"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - 1)
    with pytest.raises(ValueError, match=r"shard-00003/data\.bin is .* bytes, shards\.json says"):
        load_dataset(f"packed:{root}")
    shutil.rmtree(root / "shard-00002")
    with pytest.raises(ValueError, match=r"shard 2 \(shard-00002\) is missing"):
        load_dataset(f"packed:{root}")
    # a flipped byte inside a shard's JPEG data: the image and its shard named, or skipped
    _, store = _jpeg_pair(tmp_path / "3", jpegs)
    root = Path(store.info["sharded_path"])
    data = root / "shard-00002" / "data.bin"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    doc = json.loads((root / "shards.json").read_text())
    doc["shards"][2]["files"]["data.bin"]["sha256"] = _sha256(data)
    (root / "shards.json").write_text(json.dumps(doc))
    loader = FusedLoader(load_dataset(f"packed:{root}"), 18, "simclr", size=8)
    with loader, pytest.raises(StoreCorruptError, match=r"shard-00002': image \d \(from .*\) is"):
        list(loader)
    skipping = load_dataset(f"packed:{root}", on_error="skip")
    loader = FusedLoader(skipping, 18, "simclr", size=8, shuffle=False)
    with loader, pytest.warns(UserWarning, match="skipping corrupt image"):
        (batch,) = list(loader)
    (lost,) = set(range(18)) - set(batch.indices.tolist())
    assert len(batch.indices) == 17 and 8 <= lost < 12  # an image of shard 2
    with pytest.raises(ValueError, match=r"on_error: the shards of .* are raw, which decode"):
        load_dataset(f"packed:{_sharded(tmp_path, jpegs)}", on_error="skip")
