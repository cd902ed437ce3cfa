"""int8 that holds where the bundle runs: the held-out check at export, 7-bit weights, the
verification set and the runtime check with its fallback, and the AVX2 path under qemu."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from _export_helpers import save_classifier, train_lenet  # noqa: E402

import pyxfer  # noqa: E402
from pyxfer.data import stratified_split  # noqa: E402
from pyxfer.export import VerificationError, to_onnx  # noqa: E402
from pyxfer.runtime import BundleError, Int8VerificationError, Predictor  # noqa: E402
from pyxfer.runtime import verification as vset  # noqa: E402
from pyxfer.runtime.bundle import sha256_file  # noqa: E402

QEMU = shutil.which("qemu-x86_64")
QEMU_CPU = "EPYC-Milan"  # Zen 3: AVX2, no AVX-512, no VNNI


@pytest.fixture(scope="module")
def digits():
    return pyxfer.load_dataset("digits")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    save_classifier(run / "model", train_lenet(steps=150, width=0.5), width=0.5)
    return run


@pytest.fixture(scope="module")
def bundle(model_dir, digits, tmp_path_factory) -> Path:
    """Exported with the defaults: a labelled ImageStore as calibration data, no holdout."""
    out = tmp_path_factory.mktemp("b") / "int8"
    return to_onnx(model_dir, out, input="uint8-nhwc", quantize="int8", calibration=digits)


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "pyxfer.json").read_text())


def test_export_holds_out_part_of_the_calibration_data(bundle, digits) -> None:
    m = _meta(bundle)["metrics"]["int8"]
    held = stratified_split(digits.labels, (0.8, 0.2), seed=0)[1]
    assert m["holdout_images"] == m["holdout_labelled"] == len(held)
    assert m["holdout_accuracy_fp32"] > 0.85  # the model learned the digits
    expected = round((m["holdout_accuracy_int8"] - m["holdout_accuracy_fp32"]) * 100, 4)
    assert m["accuracy_change_points"] == pytest.approx(expected)
    assert m["loss_check"] == "passed" and m["max_loss_points"] == 0.5
    assert -m["accuracy_change_points"] <= 0.5 and m["isa"] == vset.int8_isa()


def test_default_weights_are_7_bit(bundle) -> None:
    q = _meta(bundle)["quantization"]
    assert q["scheme"] == "U8S8" and q["reduce_range"] and q["weight_bits"] == 7
    graph = onnx.load(str(bundle / "model.int8.onnx")).graph
    weights = [
        onnx.numpy_helper.to_array(i)
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and len(i.dims) > 1
    ]
    assert weights, "expected int8 weight tensors"
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert 32 < peak <= 64  # 7 bits: two u8 x s8 products fit a 16-bit sum


def test_verification_set_is_plain_hashed_data(bundle) -> None:
    meta = _meta(bundle)
    ver = meta["verification"]
    assert (ver["images"], ver["outputs"]) == (vset.IMAGES_FILE, vset.OUTPUTS_FILE)
    for name in (ver["images"], ver["outputs"]):
        assert meta["files"][name]["sha256"] == sha256_file(bundle / name)
    images = np.load(bundle / ver["images"], allow_pickle=False)
    outputs = np.load(bundle / ver["outputs"], allow_pickle=False)
    assert images.dtype == np.uint8 and images.shape == (32, 8, 8, 1) == (ver["count"], 8, 8, 1)
    assert outputs.dtype == np.float32 and outputs.shape == (32, 10)
    fp32 = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(fp32.run(None, {"images": images})[0], outputs, atol=1e-5)
    at_export, tol = ver["at_export"], ver["tolerance"]
    assert at_export["isa"] == vset.int8_isa() and at_export["top1_agreement"] >= 0.9
    assert tol["max_rel_error"] >= at_export["rel_error"] + vset.REL_ERROR_MARGIN - 1e-12
    assert tol["min_top1_agreement"] == pytest.approx(at_export["top1_agreement"] - 0.05)


def test_predictor_verifies_int8_on_this_cpu(bundle) -> None:
    p = Predictor(bundle, int8=True)
    assert p.model == "int8" and p.model_path.name == "model.int8.onnx"
    ver = p.verification
    assert ver["status"] == "passed" and ver["problems"] == [] and ver["images"] == 32
    # the same CPU as the export: the same int8 numbers
    assert ver["measured"]["rel_error"] == pytest.approx(ver["at_export"]["rel_error"], rel=1e-4)
    fp32 = Predictor(bundle)
    assert fp32.model == "fp32" and fp32.verification is None
    if platform.machine().lower() in ("x86_64", "amd64"):  # CPUID names the int8 path
        assert ver["isa"] in ("avx512-vnni", "avx-vnni", "avx512", "avx2", "sse")


def _with_outputs(bundle: Path, out: Path, change) -> Path:
    """A copy of ``bundle`` whose verification outputs are ``change(outputs)`` (re-hashed)."""
    shutil.copytree(bundle, out)
    path = out / vset.OUTPUTS_FILE
    np.save(path, change(np.load(path)))
    meta = _meta(out)
    meta["files"][vset.OUTPUTS_FILE] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (out / "pyxfer.json").write_text(json.dumps(meta))
    return out


def test_int8_that_does_not_hold_falls_back_to_fp32(bundle, digits, tmp_path, caplog) -> None:
    # fp32 outputs the int8 model cannot match: what a CPU whose int8 kernels go wrong sees
    bad = _with_outputs(bundle, tmp_path / "bad", lambda o: o[::-1].copy())
    with caplog.at_level(logging.WARNING, logger="pyxfer.runtime"):
        p = Predictor(bad, int8=True)
    assert p.model == "fp32" and p.model_path.name == "model.onnx"
    assert p.verification["status"] == "failed"
    assert "relative error" in p.verification["problems"][0]
    assert "running the fp32 model instead" in caplog.text
    images = digits.images[:20]
    np.testing.assert_allclose(p.scores(images), Predictor(bundle).scores(images), atol=1e-6)
    with pytest.raises(Int8VerificationError, match="does not hold on this CPU"):
        Predictor(bad, int8=True, int8_check="error")
    assert Predictor(bad, int8=True, int8_check="warn").model == "int8"
    off = Predictor(bad, int8=True, int8_check="off")
    assert off.model == "int8" and off.verification["status"] == "off"
    with pytest.raises(ValueError, match="int8_check: expected"):
        Predictor(bundle, int8=True, int8_check="maybe")


def test_cli_predict_reports_the_model_that_ran(bundle, digits, tmp_path, capsys) -> None:
    from PIL import Image

    from pyxfer.cli import main

    path = tmp_path / "seven.png"
    Image.fromarray(digits.images[7][:, :, 0]).save(path)
    assert main(["predict", str(bundle), str(path), "--int8", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["model"] == "int8"
    assert "model: int8, verified on this CPU" in captured.err
    bad = _with_outputs(bundle, tmp_path / "bad", lambda o: -o)
    assert main(["predict", str(bad), str(path), "--int8", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["model"] == "fp32"
    assert "fell back to fp32" in captured.err
    assert main(["predict", str(bad), str(path), "--int8", "--int8-check", "error"]) == 2
    assert "does not hold on this CPU" in capsys.readouterr().err


def test_bundle_without_verification_set_is_not_trusted_with_int8(bundle, tmp_path) -> None:
    """A bundle from before verification sets: int8 counts as unverified, fp32 runs."""
    from pyxfer.export.core import _set_metadata

    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    meta = _meta(old)
    del meta["verification"]
    for name in (vset.IMAGES_FILE, vset.OUTPUTS_FILE):
        del meta["files"][name]
        (old / name).unlink()
    for name in ("model.onnx", "model.int8.onnx"):
        _set_metadata(old / name, meta)
        size = (old / name).stat().st_size
        meta["files"][name] = {"sha256": sha256_file(old / name), "bytes": size}
    (old / "pyxfer.json").write_text(json.dumps(meta))
    p = Predictor(old, int8=True)
    assert p.model == "fp32" and p.verification["status"] == "unverified"
    assert "no verification set" in p.verification["problems"][0]
    assert Predictor(old, int8=True, int8_check="warn").model == "int8"


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda o: o.astype(np.float64), "expected float32"),
        (lambda o: o[:5], r"expected float32 \(32, 10\)"),
        (lambda o: np.array([{"a": 1}], dtype=object), "is not a .npy array"),
        (lambda o: np.full_like(o, np.nan), "not finite"),
    ],
)
def test_bad_verification_files_are_refused(bundle, tmp_path, change, match) -> None:
    bad = _with_outputs(bundle, tmp_path / "bad", change)
    with pytest.raises(BundleError, match=match):
        Predictor(bad, int8=True)
    Predictor(bad)  # the fp32 model does not read the verification set


def test_oversized_verification_file_is_refused_before_reading(bundle, monkeypatch) -> None:
    monkeypatch.setattr(vset, "MAX_BYTES", 100)
    with pytest.raises(BundleError, match=r"bytes, expected 1 to 100 .*MAX_BYTES"):
        Predictor(bundle, int8=True)


def test_int8_loss_over_the_limit_is_refused(model_dir, digits, tmp_path, monkeypatch, caplog):
    from pyxfer.export import quantize

    real = quantize.quantize_int8

    def badly_calibrated(*args, calibration_inputs, **kwargs):  # every activation range ~0
        return real(*args, calibration_inputs=np.zeros_like(calibration_inputs), **kwargs)

    monkeypatch.setattr(quantize, "quantize_int8", badly_calibrated)
    out = tmp_path / "b"
    options = dict(input="uint8-nhwc", quantize="int8", calibration=digits, calibration_count=64)
    with pytest.raises(VerificationError, match=r"int8 loses .* more than int8_max_loss=0.5"):
        to_onnx(model_dir, out, **options)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with caplog.at_level(logging.WARNING, logger="pyxfer.export"):
        to_onnx(model_dir, out, int8_on_loss="warn", **options)
    m = _meta(out)["metrics"]["int8"]
    assert m["loss_check"].startswith("failed") and m["accuracy_change_points"] < -0.5
    assert "the int8 model is kept" in caplog.text
    with pytest.raises(ValueError, match="int8_on_loss: expected"):
        to_onnx(model_dir, tmp_path / "c", int8_on_loss="ignore", **options)
    with pytest.raises(ValueError, match="int8_max_loss: expected"):
        to_onnx(model_dir, tmp_path / "c", int8_max_loss=-1, **options)


def test_unlabelled_calibration_measures_top1_agreement(model_dir, digits, tmp_path) -> None:
    out = to_onnx(
        model_dir, tmp_path / "b", quantize="int8", calibration=digits.images, verify_count=8
    )
    meta = _meta(out)
    m = meta["metrics"]["int8"]
    assert m["holdout_images"] == round(0.2 * len(digits))
    assert "accuracy_change_points" not in m and m["top1_agreement"] >= 0.99
    assert m["loss_check"] == "passed" and meta["verification"]["count"] == 8
    # a float-input bundle: the runtime normalises the stored uint8 images itself
    p = Predictor(out, int8=True)
    assert p.model == "int8" and p.verification["status"] == "passed"


VERIFY_UNDER_QEMU = r"""
import json, sys
import numpy as np
from pyxfer.runtime import Predictor
from pyxfer.runtime.verification import int8_isa
x = np.load(sys.argv[1])
out = {"isa": int8_isa()}
for bundle in sys.argv[2:]:
    p = Predictor(bundle, int8=True, threads=1)
    raw = p if p.model == "int8" else Predictor(bundle, int8=True, threads=1, int8_check="off")
    out[bundle] = {"model": p.model, "status": p.verification["status"],
                   "predicted": p.scores(x).argmax(1).tolist(),
                   "int8_outputs": raw.run(x[:32]).tolist()}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="needs qemu-x86_64 (qemu-user) to emulate an AVX2 CPU")
