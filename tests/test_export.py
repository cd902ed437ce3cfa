"""ONNX export: self-verification, input/head wrappers, int8, zero-shot, failure atomicity."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from _export_helpers import CLASSES, digits_split, save_classifier, train_lenet  # noqa: E402

from pyxfer.backbone import Backbone, InputSpec  # noqa: E402
from pyxfer.export import ExportError, VerificationError, to_onnx  # noqa: E402
from pyxfer.ops import normalize  # noqa: E402
from pyxfer.runtime import Predictor  # noqa: E402
from pyxfer.runtime.bundle import sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet trained for 100 steps on digits, saved as a model directory inside a run dir."""
    run = tmp_path_factory.mktemp("run")
    model = train_lenet(steps=100)
    save_classifier(run / "model", model)
    store, train, test = digits_split()
    return {"run": run, "model": model, "store": store, "train": train, "test": test}


@pytest.fixture(scope="module")
def int8_bundle(trained, tmp_path_factory):
    store, train, test = trained["store"], trained["train"], trained["test"]
    out = tmp_path_factory.mktemp("b") / "int8"
    to_onnx(
        trained["run"],  # a run directory: its model/ is exported
        out,
        input="uint8-nhwc",
        quantize="int8",
        calibration=store.images[train],
        calibration_count=128,
        holdout=(store.images[test], store.labels[test]),
    )
    return out


