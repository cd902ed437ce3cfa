// CPU-only pieces of the augmentation kernel shared by its per-instruction-set copies
// (augment_kernel.h compiled in augment.cpp, augment_avx2.cpp, augment_avx512.cpp,
// augment_neon.cpp).
#pragma once

#include <cstdint>

#include "pyxfer/augment.h"
#include "pyxfer/half.h"
#include "pyxfer/resample.h"

// x86-64 builds with GCC compile the kernel for AVX2 and AVX-512 too and pick at run time (no FMA
// in those targets: products and sums round exactly as in the baseline and CUDA code).
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define PYXFER_X86_DISPATCH 1
#include <immintrin.h>
#endif

// AArch64 builds compile a NEON copy of the kernel too (NEON is part of the base instruction set,
// so it is always chosen unless PYXFER_SIMD asks for the baseline copy).
#if defined(__aarch64__) && defined(__ARM_NEON)
#define PYXFER_ARM_NEON 1
#include <arm_neon.h>
#endif

namespace pyxfer::cpu {

// One resampling axis in torch's uint8 fixed point, every output using `taps` weights (zero
// padded) starting at xmin, which is clamped so that xmin + taps never passes the input.
struct ResampleAxis {
  bool identity = true;
  int taps = 1;
  unsigned precision = 0;
  int32_t bias = 0;  // 1 << (precision - 1)
  const int32_t* xmin = nullptr;
  const int16_t* w = nullptr;  // (out, taps)
  // RGB only: the same weights as (out, groups, 2 lanes, 8) int16, lane l of group g holding
  // taps 4g + 2l and 4g + 2l + 1 as (w0, w1, w0, w1, w0, w1, 0, 0) for pmaddwd.
  int groups = 0;
  const int16_t* wv = nullptr;
};

// Scratch of one quantized view (pointers into a per-thread arena).
struct QuantScratch {
  ResampleAxis ax, ay;
  int64_t r0 = 0, r1 = 0;  // crop rows the vertical pass reads
  uint8_t* tmp8 = nullptr;  // (c, r1 - r0, out_w)
  int32_t* iacc = nullptr;  // out_w
  uint32_t* packed = nullptr;  // out_w packed RGB pixels
  uint8_t* img = nullptr;   // (c, out_h, out_w)
  uint8_t* img2 = nullptr;  // (c, out_h, out_w): RandAugment's copy of the view
  int blur_k = 0;
  const float* blur_w = nullptr;
  const int32_t* blur_xi = nullptr;  // out_w + k - 1 reflected column indices
  const int32_t* blur_yi = nullptr;  // out_h + k - 1 reflected row indices
  float* frow = nullptr;  // 2 (out_w + k - 1): two padded rows
  float* ftmp = nullptr;  // out_h * out_w, on a cache line
  float* facc = nullptr;  // out_w
  const float** blur_rows = nullptr;  // k + 1 row pointers
};

#define PYXFER_DECLARE_AUG(ns)                                                            \
  namespace ns {                                                                          \
  void apply_view_quantized(const ImageRef& im, const float* prm, const ApplyParams& p,   \
                            int64_t row, void* out, const QuantScratch& s);               \
  }
PYXFER_DECLARE_AUG(baseline)
#if defined(PYXFER_X86_DISPATCH)
PYXFER_DECLARE_AUG(avx2)
PYXFER_DECLARE_AUG(avx512)
#endif
#if defined(PYXFER_ARM_NEON)
PYXFER_DECLARE_AUG(neon)
#endif
#undef PYXFER_DECLARE_AUG

}  // namespace pyxfer::cpu
