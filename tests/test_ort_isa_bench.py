"""``bench/ort_isa.py``: the byte patch zeroes exactly the three CPUID tests near MLAS's one
AVX-512 core test and refuses (raises, nothing patched) when a pattern is missing or repeated.
Synthetic bytes; the real onnxruntime copy is the script's own end-to-end check."""

from __future__ import annotations

from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "ort_isa.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="needs bench/ort_isa.py")

CPUID_VNNI = bytes.fromhex("0fa2 89c1 a810 7438")  # cpuid; mov; test $0x10,%al; je
AVX512F = bytes.fromhex("41f7c2 00000100 740e")  # test $0x10000,%r10d; je
INT8 = bytes.fromhex("f6c210 7443")  # test $0x10,%dl; je
ANCHOR = bytes.fromhex("4181e2 000002c0")  # and $0xc0020000,%r10d


def _module():
    return load_script(SCRIPT, "pyxfer_ort_isa")


def _blob(*parts: bytes) -> bytearray:
    filler = bytes([0x90]) * 40  # nops between the instructions
    return bytearray(b"\xcc" * 0x800 + filler.join(parts) + b"\xcc" * 64)


def test_patch_zeroes_the_three_tests_only():
    m = _module()
    blob = _blob(CPUID_VNNI, AVX512F, INT8, ANCHOR)
    before = bytes(blob)
    where = m.patch(blob)
    assert set(where) == {"avx512f", "avx-vnni", "avx-vnni-int8"}
    changed = [i for i, (a, b) in enumerate(zip(before, blob, strict=True)) if a != b]
    # one byte of each test's immediate: 0x10 (VNNI), 0x01 of 0x00010000, 0x10 (VNNI-INT8)
    assert [before[i] for i in changed] == [0x10, 0x01, 0x10]
    assert all(blob[i] == 0 for i in changed)
    assert bytes.fromhex("a800") in blob and bytes.fromhex("41f7c200000000") in blob
    assert bytes.fromhex("f6c200") in blob and ANCHOR in blob


@pytest.mark.parametrize(
    "parts",
    [
        (CPUID_VNNI, AVX512F, INT8),  # no anchor
        (CPUID_VNNI, AVX512F, INT8, ANCHOR, ANCHOR),  # two anchors
        (CPUID_VNNI, INT8, ANCHOR),  # no AVX512F test
        (CPUID_VNNI, AVX512F, AVX512F, INT8, ANCHOR),  # two of them
    ],
)
def test_patch_refuses_unless_each_pattern_is_found_once(parts):
    m = _module()
    blob = _blob(*parts)
    before = bytes(blob)
    with pytest.raises(SystemExit, match="not patched"):
        m.patch(blob)
    assert bytes(blob) == before