def test_bundle_holds_or_refuses_itself_on_a_cpu_without_vnni(model_dir, digits, tmp_path):
    """Export here; run under an emulated Zen 3 (no VNNI): the int8 model that runs there is
    within 0.5 points of fp32, or the bundle falls back to fp32 by itself."""
    held = stratified_split(digits.labels, (0.8, 0.2), seed=0)[1]
    x, y = np.ascontiguousarray(digits.images[held]), digits.labels[held]
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "check.py").write_text(VERIFY_UNDER_QEMU)
    options = dict(input="uint8-nhwc", quantize="int8", calibration=digits, int8_on_loss="warn")
    bundles = {
        bits: to_onnx(model_dir, tmp_path / f"w{bits}", reduce_range=bits == 7, **options)
        for bits in (7, 8)
    }
    proc = subprocess.run(
        [QEMU, "-cpu", QEMU_CPU, sys.executable, str(tmp_path / "check.py"),
         str(tmp_path / "x.npy"), *map(str, bundles.values())],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["isa"] == "avx2"  # CPUID under qemu: onnxruntime's kernels without VNNI
    fp32_top1 = (Predictor(bundles[7]).scores(x).argmax(1) == y).mean()
    for bits, out in bundles.items():
        r = result[str(out)]
        native = Predictor(out, int8=True, int8_check="off").run(x[:32])
        emulated = np.asarray(r["int8_outputs"], np.float32)
        ran_top1 = (np.asarray(r["predicted"]) == y).mean()
        if bits == 7:  # 7-bit weights: exact on both paths, the same numbers
            np.testing.assert_allclose(emulated, native, rtol=1e-5, atol=1e-5)
            assert r["model"] == "int8" and r["status"] == "passed"
        else:  # 8-bit weights: the AVX2 kernels saturate, other numbers than VNNI's
            assert np.abs(emulated - native).max() > 1e-3
        # what runs there holds within 0.5 points: verified int8, or fp32 after a failed check
        assert (fp32_top1 - ran_top1) * 100 <= 0.5, (bits, r["model"], fp32_top1, ran_top1)
        assert r["model"] == ("int8" if r["status"] == "passed" else "fp32"), (bits, r)
