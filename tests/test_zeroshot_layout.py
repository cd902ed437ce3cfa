"""Zero-shot features that keep spatial layout, and a backbone trained by ``zeroshot fit``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pyxfer.backbone import GridFeatures, grid_pool
from pyxfer.zeroshot import AttributeBackbone
from pyxfer.zeroshot.layout import grid_candidates, parse_layout

#: segments a-g a seven-segment display lights for each digit (the public standard)
SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abdeg",
    3: "abcdg",
    4: "bcfg",
    5: "acdfg",
    6: "acdefg",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


@pytest.mark.parametrize(
    ("h", "w", "grid"), [(7, 7, 3), (7, 7, 2), (5, 6, 4), (4, 4, 4), (6, 5, 1)]
)
def test_grid_pool_is_adaptive_average_pooling(h: int, w: int, grid: int) -> None:
    x = torch.randn(3, 5, h, w, dtype=torch.float64)
    expected = F.adaptive_avg_pool2d(x, grid).flatten(1)  # the reference
    torch.testing.assert_close(grid_pool(x, grid), expected)


def test_grid_features_concatenate_grids_in_order() -> None:
    from pyxfer import create_backbone

    bb = create_backbone("lenet", img_size=16, width=0.25).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        both = GridFeatures(bb, (1, 2))(x)
        fmap = bb.forward_features(x)
    d = bb.num_features
    assert both.shape == (2, d * 5)
    torch.testing.assert_close(both[:, :d], bb(x).detach())  # grid 1 = the pooled features
    torch.testing.assert_close(both[:, d:], grid_pool(fmap, 2))


def test_layout_arguments_are_checked() -> None:
    assert parse_layout("auto") is None and parse_layout("pooled") == 1
    assert parse_layout("spatial:3") == 3
    assert grid_candidates("auto", 3) == (1, 2, 3)
    assert grid_candidates("auto", None) == (1,)  # no spatial map: pooled only
    for bad in ("grid", "spatial:", "spatial:0", "spatial:x"):
        with pytest.raises(ValueError, match="layout: expected 'auto', 'pooled' or 'spatial:G'"):
            parse_layout(bad)
    with pytest.raises(ValueError, match="spatial:5 needs a feature map of at least 5x5"):
        grid_candidates("spatial:5", 4)
    with pytest.raises(ValueError, match="grid pooling needs a feature map"):
        grid_pool(torch.zeros(2, 5, 8), 2)  # tokens
    with pytest.raises(ValueError, match=r"grid: expected an int in \[1, 4\]"):
        grid_pool(torch.zeros(2, 5, 4, 4), 5)


def test_attribute_backbone_stops_after_max_steps() -> None:
    S = np.eye(4)
    y = np.repeat(np.arange(3), 20)  # 60 images: 2 batches of 32 per epoch
    X = torch.as_tensor(S[y], dtype=torch.float32)[:, None, :, None]
    net = AttributeBackbone(torch.nn.Flatten(), max_steps=3, batch_size=32, max_shift=0)
    net.fit(X, y, S)
    assert net.steps_ == 3 and len(net.loss_history_) == 2  # one epoch and a half
    with pytest.raises(ValueError, match="max_steps: expected a positive integer or None"):
        AttributeBackbone(torch.nn.Flatten(), max_steps=0)


def _glyph(code: str, rng: np.random.Generator, side: int = 16) -> np.ndarray:
    """A seven-segment glyph drawn at a random place, size and stroke width, with noise."""
    img = np.zeros((side, side))
    w, h = rng.integers(6, 9), rng.integers(10, 13)
    x0, y0 = rng.integers(1, side - w), rng.integers(1, side - h)
    t = int(rng.integers(1, 3))
    mid = y0 + h // 2
    bars = {  # rows r0:r1, columns c0:c1 of each segment
        "a": (y0, y0 + t, x0, x0 + w),
        "b": (y0, mid + t, x0 + w - t, x0 + w),
        "c": (mid, y0 + h, x0 + w - t, x0 + w),
        "d": (y0 + h - t, y0 + h, x0, x0 + w),
        "e": (mid, y0 + h, x0, x0 + t),
        "f": (y0, mid + t, x0, x0 + t),
        "g": (mid, mid + t, x0, x0 + w),
    }
    for s in code:
        r0, r1, c0, c1 = bars[s]
        img[r0:r1, c0:c1] = 1.0
    img = img * rng.uniform(0.7, 1.0) + rng.normal(0, 0.1, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _script() -> str:
    exe = Path(sys.executable).with_name("pyxfer")
    found = str(exe) if exe.is_file() else shutil.which("pyxfer")
    if found is None:
        pytest.skip("the pyxfer console script is not installed beside this interpreter")
    return found


@pytest.mark.slow
def test_cli_trains_a_backbone_that_recognises_unseen_digits(tmp_path: Path) -> None:
    """`pyxfer zeroshot fit --train-backbone` as a user types it (relative paths, a fresh
    working directory), on images of seven-segment digits and the segment table: the unseen
    digits 2, 7 and 9 are recognised far above chance (1/3)."""
    rng = np.random.default_rng(0)
    for digit, code in SEGMENTS.items():
        folder = tmp_path / "glyphs" / str(digit)
        folder.mkdir(parents=True)
        for i in range(40):
            Image.fromarray(_glyph(code, rng)).save(folder / f"{i:02d}.png")
    rows = [f"{d}," + ",".join("1" if s in code else "0" for s in "abcdefg") for d, code in
            SEGMENTS.items()]  # fmt: skip
    (tmp_path / "segments.csv").write_text("digit,a,b,c,d,e,f,g\n" + "\n".join(rows) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYXFER_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)

    def pyxfer(*args: str) -> str:
        proc = subprocess.run(
            [_script(), *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stdout

    out = pyxfer(
        "zeroshot", "fit", "--backbone", "lenet", "-o", "img_size=16", "-o", "width=0.25",
        "--data", "folder:glyphs", "--descriptions", "segments.csv", "--unseen", "2,7,9",
        "--train-backbone", "--max-steps", "60", "--threads", "1", "--out", "runs/zs", "--json",
    )  # fmt: skip
    results = json.loads(out)
    value = {r["metric"]: r["value"] for r in results}
    protocol = results[0]["protocol"]
    assert value["chance_zsl"] == pytest.approx(1 / 3)
    assert value["zsl_top1_per_class"] >= 0.55, value  # 0.69 here
    assert protocol["backbone_training"]["steps"] == 60
    grids = protocol["features"]["validation_accuracy_per_grid"]
    assert set(grids) == {"1", "2", "3", "4"}  # the 4x4 map of 16 px images: all tried
    # the trained backbone and its feature layout are saved, and evaluate as they deploy
    model = json.loads((tmp_path / "runs/zs/model/model.json").read_text())
    assert model["extra"]["feature_grid"] == protocol["features"]["grid"]
    again = json.loads(pyxfer("zeroshot", "eval", "runs/zs", "--data", "folder:glyphs", "--json"))
    assert again[0]["value"] == pytest.approx(value["zsl_top1_per_class"])
    # the bundle computes the same layout (export checks ONNX against torch on real images)
    pyxfer("export", "runs/zs/model", "--out", "bundle")
    meta = json.loads((tmp_path / "bundle/pyxfer.json").read_text())
    assert meta["task"] == "zeroshot"
    top = json.loads(pyxfer("predict", "bundle", "glyphs/2/00.png", "--json").splitlines()[0])
    assert top["image"] == "glyphs/2/00.png" and len(top["labels"]) == 5
