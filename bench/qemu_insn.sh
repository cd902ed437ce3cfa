# Sourced by bench/aarch64_insn_counts.sh and bench/int8_insn_counts.sh: guest instruction counts
# per call under qemu-user with the counting plugin bench/qemu_insn_count.c (any guest ISA).
#
#   qemu_insn_plugin OUT.so          build the plugin with the host's cc
#   ... 2>&1 | qemu_insn_per_call REPS
#
# A workload makes its warm-up calls, then a getppid() mark, REPS calls and a second mark; the
# plugin prints "mark: COUNT" at each, and qemu_insn_per_call prints (second - first) / REPS:
# the instructions of the calls alone, without start-up, imports and warm-up.

qemu_insn_plugin() {  # OUT.so
  cc -O2 -shared -fPIC -o "$1" "$(dirname "${BASH_SOURCE[0]}")/qemu_insn_count.c"
}

qemu_insn_per_call() {  # REPS; reads the workload's output (with qemu's stderr) on stdin
  sed -n 's/^mark: //p' | {
    if read -r a && read -r b; then
      echo $(((b - a) / $1))
    else
      echo "qemu_insn_per_call: the workload printed fewer than two marks (did it fail?)" >&2
      return 1
    fi
  }
}
