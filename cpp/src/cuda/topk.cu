#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "device.cuh"
#include "pyxfer/topk.h"

namespace pyxfer {
namespace {

constexpr int kTile = 64;          // output tile edge of the similarity kernel
constexpr int kStep = 16;          // reduction step over D
constexpr int64_t kBankBlock = 1024;   // bank rows per block
constexpr int64_t kQueryChunk = 8192;  // queries per similarity buffer

template <bool Half>
__device__ __forceinline__ float bank_elem(const void* bank, int64_t i) {
  if constexpr (Half) {
    return __half2float(static_cast<const __half*>(bank)[i]);
  } else {
    return static_cast<const float*>(bank)[i];
  }
}

// sim[i * ld + j] = dot(q row i, bank row j0 + j) for i < mrows, j < nb: 64 x 64 tiles, 256
// threads with 4 x 4 outputs each, operands staged through shared memory.
template <bool Half>
__global__ void similarity_kernel(const float* __restrict__ q, const void* __restrict__ bank,
                                  int64_t mrows, int64_t nb, int64_t d, int64_t j0,
                                  float* __restrict__ sim, int64_t ld) {
  __shared__ float qs[kStep][kTile + 1];
  __shared__ float bs[kStep][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x % 16), ty = static_cast<int>(threadIdx.x / 16);
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc[4][4] = {};
  for (int64_t kk = 0; kk < d; kk += kStep) {
    for (int l = 0; l < 4; ++l) {
      const int e = static_cast<int>(threadIdx.x) + l * 256;
      const int r = e / kStep, c = e % kStep;
      const int64_t x = kk + c;
      const int64_t qr = row0 + r, br = col0 + r;
      qs[c][r] = (qr < mrows && x < d) ? q[qr * d + x] : 0.0f;
      bs[c][r] = (br < nb && x < d) ? bank_elem<Half>(bank, (j0 + br) * d + x) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kStep; ++c) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = qs[c][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = bs[c][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + ty + 16 * i;
    if (r >= mrows) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t c = col0 + tx + 16 * j;
      if (c < nb) sim[r * ld + c] = acc[i][j];
    }
  }
}

// a goes before b: larger value first, then lower index.
__device__ __forceinline__ bool before(float av, int ai, float bv, int bi) {
  return av > bv || (av == bv && ai < bi);
}

// Merge one query's running top-k (`have` entries) with a block of nb candidates: a bitonic sort
// of both in shared memory (size P, a power of two), skipped when no candidate beats the k-th.
__global__ void merge_kernel(const float* __restrict__ sim, int64_t ld, int64_t nb, int64_t j0,
                             int64_t have, int64_t k, float* __restrict__ values,
                             int64_t* __restrict__ indices, int P) {
  extern __shared__ unsigned char smem[];
  float* sv = reinterpret_cast<float*>(smem);
  int* si = reinterpret_cast<int*>(sv + P);
  const int64_t row = blockIdx.x;
  float* v = values + row * k;
  int64_t* ix = indices + row * k;
  const float* s = sim + row * ld;
  const float inf = __int_as_float(0x7f800000);
  const float threshold = have == k ? v[k - 1] : -inf;
  int any = 0;
  for (int64_t t = threadIdx.x; t < nb && !any; t += blockDim.x) {
    any = have < k || s[t] > threshold;
  }
  if (!__syncthreads_or(any)) return;
  for (int t = static_cast<int>(threadIdx.x); t < P; t += blockDim.x) {
    if (t < have) {
      sv[t] = v[t];
      si[t] = static_cast<int>(ix[t]);
    } else if (t < have + nb) {
      sv[t] = s[t - have];
      si[t] = static_cast<int>(j0 + (t - have));
    } else {
      sv[t] = -inf;
      si[t] = 0x7fffffff;
    }
  }
  __syncthreads();
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int t = static_cast<int>(threadIdx.x); t < P / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1));
        const int hi = lo + stride;
        const bool forward = (lo & size) == 0;
        const bool swap = forward ? before(sv[hi], si[hi], sv[lo], si[lo])
                                  : before(sv[lo], si[lo], sv[hi], si[hi]);
        if (swap) {
          const float tv = sv[lo];
          sv[lo] = sv[hi];
          sv[hi] = tv;
          const int ti = si[lo];
          si[lo] = si[hi];
          si[hi] = ti;
        }
      }
      __syncthreads();
    }
  }
  const int64_t keep = have + nb < k ? have + nb : k;
  for (int64_t t = threadIdx.x; t < keep; t += blockDim.x) {
    v[t] = sv[t];
    ix[t] = si[t];
  }
}

}  // namespace

void cosine_topk_cuda(const float* queries, const void* bank, const TopkParams& p, float* values,
                      int64_t* indices, void* stream) {
  if (p.m == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t chunk = p.m < kQueryChunk ? p.m : kQueryChunk;
  const int64_t nbmax = p.n < kBankBlock ? p.n : kBankBlock;
  int P = 1;
  while (P < p.k + nbmax) P <<= 1;
  const size_t shared = static_cast<size_t>(P) * (sizeof(float) + sizeof(int));
  cuda::DeviceArray<float> sim(s);
  PYXFER_CUDA_CHECK(sim.allocate(static_cast<size_t>(chunk * nbmax)),
                    "allocating the similarity block");
  for (int64_t q0 = 0; q0 < p.m; q0 += chunk) {
    const int64_t mrows = p.m - q0 < chunk ? p.m - q0 : chunk;
    for (int64_t j0 = 0; j0 < p.n; j0 += nbmax) {
      const int64_t nb = p.n - j0 < nbmax ? p.n - j0 : nbmax;
      const int64_t have = j0 < p.k ? j0 : p.k;
      const dim3 grid(static_cast<unsigned>((nb + kTile - 1) / kTile),
                      static_cast<unsigned>((mrows + kTile - 1) / kTile));
      if (p.bank_half) {
        similarity_kernel<true><<<grid, 256, 0, s>>>(queries + q0 * p.d, bank, mrows, nb, p.d,
                                                     j0, sim.get(), nbmax);
      } else {
        similarity_kernel<false><<<grid, 256, 0, s>>>(queries + q0 * p.d, bank, mrows, nb, p.d,
                                                      j0, sim.get(), nbmax);
      }
      PYXFER_CUDA_CHECK(cudaGetLastError(), "similarity launch");
      merge_kernel<<<static_cast<unsigned>(mrows), 256, shared, s>>>(
          sim.get(), nbmax, nb, j0, have, p.k, values + q0 * p.k, indices + q0 * p.k, P);
      PYXFER_CUDA_CHECK(cudaGetLastError(), "merge launch");
    }
  }
  PYXFER_CUDA_CHECK(sim.free_now(), "freeing the similarity block");
}

}  // namespace pyxfer
