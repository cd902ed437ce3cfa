#!/usr/bin/env bash
# Guest instructions per inference of the fp32 and int8 ONNX models on onnxruntime's AVX2 int8
# path (the table in docs/deploy.md, "int8 on AVX2 as instruction counts"): a VNNI machine cannot
# run MLAS's AVX2 kernels natively (MLAS picks its kernels by CPUID, with no switch), qemu can;
# qemu's run time says nothing about a real CPU, its instruction counts are a proxy. Instruction
# counts, not speed: a vpmaddubsw + vpmaddwd pair does not cost what an FMA costs.
#
#   nice -n 19 bash bench/int8_insn_counts.sh [WORK_DIR]
#
# Needs qemu-user (Debian: apt-get install qemu-user), a host cc and pyxfer installed in the
# python on PATH. bench/int8_insn_workload.py exports the models natively into WORK_DIR (kept
# and reused when given; a temporary directory, removed at the end, otherwise), then runs each
# model under `qemu-x86_64 -cpu CPU` with the counting plugin (bench/qemu_insn.sh): a warm-up
# inference, a mark, REPS inferences, a mark; the table shows (second - first) / REPS.
#
# CPUs: PYXFER_INT8_INSN_CPUS (default "EPYC-Milan Cascadelake-Server": Zen 3, AVX2 without
# VNNI; and an AVX-512 VNNI model). qemu's TCG filters out the features it cannot emulate (qemu
# 7.2: all of AVX-512 and AVX-VNNI), so a CPU whose int8 path under qemu is one already counted
# is named and skipped. Inferences counted: PYXFER_INT8_INSN_REPS (default "2 20": ResNet-18,
# LeNet).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  work="$1"
  mkdir -p "$work"
else
  work="$(mktemp -d -t pyxfer-int8-insn-XXXXXX)"
  trap 'rm -rf "$work"' EXIT
fi
cpus="${PYXFER_INT8_INSN_CPUS:-EPYC-Milan Cascadelake-Server}"
read -r reps_resnet reps_lenet <<<"${PYXFER_INT8_INSN_REPS:-2 20}"
py="$(command -v python)"
. bench/qemu_insn.sh
qemu_insn_plugin "$work/libinsn.so"
[ -f "$work/lenet-digits-input.npy" ] || "$py" bench/int8_insn_workload.py export "$work" >&2

count() {  # CPU MODEL INPUT REPS -> instructions per inference
  OMP_NUM_THREADS=1 qemu-x86_64 -cpu "$1" -plugin "$work/libinsn.so" "$py" \
    bench/int8_insn_workload.py run "$2" "$3" 1 "$4" 2>&1 | qemu_insn_per_call "$4"
}

row() {  # CPU ISA LABEL NAME REPS: one table row, counts in millions, fp32/int8 in brackets
  local fp32 c cells
  fp32=$(count "$1" "$work/$4/model.onnx" "$work/$4-input.npy" "$5")
  cells="$(awk -v f="$fp32" 'BEGIN { printf "%.1f M", f / 1e6 }')"
  for m in "$4/model.int8.onnx" "$4-u8s8_8-bit.onnx" "$4-u8u8.onnx"; do
    c=$(count "$1" "$work/$m" "$work/$4-input.npy" "$5")
    cells+=" | $(awk -v f="$fp32" -v c="$c" 'BEGIN { printf "%.1f M (%.2f×)", c / 1e6, f / c }')"
  done
  echo "| $2 (qemu -cpu $1) | $3 | $cells |"
}

echo "| int8 path | model, batch 1, 1 thread (inferences counted) | ORT fp32 | U8S8 7-bit (default) | U8S8 8-bit | U8U8 |"
echo "|---|---|---|---|---|---|"
seen=() notes=()
for cpu in $cpus; do
  isa=$(qemu-x86_64 -cpu "$cpu" "$py" bench/int8_insn_workload.py isa 2>/dev/null)
  if [[ " ${seen[*]-} " == *" $isa "* ]]; then
    notes+=("qemu-x86_64 -cpu $cpu: int8 path under TCG '$isa', already counted: skipped")
    continue
  fi
  seen+=("$isa")
  row "$cpu" "$isa" "ResNet-18 224 px ($reps_resnet)" resnet18-224 "$reps_resnet"
  row "$cpu" "$isa" "LeNet 28 px digits ($reps_lenet)" lenet-digits "$reps_lenet"
done
[ ${#notes[@]} -eq 0 ] || printf '%s\n' "${notes[@]}"
echo "qemu: $(qemu-x86_64 --version | head -1); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
