"""The instruction counter of bench/aarch64_insn_counts.sh and bench/int8_insn_counts.sh: the
qemu TCG plugin bench/qemu_insn_count.c and bench/qemu_insn.sh's helpers count the guest
instructions between two getppid() marks, for an x86-64 guest and an AArch64 one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a loop of argv[1] iterations between the two marks: its count grows by the loop body per
# iteration, so the count per iteration is the same for any length
LOOP = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 0;
  volatile long s = 0;
  getppid();
  for (long i = 0; i < n; i++) s += i;
  getppid();
  return 0;
}
"""

GUESTS = {  # guest: (qemu-user, C compiler and flags for it)
    "x86_64": ("qemu-x86_64", ["cc", "-O1"]),
    "aarch64": ("qemu-aarch64", ["aarch64-linux-gnu-gcc", "-O1", "-static"]),
}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("needs a host C compiler (cc) to build the qemu plugin")
    out = tmp_path_factory.mktemp("plugin") / "libinsn.so"
    subprocess.run(
        ["bash", "-c", '. bench/qemu_insn.sh && qemu_insn_plugin "$0"', str(out)],
        cwd=ROOT, check=True,
    )  # fmt: skip
    return out


def per_iteration(plugin: Path, qemu: str, prog: Path, n: int) -> int:
    """qemu_insn_per_call's (second mark - first mark) / n for a loop of n iterations."""
    script = f'"$0" -plugin "$1" "$2" {n} 2>&1 | qemu_insn_per_call {n}'
    proc = subprocess.run(
        ["bash", "-c", f". bench/qemu_insn.sh && {script}", qemu, str(plugin), str(prog)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


@pytest.mark.parametrize("guest", sorted(GUESTS))
def test_counts_the_instructions_between_the_marks(plugin, guest, tmp_path) -> None:
    qemu, compiler = GUESTS[guest]
    if shutil.which(qemu) is None or shutil.which(compiler[0]) is None:
        pytest.skip(f"needs {qemu} (qemu-user) and {compiler[0]} for the {guest} guest")
    (tmp_path / "loop.c").write_text(LOOP)
    prog = tmp_path / "loop"
    subprocess.run([*compiler, "-o", str(prog), str(tmp_path / "loop.c")], check=True)
    short, long = per_iteration(plugin, qemu, prog, 1000), per_iteration(plugin, qemu, prog, 4000)
    # an add, a compare, a branch and the volatile load and store: a handful per iteration,
    # and the same for both lengths (the instructions outside the loop vanish in the division)
    assert 2 <= short <= 20
    assert short == long
