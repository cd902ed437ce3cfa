// Shared definitions for host and device code. No Python, no torch.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define PYXFER_HD __host__ __device__ __forceinline__
#else
#define PYXFER_HD inline
#endif

namespace pyxfer {

// Output element type of the float-producing kernels.
enum class OutDType : int { Float32 = 0, Float16 = 1 };

// Memory layout of an image batch written by a kernel.
enum class Layout : int { NCHW = 0, NHWC = 1 };

}  // namespace pyxfer
