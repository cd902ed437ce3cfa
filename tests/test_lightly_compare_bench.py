"""``bench/lightly_compare.py`` without training: the ``pyxfer pretrain`` command line it runs
(relative paths, the protocol's settings) and the settings its lightly run reads back from the
pyxfer run's ``config.json``; the shared subset helper of ``bench/pretrain_knn.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from pyxfer.cli import build_parser
from pyxfer.cli.pretrain import build_config
from pyxfer.data import ImageStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "lightly_compare.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="needs bench/lightly_compare.py")


def _module(path: Path, name: str):
    return load_script(path, name)


def _args(**kw) -> argparse.Namespace:
    base = dict(max_time=300.0, knn_holdout=0.1, seed=0)
    return argparse.Namespace(**{**base, **kw})


def test_pyxfer_command_parses_into_the_protocol_settings() -> None:
    b = _module(SCRIPT, "pyxfer_lightly_compare")
    cmd = b.pyxfer_command(_args())
    assert cmd[:2] == ["pyxfer", "pretrain"]
    assert not any(part.startswith("/") for part in cmd)
    cfg = build_config(build_parser().parse_args(cmd[1:]))
    assert cfg.data == "packed:data" and cfg.out == b.PYXFER_RUN
    assert cfg.backbone == "resnet18" and cfg.backbone_opts == {"stem": "small", "width": 0.25}
    assert cfg.objective == "simclr" and cfg.size == 32 and cfg.seed == 0
    assert cfg.max_time == 300.0 and cfg.max_steps is None and cfg.epochs is None
    assert (cfg.knn_holdout, cfg.knn_k, cfg.knn_temperature) == (0.1, 200, 0.1)
    smoke = build_config(build_parser().parse_args(b.pyxfer_command(_args(max_time=10.0))[1:]))
    assert smoke.max_time == 10.0


def test_lightly_run_reads_back_the_pyxfer_runs_settings() -> None:
    b = _module(SCRIPT, "pyxfer_lightly_compare")
    cfg = build_config(build_parser().parse_args(b.pyxfer_command(_args())[1:]))
    recorded = {**cfg.to_dict(), "size": 32, "precision": "fp32", "device": "cpu"}
    recorded["run"] = {"format": 1, "steps_per_epoch": 35}  # not settings: dropped
    back = b.train_config(recorded)
    assert back.to_dict() == {**cfg.to_dict(), "precision": "fp32", "device": "cpu"}


def test_limit_store_is_a_stratified_seeded_subset() -> None:
    knn = _module(ROOT / "bench" / "pretrain_knn.py", "pyxfer_pretrain_knn")
    labels = np.repeat(np.arange(4), 25)
    store = ImageStore(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1), labels)
    sub = knn.limit_store(store, 40, seed=0)
    assert len(sub) == 40 and np.bincount(sub.labels).tolist() == [10, 10, 10, 10]
    again = knn.limit_store(store, 40, seed=0)
    assert np.array_equal(sub.images, again.images)
    assert knn.limit_store(store, 0, seed=0) is store and knn.limit_store(store, 100, 0) is store
