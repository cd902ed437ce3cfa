"""A copy of the installed onnxruntime that runs MLAS's AVX2 kernels on an AVX-512 machine.

onnxruntime's x86 kernels (MLAS) pick their instruction set from CPUID once, with no setting
to lower it, and this VM offers no CPUID masking: the AVX2 int8 path (``vpmaddubsw``, no VNNI)
cannot be timed here otherwise. This script copies the ``onnxruntime`` package into ``--out``
and patches the copy's MLAS platform setup so that three CPUID tests read "absent": AVX512F
(``test $0x10000`` on leaf 7 EBX), AVX-VNNI (``test $0x10`` on leaf 7.1 EAX) and
AVX-VNNI-INT8 (``test $0x10`` on leaf 7.1 EDX). They are found next to the unique
``and $0xc0020000`` (the AVX-512 BW/DQ/VL test) of that function; if any is not found exactly
once, nothing is written. The installed package is not touched.

The copy is then checked by what distinguishes the kernels: a uint8 x int8 MatMulInteger
whose pairs of products overflow 16 bits (255 * 127 * 2 = 64,770) is exact with VNNI and
saturates to 32,767 per pair on the AVX2 path; the script runs it on both and reports.

    python bench/ort_isa.py --out /tmp/ort-avx2
    PYTHONPATH=/tmp/ort-avx2 python bench/inference.py --quick --sections latency

The CPU still runs its own microarchitecture (e.g. Zen 5 with AVX2 code), so the timings show
the AVX2 kernels' speed on this CPU, not that of an AVX2-only CPU. bench/inference.py names
the path "avx2 (patched copy)" when it runs on such a copy (the marker file MLAS_ISA).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = "MLAS_ISA"  # written into the patched package directory
ANCHOR = re.compile(rb"\x81[\xe0-\xe7]\x00\x00\x02\xc0")  # and $0xc0020000, r32
WINDOW = 0x400  # bytes before the anchor searched for the three tests
TESTS = {  # name: (pattern, offset of the byte(s) to zero, bytes zeroed)
    "avx512f": (re.compile(rb"(?:\xf7[\xc0-\xc7]|\xa9)\x00\x00\x01\x00"), None, 4),
    "avx-vnni": (re.compile(rb"\x0f\xa2.{0,8}?\xa8\x10", re.S), -1, 1),
    "avx-vnni-int8": (re.compile(rb"\xf6[\xc0-\xc7]\x10"), 2, 1),
}


def patch(blob: bytearray) -> dict[str, int]:
    """Zero the immediates of the three CPUID tests; returns their file offsets."""
    anchors = [m.start() for m in ANCHOR.finditer(blob)]
    if len(anchors) != 1:
        raise SystemExit(f"expected one MLAS AVX-512 core test, found {len(anchors)}: not patched")
    lo = anchors[0] - WINDOW
    window = bytes(blob[lo : anchors[0]])
    where: dict[str, int] = {}
    for name, (pattern, at, size) in TESTS.items():
        hits = list(pattern.finditer(window))
        if len(hits) != 1:
            raise SystemExit(f"expected one {name} test near it, found {len(hits)}: not patched")
        m = hits[0]
        if at is None:  # test imm32: the immediate is the last 4 bytes
            start = lo + m.end() - size
        elif at < 0:
            start = lo + m.end() + at
        else:
            start = lo + m.start() + at
        where[name] = start
    for name, start in where.items():
        size = TESTS[name][2]
        blob[start : start + size] = bytes(size)
    return where


CHECK = r"""
import json, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper
k, n = 64, 16
g = helper.make_graph(
    [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "m",
    [helper.make_tensor_value_info("a", TensorProto.UINT8, [4, k])],
    [helper.make_tensor_value_info("y", TensorProto.INT32, [4, n])],
    [helper.make_tensor("b", TensorProto.INT8, [k, n], [127] * (k * n))],
)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
y = s.run(None, {"a": np.full((4, k), 255, np.uint8)})[0]
print(json.dumps({"file": ort.__file__, "y": int(y[0, 0])}))
"""


def run_check(pythonpath: str | None) -> dict:
    env = None
    if pythonpath:
        import os

        env = dict(os.environ, PYTHONPATH=pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the patched onnxruntime copy")
    args = ap.parse_args()
    import onnxruntime

    src = Path(onnxruntime.__file__).parent
    mods = sorted((src / "capi").glob("onnxruntime_pybind11_state*.so"))
    if len(mods) != 1:
        raise SystemExit(f"expected one onnxruntime_pybind11_state module in {src / 'capi'}")
    blob = bytearray(mods[0].read_bytes())
    where = patch(blob)
    dst = Path(args.out) / "onnxruntime"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    (dst / "capi" / mods[0].name).write_bytes(blob)
    (dst / MARKER).write_text(
        "avx2: MLAS's AVX512F, AVX-VNNI and AVX-VNNI-INT8 CPUID tests patched to 'absent' "
        f"(bench/ort_isa.py, onnxruntime {onnxruntime.__version__}, offsets "
        + ", ".join(f"{k} {v:#x}" for k, v in where.items())
        + ")\n"
    )
    print(f"patched copy of onnxruntime {onnxruntime.__version__}: {dst}")
    for name, off in where.items():
        print(f"  {name:14s} test zeroed at file offset {off:#x}")
    exact = 255 * 127 * 64
    for label, path in (("installed", None), ("patched copy", str(Path(args.out)))):
        got = run_check(path)
        kind = "exact: VNNI kernels" if got["y"] == exact else "16-bit pair sums saturated: no VNNI"
        print(f"  {label:13s} MatMulInteger 255 x 127, K=64: {got['y']} -> {kind}  "
              f"[{got['file']}]")  # fmt: skip
    print(f"use it with: PYTHONPATH={args.out} python bench/inference.py ...")


if __name__ == "__main__":
    main()
