#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "device.cuh"
#include "pyxfer/normalize.h"

namespace pyxfer {
namespace {

template <typename T>
__device__ __forceinline__ T cast_out(float v);
template <>
__device__ __forceinline__ float cast_out<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half cast_out<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void normalize_kernel(const uint8_t* __restrict__ src, T* __restrict__ dst,
                                 NormalizeParams p, NormalizeAffine a) {
  const int64_t total = p.n * p.h * p.w * p.c;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // i indexes the NHWC input.
    const int64_t ch = i % p.c;
    const int64_t x = (i / p.c) % p.w;
    const int64_t y = (i / (p.c * p.w)) % p.h;
    const int64_t n = i / (p.c * p.w * p.h);
    const float v = static_cast<float>(src[i]) * a.scale[ch] + a.shift[ch];
    const int64_t o = p.layout == Layout::NCHW ? ((n * p.c + ch) * p.h + y) * p.w + x : i;
    dst[o] = cast_out<T>(v);
  }
}

}  // namespace

void normalize_cuda(const uint8_t* src, void* dst, const NormalizeParams& p, void* stream) {
  const NormalizeAffine a = normalize_affine(p);
  const int64_t total = p.n * p.h * p.w * p.c;
  if (total == 0) return;
  const int threads = 256;
  const int64_t blocks64 = (total + threads - 1) / threads;
  const int blocks = static_cast<int>(blocks64 < 65535 ? blocks64 : 65535);
  auto s = static_cast<cudaStream_t>(stream);
  if (p.dtype == OutDType::Float32) {
    normalize_kernel<float><<<blocks, threads, 0, s>>>(src, static_cast<float*>(dst), p, a);
  } else {
    normalize_kernel<__half><<<blocks, threads, 0, s>>>(src, static_cast<__half*>(dst), p, a);
  }
  PYXFER_CUDA_CHECK(cudaGetLastError(), "launch");
}

}  // namespace pyxfer