@pytest.fixture(scope="module")
def probs_bundle(trained, tmp_path_factory):
    """Exported through the CLI: float input, probabilities head, int8 calibrated on digits."""
    from pyxfer.cli import main

    out = tmp_path_factory.mktemp("b") / "probs"
    args = ["export", str(trained["run"] / "model"), "--out", str(out), "--head", "probs"]
    args += ["--int8", "--calibration-data", "digits", "--calibration-count", "64"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    (out.parent / "stdout.txt").write_text(stdout.getvalue())
    return out


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_logits(model, images: np.ndarray) -> np.ndarray:
    spec = model.input_spec
    with torch.no_grad():
        return model(torch.from_numpy(normalize(images, spec.mean, spec.std))).numpy()


def test_bundle_records_parity_and_provenance(int8_bundle: Path) -> None:
    meta = json.loads((int8_bundle / "pyxfer.json").read_text())
    assert meta["format"] == "pyxfer-bundle" and meta["format_version"] == 1
    assert meta["task"] == "classifier" and meta["class_names"] == CLASSES
    parity = meta["parity"]
    assert parity["passed"] and set(parity["batches"]) == {"1", "8"}
    assert parity["max_rel_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
    assert parity["min_cosine"] >= 0.9999 and parity["graph"]["checker"] == "full"
    assert meta["input"] == {
        "name": "images",
        "layout": "NHWC",
        "dtype": "uint8",
        "channels": 1,
        "size": [8, 8],
        "dynamic_axes": {"0": "batch", "1": "height", "2": "width"},
    }
    pre = meta["preprocess"]
    assert pre["normalize_in_graph"] and pre["mean"] == [0.5] and pre["crop"] == 8
    prov = meta["provenance"]
    assert prov["torch"] == torch.__version__ and prov["onnxruntime"] == ort.__version__
    assert prov["opset"] == 18 and prov["backbone"]["name"] == "lenet"
    # one self-contained file per model, hashes recorded
    assert sorted(p.name for p in int8_bundle.iterdir()) == sorted(
        ["model.onnx", "model.int8.onnx", "pyxfer.json", "verify_images.npy", "verify_outputs.npy"]
    )
    for name, rec in meta["files"].items():
        assert rec["sha256"] == sha256_file(int8_bundle / name)
    # the same metadata inside the model
    model = onnx.load(str(int8_bundle / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    inner = json.loads(props["pyxfer.json"])
    assert inner["class_names"] == CLASSES and inner["parity"] == json.loads(
        json.dumps(meta["parity"])
    )
    assert "files" not in inner and props["pyxfer.task"] == "classifier"


def test_uint8_graph_matches_float_input_and_torch(trained, int8_bundle, probs_bundle) -> None:
    store = trained["store"]
    images = np.ascontiguousarray(store.images[:32])
    logits_u8 = _session(int8_bundle / "model.onnx").run(None, {"images": images})[0]
    want = _torch_logits(trained["model"], images)
    assert np.abs(logits_u8 - want).max() / np.abs(want).max() <= 1e-4
    x = normalize(images, (0.5,), (0.5,))
    probs = _session(probs_bundle / "model.onnx").run(None, {"images": x})[0]
    e = np.exp(logits_u8 - logits_u8.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch(trained, int8_bundle, batch: int) -> None:
    images = np.ascontiguousarray(trained["store"].images[100 : 100 + batch])
    out = _session(int8_bundle / "model.onnx").run(None, {"images": images})[0]
    assert out.shape == (batch, 10)
    np.testing.assert_allclose(out, _torch_logits(trained["model"], images), rtol=0, atol=1e-4)


def test_dynamic_image_size(trained, int8_bundle) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 16, 1), dtype=np.uint8)
    out = _session(int8_bundle / "model.onnx").run(None, {"images": images})[0]
    np.testing.assert_allclose(out, _torch_logits(trained["model"], images), rtol=0, atol=1e-4)


def test_int8_accuracy_change_recorded(trained, int8_bundle) -> None:
    meta = json.loads((int8_bundle / "pyxfer.json").read_text())
    q, m = meta["quantization"], meta["metrics"]["int8"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["scheme"] == "U8S8"
    assert q["calibration_images"] == 128
    assert m["holdout_images"] == len(trained["test"])
    assert m["holdout_accuracy_fp32"] > 0.9  # the model learned the digits
    expected = round((m["holdout_accuracy_int8"] - m["holdout_accuracy_fp32"]) * 100, 4)
    assert m["accuracy_change_points"] == pytest.approx(expected)
    assert abs(m["accuracy_change_points"]) <= 3.0 and m["top1_agreement"] >= 0.95
    graph = onnx.load(str(int8_bundle / "model.int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    per_channel = [i for i in graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1]
    assert per_channel, "expected per-channel weight scales"
    # predictions of the int8 model agree with fp32 on most held-out images
    store, test = trained["store"], trained["test"]
    fp32 = Predictor(int8_bundle).predict(store.images[test], top_k=1)
    int8 = Predictor(int8_bundle, int8=True).predict(store.images[test], top_k=1)
    agree = np.mean([a.indices == b.indices for a, b in zip(fp32, int8, strict=True)])
    assert agree >= 0.95


def test_zeroshot_bundle_adds_class_at_deploy_time(trained, tmp_path) -> None:
    from pyxfer.modelio import save_model

    store, train, test = trained["store"], trained["train"], trained["test"]
    backbone = copy.deepcopy(trained["model"])
    backbone.reset_classifier(0)  # a feature encoder
    spec = backbone.input_spec
    seen = list(range(8))  # classes 8 and 9 are unseen at training time

    def prototypes(idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = backbone(torch.from_numpy(normalize(store.images[idx], spec.mean, spec.std)))
        f = torch.nn.functional.normalize(f, dim=1).numpy()
        return np.stack([f[store.labels[idx] == c].mean(0) for c in range(10)])

    protos = prototypes(train)
    save_model(
        tmp_path / "zs",
        backbone,
        backbone_name="lenet",
        backbone_kwargs={"in_chans": 1, "img_size": 8, "width": 0.25},
        task="zeroshot",
        class_names=[CLASSES[c] for c in seen],
        arrays={"class_embeddings": torch.from_numpy(protos[seen])},
        extra={"logit_scale": 20.0},
    )
    out = to_onnx(tmp_path / "zs", tmp_path / "bundle", calibration=store.images[train])
    meta = json.loads((out / "pyxfer.json").read_text())
    assert meta["task"] == "zeroshot" and meta["head"] == "features"
    assert meta["zeroshot"] == {"classes_file": "classes.npy", "logit_scale": 20.0}
    assert meta["output"]["l2_normalized"] and meta["parity"]["top1_agreement"] == 1.0
    np.testing.assert_allclose(np.load(out / "classes.npy"), protos[seen], rtol=1e-6)

    p = Predictor(out)
    emb = p.embed(store.images[test[:5]])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    eights = store.images[test][store.labels[test] == 8]
    before = [pr.labels[0] for pr in p.predict(eights, top_k=1)]
    assert CLASSES[8] not in before
    assert p.add_class(CLASSES[8], protos[8]) == 8
    after = [pr.labels[0] for pr in p.predict(eights, top_k=1)]
    assert np.mean([lab == CLASSES[8] for lab in after]) >= 0.7
    with pytest.raises(ValueError, match="already exists"):
        p.add_class(CLASSES[8], protos[8])
    with pytest.raises(ValueError, match="embedding: expected"):
        p.add_class("x", np.ones(3))


class _TinyConv(Backbone):
    """One convolution: the smallest backbone, for export mechanics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_features = 4
        self.input_spec = InputSpec(3, 8, (0.5,) * 3, (0.5,) * 3)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.reset_classifier(0)
        self.eval()

    def forward_features(self, x):
        return self.conv(x)


class _NumpyInForward(_TinyConv):
    """Calls .numpy() on an activation: not traceable."""

    def forward_features(self, x):
        y = self.conv(x)
        scale = float(y.detach().numpy().mean())
        return y * scale


def test_options_travel_as_one_export_spec(tmp_path) -> None:
    from pyxfer.export import ExportSpec

    spec = ExportSpec(dynamic_size=False, head="features")
    by_spec = to_onnx(_TinyConv(), tmp_path / "spec", spec)
    by_keywords = to_onnx(_TinyConv(), tmp_path / "kw", dynamic_size=False, head="features")
    a = json.loads((by_spec / "pyxfer.json").read_text())
    b = json.loads((by_keywords / "pyxfer.json").read_text())
    for key in ("task", "head", "input", "output", "preprocess", "models"):
        assert a[key] == b[key], key
    assert a["input"]["dynamic_axes"] == {"0": "batch"} and a["head"] == "features"
    # keywords override the spec's fields; an unknown option fails before anything is written
    with pytest.raises(ValueError, match="input: expected"):
        to_onnx(_TinyConv(), tmp_path / "x", spec, input="nhwc")
    with pytest.raises(TypeError, match="bogus"):
        to_onnx(_TinyConv(), tmp_path / "x", bogus=1)
    assert not (tmp_path / "x").exists()


def test_failed_verification_leaves_no_bundle(tmp_path, monkeypatch) -> None:
    from pyxfer.export import verify

    monkeypatch.setattr(verify, "MAX_REL_DIFF", -1.0)  # no difference can pass
    out = tmp_path / "bundle"
    with pytest.raises(VerificationError, match="max relative difference"):
        to_onnx(_TinyConv(), out, dynamic_size=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left either


def test_failed_overwrite_keeps_the_old_bundle(tmp_path, monkeypatch) -> None:
    from pyxfer.export import verify

    out = to_onnx(_TinyConv(), tmp_path / "bundle", dynamic_size=False)
    before = (out / "pyxfer.json").read_bytes()
    monkeypatch.setattr(verify, "MIN_COSINE", 2.0)
    with pytest.raises(VerificationError, match="cosine"):
        to_onnx(_TinyConv(), out, overwrite=True, dynamic_size=False)
    assert (out / "pyxfer.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_untraceable_backbone_error_names_the_call(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"numpy\(\)") as info:
        to_onnx(_NumpyInForward(), tmp_path / "b")
    assert "test_export.py" in str(info.value) and "_NumpyInForward" in str(info.value)
    assert not (tmp_path / "b").exists()


@torch.library.custom_op("pyxfer_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _CustomOpBackbone(_TinyConv):
    def forward_features(self, x):
        return _twice(self.conv(x))


class _Doubled(_TinyConv):
    """Pure-torch twin of _CustomOpBackbone (shares its convolution)."""

    def __init__(self, source: _TinyConv) -> None:
        super().__init__()
        self.conv = source.conv

    def forward_features(self, x):
        return self.conv(x) * 2


class _WithTwin(_CustomOpBackbone):
    """The same backbone with a pure-torch twin for export."""

    def export_module(self):
        return _Doubled(self)


def test_custom_op_without_translation_is_named_and_twin_exports(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"pyxfer_test::twice"):
        to_onnx(_CustomOpBackbone(), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    out = to_onnx(_WithTwin().eval(), tmp_path / "twin", dynamic_size=False)
    meta = json.loads((out / "pyxfer.json").read_text())
    assert meta["input"]["dynamic_axes"] == {"0": "batch"} and meta["parity"]["passed"]
    assert meta["parity"]["data"] == "digits"


def test_bad_arguments(trained, tmp_path) -> None:
    run = trained["run"]
    with pytest.raises(ValueError, match="input: expected"):
        to_onnx(run, tmp_path / "a", input="nhwc")
    with pytest.raises(ValueError, match="head: expected"):
        to_onnx(run, tmp_path / "a", head="scores")
    with pytest.raises(ValueError, match="quantize: expected"):
        to_onnx(run, tmp_path / "a", quantize="fp16")
    with pytest.raises(ValueError, match="opset: expected"):
        to_onnx(run, tmp_path / "a", opset=7)
    with pytest.raises(ValueError, match="calibration: int8"):
        to_onnx(run, tmp_path / "a", quantize="int8")
    with pytest.raises(FileNotFoundError, match="model directory"):
        to_onnx(tmp_path, tmp_path / "a")
    features = train_lenet(steps=1)
    features.reset_classifier(0)
    with pytest.raises(ValueError, match="needs a classifier head"):
        to_onnx(features, tmp_path / "a", head="logits")
    with pytest.raises(ValueError, match="resize: expected <= 4096"):
        to_onnx(run, tmp_path / "a", image_size=60000)
    assert not (tmp_path / "a").exists()


def test_external_data_bundle_lists_and_serves_its_data_file(trained, tmp_path, monkeypatch):
    """A model over the inline limit keeps its weights in model.onnx.data: listed, hashed and
    handed to onnxruntime from memory by the runtime."""
    from pyxfer.export import _trace

    monkeypatch.setattr(_trace, "INLINE_LIMIT", 0)  # force the > 2 GB layout on a tiny model
    out = to_onnx(trained["run"], tmp_path / "b", dynamic_size=False)
    meta = json.loads((out / "pyxfer.json").read_text())
    assert sorted(meta["files"]) == ["model.onnx", "model.onnx.data"]
    assert (out / "model.onnx.data").stat().st_size > (out / "model.onnx").stat().st_size
    images = trained["store"].images[trained["test"][:8]]
    got = Predictor(out).scores(images)
    want = torch.softmax(torch.from_numpy(_torch_logits(trained["model"], images)), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_ort_format_conversion(int8_bundle, tmp_path) -> None:
    from pyxfer.export.quantize import convert_to_ort, ort_tool_available

    if not ort_tool_available():
        pytest.skip("onnxruntime.tools.convert_onnx_models_to_ort is not available")
    path = convert_to_ort(int8_bundle / "model.onnx", tmp_path)
    assert path.name == "model.ort" and path.stat().st_size > 0
    x = np.zeros((2, 8, 8, 1), np.uint8)
    a = _session(path).run(None, {"images": x})[0]
    b = _session(int8_bundle / "model.onnx").run(None, {"images": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cli_export_and_predict_png(trained, probs_bundle, tmp_path, capsys) -> None:
    from PIL import Image

    from pyxfer.cli import main
    from pyxfer.data import stratified_split

    out = (probs_bundle.parent / "stdout.txt").read_text()
    meta = json.loads((probs_bundle / "pyxfer.json").read_text())
    store, test = trained["store"], trained["test"]
    held = stratified_split(store.labels, (0.8, 0.2), seed=0)[1]
    assert "parity: max rel diff" in out and f"accuracy on {len(held)} held-out images" in out
    assert "loss check passed" in out and "int8 verification set: 32 images" in out
    assert meta["metrics"]["int8"]["holdout_images"] == len(held)  # 20 % of digits held out
    assert meta["head"] == "probs" and meta["input"]["dtype"] == "float32"
    paths = []
    for i in test[:6]:
        path = tmp_path / f"img{i}.png"
        Image.fromarray(store.images[i][:, :, 0]).resize((24, 24), Image.NEAREST).save(path)
        paths.append(str(path))
    assert main(["predict", str(probs_bundle), *paths, "--top-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in lines] == paths
    assert all(len(r["labels"]) == 2 and r["scores"][0] >= r["scores"][1] for r in lines)
    want = Predictor(probs_bundle).predict(paths, top_k=2)
    assert [r["labels"] for r in lines] == [w.labels for w in want]
    truth = [CLASSES[store.labels[i]] for i in test[:6]]
    assert np.mean([r["labels"][0] == t for r, t in zip(lines, truth, strict=True)]) >= 0.8
    assert main(["predict", str(probs_bundle), *paths[:1], "--int8"]) == 0
    assert paths[0] in capsys.readouterr().out
    assert main(["export", str(trained["run"]), "--out", str(probs_bundle)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(trained["run"]), "--out", str(tmp_path / "x"), "--int8"]) == 2
    assert "--calibration-data" in capsys.readouterr().err
