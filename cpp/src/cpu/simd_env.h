// PYXFER_SIMD as the CPU kernels with instruction-set paths read it.
#pragma once

#include <cstdlib>
#include <cstring>

namespace pyxfer::cpu {

// Whether PYXFER_SIMD asks for the portable code ("baseline" or "scalar"): the kernels with
// hand-written vector paths (augmentation, and on AArch64 normalize and preprocess) then run
// their plain C++ loops. Read at every call, so that one process can compare the paths.
inline bool simd_forced_baseline() {
  const char* want = std::getenv("PYXFER_SIMD");
  return want != nullptr &&
         (std::strcmp(want, "baseline") == 0 || std::strcmp(want, "scalar") == 0);
}

}  // namespace pyxfer::cpu
