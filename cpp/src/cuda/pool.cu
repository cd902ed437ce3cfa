#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "device.cuh"
#include "pyxfer/pool.h"

namespace pyxfer {
namespace {

constexpr int kWarp = 32;

template <bool Half>
__device__ __forceinline__ float load_elem(const void* x, int64_t i) {
  if constexpr (Half) {
    return __half2float(static_cast<const __half*>(x)[i]);
  } else {
    return static_cast<const float*>(x)[i];
  }
}

// One warp per (n, c) plane: strided partial sums, then a shuffle reduction.
template <bool Half>
__global__ void pool_kernel(const void* __restrict__ x, float* __restrict__ out, PoolParams p) {
  const int64_t planes = p.n * p.c;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t plane = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
       plane < planes; plane += warps) {
    const int64_t base = plane * p.hw;
    double sum = 0.0;
    for (int64_t i = lane; i < p.hw; i += kWarp) {
      sum += static_cast<double>(pool_term(load_elem<Half>(x, base + i), p));
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    }
    if (lane == 0) out[plane] = pool_finish(sum, p);
  }
}

// One block per row: squared norm by a shared-memory reduction, then scale in place.
__global__ void l2_rows_kernel(float* __restrict__ out, PoolParams p) {
  __shared__ double partial[256];
  float* row = out + static_cast<int64_t>(blockIdx.x) * p.c;
  double sq = 0.0;
  for (int64_t c = threadIdx.x; c < p.c; c += blockDim.x) {
    sq += static_cast<double>(row[c]) * static_cast<double>(row[c]);
  }
  partial[threadIdx.x] = sq;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float scale = pool_l2_scale(partial[0], p);
  for (int64_t c = threadIdx.x; c < p.c; c += blockDim.x) row[c] *= scale;
}

}  // namespace

void pool_normalize_cuda(const void* x, float* out, const PoolParams& p, void* stream) {
  const int64_t planes = p.n * p.c;
  if (planes == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  const int64_t blocks64 = (planes * kWarp + threads - 1) / threads;
  const int blocks = static_cast<int>(blocks64 < 65535 ? blocks64 : 65535);
  if (p.half) {
    pool_kernel<true><<<blocks, threads, 0, s>>>(x, out, p);
  } else {
    pool_kernel<false><<<blocks, threads, 0, s>>>(x, out, p);
  }
  PYXFER_CUDA_CHECK(cudaGetLastError(), "launch");
  if (p.l2) {
    for (int64_t r0 = 0; r0 < p.n; r0 += 65535) {
      const int64_t rows = p.n - r0 < 65535 ? p.n - r0 : 65535;
      l2_rows_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(out + r0 * p.c, p);
      PYXFER_CUDA_CHECK(cudaGetLastError(), "l2 launch");
    }
  }
}

}  // namespace pyxfer
