"""The torch-free runtime: bundle checks, input forms, preprocessing, session options."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import pyxfer  # noqa: E402
from pyxfer.export import to_onnx  # noqa: E402
from pyxfer.runtime import BundleError, Predictor  # noqa: E402
from pyxfer.runtime._preprocess import preprocess, resize_crop  # noqa: E402

NAMES = ["ant", "bee", "cat", "dog", "eel"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A random-weight RGB LeNet (16 px, 5 classes); the runtime resizes to 20 and crops 16."""
    torch.manual_seed(0)
    model = pyxfer.create_backbone("lenet", in_chans=3, img_size=16, width=0.25, num_classes=5)
    out = tmp_path_factory.mktemp("rt") / "bundle"
    return to_onnx(model.eval(), out, class_names=NAMES, resize=20, dynamic_size=False)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("png")
    paths = []
    for i, (h, w) in enumerate([(30, 40), (25, 25), (50, 21)]):
        path = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _read(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_import_and_predict_without_torch(bundle: Path, pngs: list[str], tmp_path) -> None:
    code = f"""
import json, sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
import pyxfer.runtime
from pyxfer.runtime import Predictor
p = Predictor({str(bundle)!r}, threads=1)
preds = p.predict({pngs!r} + [np.full((9, 31, 3), 7, np.uint8)], top_k=3)
assert sys.modules["torch"] is None
print(json.dumps([q.to_dict() for q in preds]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = Predictor(bundle).predict([*pngs, np.full((9, 31, 3), 7, np.uint8)], top_k=3)
    assert [g["labels"] for g in got] == [w.labels for w in want]
    np.testing.assert_allclose([g["scores"] for g in got], [w.scores for w in want], atol=1e-6)


def test_input_forms_agree(bundle: Path, pngs: list[str]) -> None:
    p = Predictor(bundle, threads=1)
    arrays = [_read(path) for path in pngs]
    from_paths = p.scores(pngs)
    np.testing.assert_allclose(p.scores(arrays), from_paths, atol=1e-6)  # ragged list
    for i, path in enumerate(pngs):
        single = p.predict(path, top_k=5)
        assert single.indices == p.predict(arrays[i], top_k=5).indices
        np.testing.assert_allclose(single.scores, np.sort(from_paths[i])[::-1], atol=1e-6)
    batch = np.stack([a[:20, :20] for a in arrays])  # an (N, H, W, C) batch
    by_one = np.concatenate([p.scores(a) for a in batch])
    np.testing.assert_allclose(p.scores(batch), by_one, atol=1e-6)
    grey = arrays[0][:, :, 0]
    np.testing.assert_allclose(
        p.scores(grey), p.scores(np.repeat(grey[:, :, None], 3, axis=2)), atol=1e-6
    )
    assert len(p.predict(pngs)) == 3 and isinstance(p.predict(pngs[0]).labels[0], str)


def test_probabilities_and_top_k(bundle: Path) -> None:
    p = Predictor(bundle)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    probs = p.scores(images)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    preds = p.predict(images, top_k=10)  # capped at the 5 classes
    for row, pred in zip(probs, preds, strict=True):
        assert len(pred.labels) == 5 and pred.scores == sorted(pred.scores, reverse=True)
        assert pred.labels[0] == NAMES[int(row.argmax())]
    with pytest.raises(ValueError, match="top_k"):
        p.predict(images, top_k=0)
    with pytest.raises(ValueError, match="dtype uint8"):
        p.predict(images.astype(np.float32))
    with pytest.raises(ValueError, match="embed: this bundle outputs logits"):
        p.embed(images)
    with pytest.raises(ValueError, match="add_class: only zero-shot"):
        p.add_class("fox", np.ones(8))


def test_session_options(bundle: Path) -> None:
    p = Predictor(bundle, threads=1)
    opts = p.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = Predictor(bundle, threads=2, spin=True).session.get_session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert p.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="threads"):
        Predictor(bundle, threads=-1)


def _edit_json(root: Path, fn) -> None:
    meta = json.loads((root / "pyxfer.json").read_text())
    fn(meta)
    (root / "pyxfer.json").write_text(json.dumps(meta))


def _flip_byte(root: Path) -> None:
    data = bytearray((root / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / "model.onnx").write_bytes(bytes(data))


def _truncate(root: Path) -> None:
    data = (root / "model.onnx").read_bytes()
    (root / "model.onnx").write_bytes(data[: len(data) // 2])


def _wrong_input(meta: dict) -> None:
    meta["input"].update(dtype="uint8", layout="NHWC")
    meta["preprocess"]["normalize_in_graph"] = True


TAMPERS = {
    "flipped byte": (_flip_byte, "sha256"),
    "truncated": (_truncate, "truncated"),
    "deleted": (lambda r: (r / "model.onnx").unlink(), "model.onnx is missing"),
    "no metadata": (lambda r: (r / "pyxfer.json").unlink(), "pyxfer.json is missing"),
    "version": (
        lambda r: _edit_json(r, lambda m: m.update(format_version=99)),
        "format_version 99 is not supported",
    ),
    "input spec": (lambda r: _edit_json(r, _wrong_input), "wrong input spec"),
    "bad spec": (
        lambda r: _edit_json(r, lambda m: m["preprocess"].update(std=[1.0])),
        "input spec in pyxfer.json is invalid",
    ),
    "labels": (
        lambda r: _edit_json(r, lambda m: m.update(class_names=NAMES[::-1])),
        "does not match the metadata inside",
    ),
    "garbage": (lambda r: (r / "pyxfer.json").write_text("{not json"), "unreadable"),
}


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_tampered_bundle_is_refused(bundle: Path, tmp_path, kind: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    Predictor(copy)  # intact copy loads
    tamper, message = TAMPERS[kind]
    tamper(copy)
    with pytest.raises(BundleError, match=message):
        Predictor(copy)


def test_unreadable_images_are_named(bundle: Path, tmp_path, capsys) -> None:
    from pyxfer.cli import main

    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    p = Predictor(bundle)
    with pytest.raises(ValueError, match=r"notes\.jpg"):
        p.predict([str(bad)])
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        p.predict(str(tmp_path / "missing.png"))
    assert main(["predict", str(bundle), str(bad)]) == 2
    assert "notes.jpg" in capsys.readouterr().err


def test_missing_int8_and_not_a_bundle(bundle: Path, tmp_path) -> None:
    with pytest.raises(BundleError, match="has no int8 model"):
        Predictor(bundle, int8=True)
    with pytest.raises(BundleError, match="expected a bundle directory"):
        Predictor(tmp_path / "nothing")


def test_resize_crop_offsets_follow_torchvision() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 27, 3), dtype=np.uint8)  # shorter side already 20
    out = resize_crop([img], resize=20, crop=15, channels=3)[0]
    top, left = round((20 - 15) / 2), round((27 - 15) / 2)  # 2 (banker's rounding), 6
    np.testing.assert_array_equal(out, img[top : top + 15, left : left + 15])
    tall = rng.integers(0, 256, (33, 16, 1), dtype=np.uint8)
    out = resize_crop(np.stack([tall]), resize=16, crop=16, channels=1)[0]
    np.testing.assert_array_equal(out, tall[8:24])
    with pytest.raises(ValueError, match="crop: expected <= resize"):
        resize_crop([img], resize=10, crop=12, channels=3)
    with pytest.raises(ValueError, match="dtype uint8"):
        resize_crop([img.astype(np.int16)], resize=20, crop=16, channels=3)


def test_preprocess_normalizes_the_crop() -> None:
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 60), (64, 48)]]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = preprocess(imgs, resize=36, crop=32, mean=mean, std=std)
    crops = resize_crop(imgs, resize=36, crop=32, channels=3).astype(np.float64) / 255
    want = ((crops - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    assert got.shape == (2, 3, 32, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_preprocess_matches_torchvision_golden(shared_data: Path) -> None:
    golden = np.load(shared_data / "torchvision-golden" / "aug_golden.npz")
    cases = sorted({k.split("/")[0] for k in golden.files if k.endswith("/eval/output")})
    assert cases
    for case in cases:
        g = {f: golden[f"{case}/eval/{f}"] for f in ("resize", "crop", "mean", "std", "output")}
        got = preprocess(
            [golden[f"inputs/{case}"]], resize=int(g["resize"]), crop=int(g["crop"]),
            mean=g["mean"], std=g["std"],
        )[0].transpose(1, 2, 0)  # fmt: skip
        diff = np.abs(got - g["output"]) * np.array(g["std"]) * 255  # in grey levels
        assert diff.max() <= 1.01, f"case {case}: {diff.max():.2f} grey levels"
        assert diff.mean() <= 0.1, f"case {case}: mean {diff.mean():.3f} grey levels"


@pytest.mark.parametrize("model_channels", [1, 3])
def test_bundle_equals_torch_on_images_with_the_other_channel_count(tmp_path, model_channels):
    """Train/serve parity of grey <-> RGB: a bundle fed images whose channel count differs from
    its model's gives the outputs torch gives on the same images converted the way training
    and evaluation convert them (one definition, :mod:`pyxfer.data.channels`)."""
    from pyxfer.data import ImageStore
    from pyxfer.data.channels import LUMA, convert_all
    from pyxfer.ops import normalize
    from pyxfer.runtime._preprocess import _with_channels
    from pyxfer.transfer.common import conform

    torch.manual_seed(0)
    model = pyxfer.create_backbone(
        "lenet", in_chans=model_channels, img_size=16, width=0.25, num_classes=5
    ).eval()
    bundle = to_onnx(model, tmp_path / "b", class_names=NAMES, head="logits", resize=16)
    rng = np.random.default_rng(3)
    other = 3 if model_channels == 1 else 1
    images = rng.integers(0, 256, (64, 16, 16, other), dtype=np.uint8)
    # the training side (finetune / adapt conform their data; evaluation converts per batch)
    conformed = np.asarray(conform(ImageStore(images), model_channels).images)
    np.testing.assert_array_equal(conformed, convert_all(images, model_channels))
    # the runtime converts each image the same way, to the grey level
    served = np.stack([_with_channels(im, model_channels, "x") for im in images])
    np.testing.assert_array_equal(served, conformed)
    spec = model.input_spec
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(conformed, spec.mean, spec.std)))
    want = torch.softmax(logits.double(), dim=1).numpy()
    got = Predictor(bundle, threads=1).scores(images)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert LUMA.tolist() == pytest.approx([0.2989, 0.587, 0.114])  # torchvision's, the kernel's


# -- a bundle is data: every byte it reads is hashed and named plainly ---------------------------
def _resign(root: Path, edit_meta=None, edit_model=None, extra_files=()) -> None:
    """Edit a bundle the way a forger would: pyxfer.json, the metadata inside each model and
    every file record stay consistent (the hashes catch accidents, not forgers)."""
    import onnx

    from pyxfer.runtime import bundle as fmt

    meta = json.loads((root / "pyxfer.json").read_text())
    if edit_meta:
        edit_meta(meta)
    for name in meta["models"].values():
        model = onnx.load(str(root / name), load_external_data=False)
        if edit_model:
            edit_model(model)
        for prop in model.metadata_props:
            if prop.key == fmt.METADATA_KEY:
                prop.value = fmt.canonical_json(fmt.meta_without_files(meta))
        onnx.save_model(model, str(root / name))
    meta["files"] = fmt.file_records(root, [*meta["files"], *extra_files])
    (root / "pyxfer.json").write_text(json.dumps(meta))


def _externalize(target: Path, location: str):
    """A model edit moving the largest initializer's bytes to ``target`` (named ``location``)."""

    def edit(model) -> None:
        import onnx

        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tensor.raw_data)
        for key, value in (("location", location), ("offset", "0")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        entry = tensor.external_data.add()
        entry.key, entry.value = "length", str(len(tensor.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL

    return edit


@pytest.fixture(scope="module")
def zeroshot_bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = pyxfer.create_backbone("lenet", in_chans=3, img_size=16, width=0.25)
    table = np.random.default_rng(0).standard_normal((3, model.num_features)).astype(np.float32)
    out = tmp_path_factory.mktemp("zs") / "bundle"
    return to_onnx(
        model.eval(), out, task="zeroshot", class_embeddings=table, class_names=NAMES[:3]
    )


@pytest.mark.parametrize(
    ("classes_file", "message"),
    [("../outside/classes.npy", "not a plain name"), ("extra.npy", "not listed in 'files'")],
)
def test_zeroshot_classes_file_must_be_hashed_and_plain(
    zeroshot_bundle: Path, tmp_path, classes_file: str, message: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(zeroshot_bundle, copy)
    table = np.load(copy / "classes.npy")
    for where in (tmp_path / "outside" / "classes.npy", copy / "extra.npy"):
        where.parent.mkdir(exist_ok=True)
        np.save(where, table[::-1].copy())  # same shape: nothing but the name gives it away
    _resign(copy, edit_meta=lambda m: m["zeroshot"].update(classes_file=classes_file))
    with pytest.raises(BundleError, match=rf"classes_file.*{message}"):
        Predictor(copy)


@pytest.mark.parametrize(
    ("location", "message"),
    [("w.bin", "not listed in 'files'"), ("../outside/w.bin", "not a plain name")],
)
def test_onnx_external_data_must_be_hashed_and_plain(
    bundle: Path, tmp_path, location: str, message: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    _resign(copy, edit_model=_externalize(copy / location, location))
    with pytest.raises(BundleError, match=rf"external data {location!r}.*{message}"):
        Predictor(copy)


def test_listed_external_data_is_read_from_the_hashed_bytes(
    bundle: Path, tmp_path, monkeypatch
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    _resign(copy, edit_model=_externalize(copy / "w.bin", "w.bin"), extra_files=["w.bin"])
    images = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(Predictor(copy).scores(images), Predictor(bundle).scores(images))
    (copy / "w.bin").write_bytes(b"\0" * (copy / "w.bin").stat().st_size)
    with pytest.raises(BundleError, match=r"w\.bin sha256"):
        Predictor(copy)


def test_file_swapped_after_the_check_is_not_used(bundle: Path, tmp_path, monkeypatch) -> None:
    """The bytes onnxruntime sees are the bytes that were hashed (no check-then-reopen)."""
    import onnx

    from pyxfer.runtime import bundle as fmt

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    swapped = onnx.load(str(copy / "model.onnx"))
    tensor = max(swapped.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.raw_data = bytes(len(tensor.raw_data))  # other weights, same metadata inside
    real_read_meta = fmt.read_meta

    def read_meta_then_swap(root):
        meta = real_read_meta(root)
        onnx.save_model(swapped, str(Path(root) / "model.onnx"))
        return meta

    monkeypatch.setattr(fmt, "read_meta", read_meta_then_swap)
    with pytest.raises(BundleError, match=r"model\.onnx sha256"):
        Predictor(copy)


def test_bundle_spec_is_bounded(tmp_path) -> None:
    """crop 60,000 on a graph with dynamic height/width is refused when the bundle loads."""
    model = pyxfer.create_backbone("lenet", in_chans=3, img_size=16, width=0.25, num_classes=5)
    out = to_onnx(model.eval(), tmp_path / "b", class_names=NAMES, dynamic_size=True)

    def huge(meta: dict) -> None:
        meta["input"]["size"] = [60000, 60000]
        meta["preprocess"].update(crop=60000, resize=60000)

    _resign(out, edit_meta=huge)
    with pytest.raises(BundleError, match="crop 60000 is larger than 4096"):
        Predictor(out)
