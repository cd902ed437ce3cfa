/* qemu TCG plugin (API v1, qemu 7.2): counts the guest instructions a qemu-user process executes
 * and prints the count so far at each getppid() of the guest (a mark), and at exit. Works for any
 * guest ISA that has getppid (aarch64, x86_64). Used by bench/aarch64_insn_counts.sh and
 * bench/int8_insn_counts.sh (through bench/qemu_insn.sh); built as a host shared object, never
 * part of pyxfer. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_info_t {
  const char *target_name; /* the first member of qemu's qemu_info_t; the rest is not read */
};
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t,
                                           void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *,
                                              uint64_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void *), void *);
typedef void (*syscall_cb_t)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t,
                             uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb_t);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;
static uint64_t count;
static int64_t getppid_nr = -1; /* the guest's getppid syscall number */

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count,
                                           qemu_plugin_tb_n_insns(tb));
}
static void on_exit_cb(qemu_plugin_id_t id, void *p) {
  (void)id, (void)p;
  fprintf(stderr, "guest instructions: %" PRIu64 "\n", count);
}
/* getppid from the guest marks a point: print the count so far. */
static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
  (void)id, (void)vcpu, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
  if (num == getppid_nr) fprintf(stderr, "mark: %" PRIu64 "\n", count);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const struct qemu_info_t *info,
                                                               int argc, char **argv) {
  (void)argc, (void)argv;
  if (strcmp(info->target_name, "aarch64") == 0) getppid_nr = 173;
  else if (strcmp(info->target_name, "x86_64") == 0) getppid_nr = 110;
  else {
    fprintf(stderr, "qemu_insn_count: no getppid number for guest %s\n", info->target_name);
    return -1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
  qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  return 0;
}
