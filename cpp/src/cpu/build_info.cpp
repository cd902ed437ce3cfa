#include "pyxfer/build_info.h"

#include "pyxfer/augment.h"
#include "pyxfer/parallel.h"
#include "pyxfer/preprocess.h"

namespace pyxfer {

#if defined(PYXFER_WITH_CUDA)
// Defined in src/cuda/device.cu.
int cuda_device_count(std::string* error);
#endif

const char* compiled_simd() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__SSE4_2__)
  return "sse4.2";
#elif defined(__SSE2__) || defined(_M_X64)
  return "sse2";
#elif defined(__ARM_NEON) || defined(__aarch64__)
  return "neon";
#else
  return "scalar";
#endif
}

BuildInfo build_info() {
  BuildInfo info;
  info.version = PYXFER_VERSION;
  info.simd = compiled_simd();
  info.augment_simd = augment_simd_path();
  info.preprocess_simd = preprocess_simd_path();
  info.hardware_threads = hardware_threads();
#if defined(PYXFER_WITH_CUDA)
  info.cuda_compiled = true;
  info.cuda_version = PYXFER_CUDA_VERSION;
  info.cuda_devices = cuda_device_count(&info.cuda_error);
#else
  info.cuda_error = "pyxfer._C was built without CUDA (PYXFER_WITH_CUDA=OFF)";
#endif
  return info;
}

}  // namespace pyxfer
