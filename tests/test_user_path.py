"""The README's commands as a user types them: the installed ``pyxfer`` script, default options,
relative paths, started from a directory that is neither the checkout nor where outputs land.

Every test here runs the console script in a subprocess with ``cwd`` set to a fresh directory,
so a path resolved against the wrong directory (the bug that once broke ``pyxfer demo``) fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script() -> list[str]:
    """The ``pyxfer`` console script installed beside this interpreter (as a user runs it)."""
    exe = Path(sys.executable).with_name("pyxfer")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("pyxfer")
    if found is None:
        pytest.skip("the pyxfer console script is not installed beside this interpreter")
    return [found]


def pyxfer(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYXFER_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [*_script(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"pyxfer {' '.join(args)} (in {cwd}) exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    )
    return proc


@pytest.mark.slow
def test_demo_quick_with_default_out_from_a_fresh_directory(tmp_path) -> None:
    """README command 1's main job, verbatim but ``--quick``: no ``--out``, relative default."""
    proc = pyxfer(tmp_path, "demo", "--quick")
    out = tmp_path / "pyxfer-demo"
    doc = json.loads((out / "results.json").read_text())
    v = {r["metric"]: r["value"] for r in doc["results"]}
    # the torch-free stage ran and reproduced the fine-tuned classifier
    assert abs(v["runtime_fp32"] - v["full_ssl"]) <= 0.02
    assert (out / "report.html").is_file() and (out / "bundle" / "pyxfer.json").is_file()
    assert "4 deploy" in proc.stdout
    # nothing was written outside the default output directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyxfer-demo"]
    # progress reaches a log file too (stderr is a pipe here, not a terminal)
    for stage in ("1/4", "2/4", "3/4", "4/4"):
        assert stage in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_every_path_taking_command_with_relative_paths(tmp_path) -> None:
    """pack, pretrain, finetune, adapt, eval, zeroshot, export, predict and report, each given
    paths relative to a working directory that is not the one the outputs land in."""
    cwd = tmp_path / "home" / "user"
    cwd.mkdir(parents=True)
    (tmp_path / "work").mkdir()
    w = "../../work"  # every output lands here, named relative to cwd
    # a small folder of PNGs, as a user's photos would be
    from pyxfer.data import load_dataset

    digits = load_dataset("digits")
    for i in range(60):
        label = int(digits.labels[i])
        d = tmp_path / "work" / "photos" / str(label)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(digits.images[i])[..., 0]).save(d / f"{i:03d}.png")

    small = ["--batch-size", "16", "--threads", "1", "--device", "cpu"]
    lenet = ["--backbone", "lenet", "--backbone-opt", "img_size=8"]
    pyxfer(cwd, "pack", f"folder:{w}/photos", f"{w}/store", "--size", "8", "--channels", "1")
    assert (tmp_path / "work" / "store" / "meta.json").is_file()
    pyxfer(
        cwd,
        "pretrain",
        "--data",
        f"packed:{w}/store",
        *lenet,
        "--objective",
        "simclr",
        "--max-steps",
        "3",
        *small,
        "--out",
        f"{w}/runs/ssl",
    )
    assert (tmp_path / "work" / "runs" / "ssl" / "model" / "model.json").is_file()
    pyxfer(
        cwd,
        "finetune",
        f"{w}/runs/ssl",
        "--data",
        f"packed:{w}/store",
        "--max-steps",
        "3",
        "--test-fraction",
        "0.2",
        *small,
        "--out",
        f"{w}/runs/ft",
    )
    assert (tmp_path / "work" / "runs" / "ft" / "model" / "model.json").is_file()
    pyxfer(
        cwd,
        "adapt",
        "--source-data",
        f"packed:{w}/store",
        "--target-data",
        "digits",
        *lenet,
        "--objective",
        "dann",
        "--max-steps",
        "3",
        *small,
        "--out",
        f"{w}/runs/ad",
    )
    assert (tmp_path / "work" / "runs" / "ad" / "model" / "model.json").is_file()
    pyxfer(
        cwd,
        "eval",
        f"{w}/runs/ft",
        "--data",
        f"packed:{w}/store",
        "--protocol",
        "knn",
        "--threads",
        "1",
        "--out",
        f"{w}/runs/eval",
    )
    assert (tmp_path / "work" / "runs" / "eval" / "results.json").is_file()
    pyxfer(
        cwd,
        "zeroshot",
        "fit",
        f"{w}/runs/ft",
        "--data",
        "digits",
        "--unseen",
        "0,6",
        "--threads",
        "1",
        "--out",
        f"{w}/runs/zs",
    )
    assert (tmp_path / "work" / "runs" / "zs" / "model" / "model.json").is_file()
    pyxfer(cwd, "export", f"{w}/runs/ft", "--out", f"{w}/bundle")
    assert (tmp_path / "work" / "bundle" / "pyxfer.json").is_file()
    img = f"{w}/photos/{int(digits.labels[0])}/000.png"
    proc = pyxfer(cwd, "predict", f"{w}/bundle", img, "--json")
    assert json.loads(proc.stdout.splitlines()[0])["image"] == img
    pyxfer(cwd, "report", f"{w}/runs/ft")
    assert (tmp_path / "work" / "runs" / "ft" / "report.html").is_file()
    # nothing landed in the working directory
    assert list(cwd.iterdir()) == []


def test_python_in_the_checkout_root_says_what_happened(tmp_path) -> None:
    """``import pyxfer`` from the clone's root finds the source tree (flat layout), which has no
    compiled ``_C`` and no ``pyxfer.plugins``: one clear error, not an empty registry."""
    if not (ROOT / "pyxfer" / "__init__.py").is_file():
        pytest.skip("not run from a checkout")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import pyxfer; print(pyxfer.list_backbones('resnet*'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0
    err = proc.stderr
    assert "source tree" in err and "pip install" in err, err[-2000:]
    assert str(ROOT / "pyxfer") in err
