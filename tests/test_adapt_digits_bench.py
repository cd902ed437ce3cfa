"""``bench/adapt_digits.py`` without running a model: the command line a user would type
(relative paths, the time budget or a step limit) and the table read from ``results.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "adapt_digits.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="needs bench/adapt_digits.py")


def _module():
    return load_script(SCRIPT, "pyxfer_adapt_digits")


def test_command_is_relative_with_a_time_budget_or_a_step_limit() -> None:
    b = _module()
    timed = b.command("mnistm", "dann", 2, argparse.Namespace(backbone="lenet5", max_time=240.0,
                                                             max_steps=None))  # fmt: skip
    text = " ".join(timed)
    assert timed[:2] == ["pyxfer", "adapt"]
    assert "--max-time 240.0 --max-steps 100000" in text
    assert "--source-data packed:data/mnist-a --target-data packed:data/mnistm-b" in text
    assert "in_chans=3" in text and "--seed 2" in text and "--out runs/mnistm-dann-s2" in text
    assert not any(part.startswith("/") for part in timed)
    smoke = b.command("digits", "cdan", 0, argparse.Namespace(backbone="lenet", max_time=240.0,
                                                             max_steps=20))  # fmt: skip
    assert "--max-time" not in smoke and smoke[smoke.index("--max-steps") + 1] == "20"
    assert "digits:mnist" in smoke and smoke[smoke.index("--backbone") + 1] == "lenet"


def _results(run: Path, values: dict[str, tuple[float, int]]) -> None:
    run.mkdir(parents=True)
    results = []
    for crit, (v, step) in values.items():
        p = {"selected_by": crit, "selected_step": step}
        results.append({"metric": f"adapt/target_top1@{crit}", "value": v, "protocol": p})
        results.append({"metric": f"adapt/target_per_class_mean@{crit}", "value": 0.0,
                        "protocol": p})  # fmt: skip
    (run / "results.json").write_text(json.dumps({"format": "x", "results": results}))


def test_table_means_and_stds_each_criterion(tmp_path) -> None:
    b = _module()
    runs = {}
    for seed, (sa, last) in enumerate([(0.80, 0.90), (0.90, 0.92), (0.70, 0.94)]):
        vals = {"source_accuracy": (sa, 10), "target_entropy": (0.5, 20), "snd": (0.1, 2),
                "last": (last, 100 + seed), "target_accuracy*": (0.95, 50)}  # fmt: skip
        _results(tmp_path / str(seed), vals)
        runs[("digits", "dann", seed)] = b.read_run(tmp_path / str(seed))
    assert runs[("digits", "dann", 0)]["last"] == (0.90, 100)
    text = b.table(runs)
    row = next(line for line in text.splitlines() if "DANN" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "MNIST -> digits:mnist"
    assert cells[2] == "80.0 ± 10.0 %"  # source_accuracy: sample std of 80, 90, 70
    assert cells[5] == "92.0 ± 2.0 %"  # last
    assert cells[6] == "95.0 ± 0.0 %"  # oracle
    assert cells[7] == "100–102" and cells[8] == "0,1,2"
