"""A short run of the fault-injection soak (``bench/soak.py``) on the real command line: a
small run killed with SIGKILL and resumed, its newest checkpoint damaged and its log torn in
between, ends bit-identical to an uninterrupted run. The figures in docs/reliability.md come
from the long run (``nice -n 10 python bench/soak.py --kills 50``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _soak():
    return load_script(ROOT / "bench" / "soak.py", "pyxfer_soak")


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "bench" / "soak.py").is_file(), reason="needs bench/soak.py")
def test_killed_and_resumed_runs_end_bit_identical(tmp_path) -> None:
    soak = _soak()
    figures = soak.kill_soak(
        tmp_path, 2, steps=4, checkpoint_every=1, damage=1.0, early=0.0, seed=1, verbose=False
    )
    assert figures.failures == []
    assert figures.kills == 2 and figures.rounds_bit_identical == figures.rounds >= 1
