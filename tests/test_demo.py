"""`pyxfer demo --quick`: the whole path runs and every number beats chance by a margin."""

from __future__ import annotations

import json

from pyxfer.cli import main


def test_quick_demo_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert "2 transfer" in table and "4 deploy" in table
    doc = json.loads((out / "results.json").read_text())
    v = {r["metric"]: r["value"] for r in doc["results"]}
    chance = 0.1
    for key in ("knn_ssl", "linear_ssl", "full_ssl", "full_scratch"):
        assert v[key] > chance + 0.3, (key, v[key])
    assert v["zsl"] > 1 / 3 + 0.05  # three unseen digits
    assert 0 < v["gzsl_h"] <= 1
    assert v["export_agree"] == 1.0
    # the torch-free runtime reproduces the fine-tuned classifier's test accuracy
    assert abs(v["runtime_fp32"] - v["full_ssl"]) <= 0.02
    assert v["runtime_int8"] > v["runtime_fp32"] - 0.05
    assert v["latency_fp32"] > 0
    for name in (
        "report.html",
        "bundle/model.onnx",
        "bundle/model.int8.onnx",
        "bundle/pyxfer.json",
    ):
        assert (out / name).is_file(), name
