// CPU helpers shared by the augment and preprocess kernels: per-axis antialiased weights and the
// separable resample of an HWC uint8 crop into a planar float buffer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "neon_ops.h"
#include "pyxfer/resample.h"

namespace pyxfer::cpu {

inline float clamp_level(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

struct Axis {
  bool identity = true;  // input size == output size: torch skips the pass
  int taps = 1;
  unsigned precision = 0;
  std::vector<int64_t> xmin;
  std::vector<int> xsize;
  std::vector<float> wf;    // normalised float weights (out * taps)
  std::vector<int16_t> wi;  // torch's int16 weights (out * taps)
};

inline void build_axis(int64_t in, int64_t out, Axis& a) {
  a.identity = in == out;
  if (a.identity) return;
  a.taps = aa_max_taps(in, out);
  const size_t n = static_cast<size_t>(out) * static_cast<size_t>(a.taps);
  std::vector<double> wd(n);
  a.xmin.resize(static_cast<size_t>(out));
  a.xsize.resize(static_cast<size_t>(out));
  a.wf.resize(n);
  a.wi.resize(n);
  double wmax = 0.0;
  for (int64_t i = 0; i < out; ++i) {
    const size_t o = static_cast<size_t>(i);
    wmax = std::max(wmax, aa_weights_at(i, in, out, &wd[o * static_cast<size_t>(a.taps)],
                                        &a.xmin[o], &a.xsize[o]));
  }
  a.precision = aa_precision(wmax);
  for (size_t k = 0; k < n; ++k) {
    a.wf[k] = static_cast<float>(wd[k]);
    a.wi[k] = aa_quantize(wd[k], a.precision);
  }
}

// Resample the crop (top, left, ch, cw) of an HWC uint8 image (row stride `src_w` pixels, `c`
// channels) to size (oh, ow) and write rows [y0, y0 + ny) x cols [x0, x0 + nx) of the result
// into planar dst (c, ny, nx); `flip` mirrors the written columns. Horizontal pass first, then
// vertical, each rounded to uint8 when `quantize` (torch's uint8 path), float otherwise.
// `vec`: on AArch64, the quantized RGB horizontal pass runs its taps in NEON (same sums) and the
// RGB planes are split by vld3q_f32 (the same values moved).
inline void resample_crop(const uint8_t* src, int64_t src_w, int64_t c, int64_t top, int64_t left,
                          int64_t ch, int64_t cw, const Axis& ax, const Axis& ay, int64_t y0,
                          int64_t ny, int64_t x0, int64_t nx, bool flip, bool quantize, bool vec,
                          float* dst, std::vector<float>& tmp,
                          std::vector<float>& acc) {
  (void)ch, (void)cw;  // the axes already encode the crop size
  // Input rows the vertical pass needs.
  int64_t rmin, rmax;
  if (ay.identity) {
    rmin = y0, rmax = y0 + ny;
  } else {
    rmin = ay.xmin[static_cast<size_t>(y0)];
    rmax = 0;
    for (int64_t y = y0; y < y0 + ny; ++y) {
      rmax = std::max<int64_t>(rmax, ay.xmin[static_cast<size_t>(y)] + ay.xsize[static_cast<size_t>(y)]);
    }
  }
  const int64_t nrows = rmax - rmin;
#if defined(__aarch64__) && defined(__ARM_NEON)
  // + 1: the NEON pixel stores write 4 floats, the last one into the next pixel's R (or here)
  tmp.resize(static_cast<size_t>(nrows * nx * c + 1));
#else
  tmp.resize(static_cast<size_t>(nrows * nx * c));
  (void)vec;
#endif
  // Horizontal pass: tmp (nrows, nx, c) interleaved.
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* in = src + ((top + rmin + r) * src_w + left) * c;
    float* t = tmp.data() + r * nx * c;
#if defined(__aarch64__) && defined(__ARM_NEON)
    const uint8_t* row_end = in + (src_w - left) * c;  // the image row's end: loads stay before
#endif
    for (int64_t xo = 0; xo < nx; ++xo) {
      const int64_t x = x0 + (flip ? nx - 1 - xo : xo);
      if (ax.identity) {
        for (int64_t k = 0; k < c; ++k) t[xo * c + k] = static_cast<float>(in[x * c + k]);
        continue;
      }
      const size_t wo = static_cast<size_t>(x) * static_cast<size_t>(ax.taps);
      const int64_t xmin = ax.xmin[static_cast<size_t>(x)];
      const int n = ax.xsize[static_cast<size_t>(x)];
      const uint8_t* p = in + xmin * c;
      if (quantize && c == 3) {  // the common case: three independent accumulators
        const int16_t* w = ax.wi.data() + wo;
#if defined(__aarch64__) && defined(__ARM_NEON)
        if (vec && p + 3 * (n - 1) + 8 <= row_end) {
          // each tap one widening multiply-accumulate of its (R, G, B, next) levels
          int32x4_t sum = vdupq_n_s32(1 << (ax.precision - 1));
          for (int j = 0; j < n; ++j) {
            const uint16x8_t v = vmovl_u8(vld1_u8(p + 3 * j));
            sum = vmlal_n_s16(sum, vreinterpret_s16_u16(vget_low_u16(v)), w[j]);
          }
          sum = vshlq_s32(sum, vdupq_n_s32(-static_cast<int32_t>(ax.precision)));
          sum = vminq_s32(vmaxq_s32(sum, vdupq_n_s32(0)), vdupq_n_s32(255));  // aa_finish
          vst1q_f32(t + xo * 3, vcvtq_f32_s32(sum));
          continue;
        }
#endif
        int32_t s0 = 1 << (ax.precision - 1), s1 = s0, s2 = s0;
        for (int j = 0; j < n; ++j) {
          const int32_t wj = w[j];
          s0 += wj * p[j * 3], s1 += wj * p[j * 3 + 1], s2 += wj * p[j * 3 + 2];
        }
        t[xo * 3] = static_cast<float>(aa_finish(s0, ax.precision));
        t[xo * 3 + 1] = static_cast<float>(aa_finish(s1, ax.precision));
        t[xo * 3 + 2] = static_cast<float>(aa_finish(s2, ax.precision));
      } else if (quantize) {
        const int16_t* w = ax.wi.data() + wo;
        for (int64_t k = 0; k < c; ++k) {
          int32_t sum = 1 << (ax.precision - 1);
          for (int j = 0; j < n; ++j) sum += static_cast<int32_t>(w[j]) * p[j * c + k];
          t[xo * c + k] = static_cast<float>(aa_finish(sum, ax.precision));
        }
      } else {
        const float* w = ax.wf.data() + wo;
        for (int64_t k = 0; k < c; ++k) {
          float sum = 0.f;
          for (int j = 0; j < n; ++j) sum += w[j] * static_cast<float>(p[j * c + k]);
          t[xo * c + k] = sum;
        }
      }
    }
  }
  // Vertical pass: planar dst.
  const int64_t plane = ny * nx;
  for (int64_t yo = 0; yo < ny; ++yo) {
    const int64_t y = y0 + yo;
    if (ay.identity) {
      const float* t = tmp.data() + (y - rmin) * nx * c;
      for (int64_t x = 0; x < nx; ++x) {
        for (int64_t k = 0; k < c; ++k) dst[k * plane + yo * nx + x] = t[x * c + k];
      }
      continue;
    }
    const size_t wo = static_cast<size_t>(y) * static_cast<size_t>(ay.taps);
    const int64_t ymin = ay.xmin[static_cast<size_t>(y)] - rmin;
    const int n = ay.xsize[static_cast<size_t>(y)];
    const int64_t len = nx * c;
    acc.resize(static_cast<size_t>(len));
    float* a = acc.data();
    if (quantize) {
      const int16_t* w = ay.wi.data() + wo;
      thread_local std::vector<int32_t> iacc;
      iacc.resize(static_cast<size_t>(len));
      int32_t* ia = iacc.data();
      const int32_t bias = 1 << (ay.precision - 1);
      for (int64_t i = 0; i < len; ++i) ia[i] = bias;
      for (int j = 0; j < n; ++j) {
        const int32_t wj = w[j];
        const float* t = tmp.data() + (ymin + j) * len;
        for (int64_t i = 0; i < len; ++i) ia[i] += wj * static_cast<int32_t>(t[i]);
      }
      for (int64_t i = 0; i < len; ++i) a[i] = static_cast<float>(aa_finish(ia[i], ay.precision));
    } else {
      const float* w = ay.wf.data() + wo;
      for (int64_t i = 0; i < len; ++i) a[i] = 0.f;
      for (int j = 0; j < n; ++j) {
        const float wj = w[j];
        const float* t = tmp.data() + (ymin + j) * len;
        for (int64_t i = 0; i < len; ++i) a[i] += wj * t[i];
      }
    }
    int64_t x = 0;
#if defined(__aarch64__) && defined(__ARM_NEON)
    if (vec && c == 3) {  // the planes split four pixels per vld3q_f32
      float* d = dst + yo * nx;
      for (; x + 4 <= nx; x += 4) {
        const float32x4x3_t v = vld3q_f32(a + 3 * x);
        vst1q_f32(d + x, v.val[0]), vst1q_f32(d + plane + x, v.val[1]);
        vst1q_f32(d + 2 * plane + x, v.val[2]);
      }
    }
#endif
    for (; x < nx; ++x) {
      for (int64_t k = 0; k < c; ++k) dst[k * plane + yo * nx + x] = a[x * c + k];
    }
  }
}

}  // namespace pyxfer::cpu
