"""The CUDA kernels, compiled for the host (3 threads per block), match the CPU kernels.

There is no GPU here, so this checks the device code's indexing, scratch layout and maths (the
parts a single thread exercises) with a C++ compiler; the real device run is
``tests/test_augment_cuda.py`` (``bench/gpu_check.sh``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).parent / "cuda_emulation"


def _host_source(stem: str, kernel: str, dst: Path) -> Path:
    """The .cu file with each <<<grid, block, 0, stream>>> launch turned into emu_launch."""
    src = (ROOT / "cpp" / "src" / "cuda" / f"{stem}.cu").read_text()
    src, count = re.subn(
        kernel + r"<(\w+)><<<blocks, cuda::kThreads, 0, s>>>\(",
        lambda m: f"emu_launch(blocks, {kernel}<{m[1]}>, ",
        src,
    )
    assert count == 2, f"{stem}.cu: expected two launches to rewrite, found {count}"
    out = dst / f"{stem}_host.cpp"
    out.write_text(src)
    return out


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.skipif(not (ROOT / "cpp").is_dir(), reason="needs the C++ sources")
def test_cuda_kernels_match_cpu_when_emulated(tmp_path):
    cpp = ROOT / "cpp"
    sources = [
        HERE / "driver.cpp",
        _host_source("augment", "augment_kernel", tmp_path),
        _host_source("preprocess", "preprocess_kernel", tmp_path),
        *sorted((cpp / "src" / "cpu").glob("augment*.cpp")),  # + per-instruction-set copies
        cpp / "src" / "cpu" / "preprocess.cpp",
        cpp / "src" / "cpu" / "parallel.cpp",
    ]
    exe = tmp_path / "emulate"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O1",
            "-DPYXFER_WITH_CUDA",
            f"-I{HERE}",
            f"-I{cpp / 'include'}",
            f"-I{cpp / 'src' / 'cuda'}",
            *map(str, sources),
            "-o",
            str(exe),
            "-lpthread",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = subprocess.run([str(exe)], check=True, capture_output=True, text=True)
    assert result.stdout.strip().endswith("mismatches 0"), result.stdout
