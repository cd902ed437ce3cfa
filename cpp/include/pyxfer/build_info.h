// What was compiled in, for pyxfer._C.build_info() and `pyxfer info`.
#pragma once

#include <string>

namespace pyxfer {

struct BuildInfo {
  std::string version;
  std::string simd;          // best SIMD instruction set the kernels were compiled for
  std::string augment_simd;  // path the augmentation kernel runs on this CPU (run-time choice)
  std::string preprocess_simd;  // path of the preprocess and normalize kernels ("neon", ...)
  bool cuda_compiled = false;
  std::string cuda_version;  // toolkit version the CUDA kernels were built with ("" if none)
  int cuda_devices = 0;      // devices visible at run time (0 without CUDA)
  std::string cuda_error;    // why no device is usable, if any
  int hardware_threads = 1;
};

BuildInfo build_info();

// Compiled SIMD level of this translation unit set ("avx512", "avx2", "sse4.2", "neon", ...).
const char* compiled_simd();

}  // namespace pyxfer
