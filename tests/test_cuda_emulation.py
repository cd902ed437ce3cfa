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


def _build(driver: Path, sources: list[Path], tmp_path: Path) -> Path:
    """The host executable of `driver` with the emulated CUDA runtime of cuda_emulation/."""
    cpp = ROOT / "cpp"
    exe = tmp_path / driver.stem
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O1",
            "-DPYXFER_WITH_CUDA",
            f"-I{HERE}",
            f"-I{cpp / 'include'}",
            f"-I{cpp / 'src' / 'cuda'}",
            str(driver),
            *map(str, sources),
            "-o",
            str(exe),
            "-lpthread",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return exe


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
needs_sources = pytest.mark.skipif(not (ROOT / "cpp").is_dir(), reason="needs the C++ sources")


@needs_gxx
@needs_sources
def test_cuda_kernels_match_cpu_when_emulated(tmp_path):
    cpu = ROOT / "cpp" / "src" / "cpu"
    sources = [
        _host_source("augment", "augment_kernel", tmp_path),
        _host_source("preprocess", "preprocess_kernel", tmp_path),
        *sorted(cpu.glob("augment*.cpp")),  # + per-instruction-set copies
        cpu / "preprocess.cpp",
        cpu / "parallel.cpp",
    ]
    exe = _build(HERE / "driver.cpp", sources, tmp_path)
    result = subprocess.run([str(exe)], check=True, capture_output=True, text=True)
    assert result.stdout.strip().endswith("mismatches 0"), result.stdout


@needs_gxx
@needs_sources
def test_cuda_errors_free_the_device_memory(tmp_path):
    """Each allocation, upload and launch check of augment_apply_cuda and preprocess_cuda fails
    in turn: every one raises, naming the function, and leaves no device memory allocated."""
    sources = [
        _host_source("augment", "augment_kernel", tmp_path),
        _host_source("preprocess", "preprocess_kernel", tmp_path),
    ]
    exe = _build(HERE / "faults.cpp", sources, tmp_path)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    lines = lines.strip().splitlines()
    # two allocations, the job upload and the launch check, in each function
    assert lines[-1] == "raised 8 leaks 0", "\n".join(lines)
    for name in ("augment_apply_cuda", "preprocess_cuda"):
        failed = [line for line in lines if line.startswith(f"{name}, call ")]
        assert len(failed) == 4 and all(f"fails: {name}: " in line for line in failed), failed
