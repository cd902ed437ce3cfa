#!/usr/bin/env bash
# Guest instructions per call of the NEON and the scalar paths under qemu-aarch64 (the table in
# docs/kernels.md, "AArch64"): qemu's run time says nothing about an ARM core, its instruction
# counts do. Needs the sysroot and cross build that .ci/aarch64.sh leaves in PYXFER_AARCH64_WORK:
#
#   PYXFER_AARCH64_WORK=/tmp/pyxfer-arm bash .ci/aarch64.sh     # once
#   PYXFER_AARCH64_WORK=/tmp/pyxfer-arm bash bench/aarch64_insn_counts.sh
#
# bench/qemu_insn_count.c (a TCG plugin, built here with the host's cc, see bench/qemu_insn.sh)
# counts every executed guest instruction and prints the count at each getppid();
# bench/aarch64_insn_workload.py makes one warm-up call, then a getppid() mark, `reps` calls and
# a second mark.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${PYXFER_AARCH64_WORK:?set PYXFER_AARCH64_WORK to the directory .ci/aarch64.sh used}"
sys="$work/sysroot"
. bench/qemu_insn.sh
qemu_insn_plugin "$work/libinsn.so"

per_call() {  # WORKLOAD REPS PATH
  local env=(PYTHONHASHSEED=0 PYTHONPATH="$work/stage:$work/site-packages")
  [ "$3" = scalar ] && env+=(PYXFER_SIMD=scalar)
  env "${env[@]}" qemu-aarch64 -L "$sys" -plugin "$work/libinsn.so" "$sys/usr/bin/python3" -P \
    bench/aarch64_insn_workload.py "$1" "$2" 2>&1 | qemu_insn_per_call "$2"
}

echo "| call (threads=1) | NEON | PYXFER_SIMD=scalar |"
for w in "normalize 10" "preprocess 4" "augment-224 4" "augment-32 4"; do
  set -- $w
  echo "| $1 | $(per_call "$1" "$2" neon) | $(per_call "$1" "$2" scalar) |"
done
