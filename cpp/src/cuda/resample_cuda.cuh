// Device helpers shared by the augment and preprocess CUDA kernels: one thread block resamples
// one image, with the same weights, integer rounding and pass order as the CPU kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "pyxfer/resample.h"

namespace pyxfer::cuda {

constexpr int kThreads = 256;

__host__ __device__ inline int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Weights of one axis in scratch memory.
struct AxisDev {
  bool identity;
  int taps;
  unsigned precision;
  double* wd;  // out * taps
  int* wi;     // out * taps
  float* wf;   // out * taps
  int* xmin;   // out
  int* xsize;  // out
};

// Scratch bytes an axis needs.
__host__ __device__ inline int64_t axis_bytes(int64_t in, int64_t out) {
  if (in == out) return 0;
  const int64_t t = aa_max_taps(in, out);
  return align16(out * t * 8) + 2 * align16(out * t * 4) + 2 * align16(out * 4);
}

// Carves an axis out of `scratch` (advancing it) and computes its weights with the whole block.
__device__ inline AxisDev block_axis(int64_t in, int64_t out, char*& scratch) {
  __shared__ unsigned long long wmax_bits;
  AxisDev a{};
  a.identity = in == out;
  if (a.identity) return a;
  a.taps = aa_max_taps(in, out);
  const int64_t n = out * a.taps;
  a.wd = reinterpret_cast<double*>(scratch), scratch += align16(n * 8);
  a.wi = reinterpret_cast<int*>(scratch), scratch += align16(n * 4);
  a.wf = reinterpret_cast<float*>(scratch), scratch += align16(n * 4);
  a.xmin = reinterpret_cast<int*>(scratch), scratch += align16(out * 4);
  a.xsize = reinterpret_cast<int*>(scratch), scratch += align16(out * 4);
  if (threadIdx.x == 0) wmax_bits = 0ull;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < out; i += blockDim.x) {
    int64_t xm = 0;
    int xs = 0;
    const double m = aa_weights_at(i, in, out, a.wd + i * a.taps, &xm, &xs);
    a.xmin[i] = static_cast<int>(xm);
    a.xsize[i] = xs;
    atomicMax(&wmax_bits, static_cast<unsigned long long>(__double_as_longlong(m)));
  }
  __syncthreads();
  a.precision = aa_precision(__longlong_as_double(static_cast<long long>(wmax_bits)));
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    a.wi[k] = aa_quantize(a.wd[k], a.precision);
    a.wf[k] = static_cast<float>(a.wd[k]);
  }
  __syncthreads();
  return a;
}

// Scratch bytes of the horizontal-pass buffer.
__host__ __device__ inline int64_t tmp_bytes(int64_t rows, int64_t nx, int64_t c) {
  return align16(rows * nx * c * 4);
}

// Resample the crop (top, left, ch, cw) of an HWC uint8 image into planar dst (c, ny, nx),
// rows [y0, y0 + ny) x cols [x0, x0 + nx) of the (oh, ow) result; horizontal pass first.
__device__ inline void block_resample(const uint8_t* src, int64_t src_w, int64_t c, int64_t top,
                                      int64_t left, const AxisDev& ax, const AxisDev& ay,
                                      int64_t y0, int64_t ny, int64_t x0, int64_t nx, bool flip,
                                      bool q, float* tmp, float* dst) {
  __shared__ int64_t rows_shared[2];
  if (threadIdx.x == 0) {
    int64_t rmin = y0, rmax = y0 + ny;
    if (!ay.identity) {
      rmin = ay.xmin[y0];
      rmax = 0;
      for (int64_t y = y0; y < y0 + ny; ++y) {
        const int64_t e = ay.xmin[y] + ay.xsize[y];
        rmax = e > rmax ? e : rmax;
      }
    }
    rows_shared[0] = rmin, rows_shared[1] = rmax;
  }
  __syncthreads();
  const int64_t rmin = rows_shared[0], nrows = rows_shared[1] - rows_shared[0];
  for (int64_t idx = threadIdx.x; idx < nrows * nx * c; idx += blockDim.x) {
    const int64_t r = idx / (nx * c), rem = idx % (nx * c), xo = rem / c, k = rem % c;
    const int64_t x = x0 + (flip ? nx - 1 - xo : xo);
    const uint8_t* in = src + ((top + rmin + r) * src_w + left) * c;
    float v;
    if (ax.identity) {
      v = static_cast<float>(in[x * c + k]);
    } else {
      const int n = ax.xsize[x];
      const uint8_t* p = in + static_cast<int64_t>(ax.xmin[x]) * c + k;
      if (q) {
        const int* w = ax.wi + x * ax.taps;
        int32_t acc = 1 << (ax.precision - 1);
        for (int j = 0; j < n; ++j) acc += w[j] * static_cast<int32_t>(p[j * c]);
        v = static_cast<float>(aa_finish(acc, ax.precision));
      } else {
        const float* w = ax.wf + x * ax.taps;
        float acc = 0.f;
        for (int j = 0; j < n; ++j) acc += w[j] * static_cast<float>(p[j * c]);
        v = acc;
      }
    }
    tmp[idx] = v;
  }
  __syncthreads();
  const int64_t plane = ny * nx;
  for (int64_t idx = threadIdx.x; idx < ny * nx * c; idx += blockDim.x) {
    const int64_t yo = idx / (nx * c), rem = idx % (nx * c), x = rem / c, k = rem % c;
    const int64_t y = y0 + yo;
    float v;
    if (ay.identity) {
      v = tmp[((y - rmin) * nx + x) * c + k];
    } else {
      const int n = ay.xsize[y];
      const float* t = tmp + ((ay.xmin[y] - rmin) * nx + x) * c + k;
      if (q) {
        const int* w = ay.wi + y * ay.taps;
        int32_t acc = 1 << (ay.precision - 1);
        for (int j = 0; j < n; ++j) acc += w[j] * static_cast<int32_t>(t[j * nx * c]);
        v = static_cast<float>(aa_finish(acc, ay.precision));
      } else {
        const float* w = ay.wf + y * ay.taps;
        float acc = 0.f;
        for (int j = 0; j < n; ++j) acc += w[j] * t[j * nx * c];
        v = acc;
      }
    }
    dst[k * plane + yo * nx + x] = v;
  }
  __syncthreads();
}

}  // namespace pyxfer::cuda
