// Quantized (uint8-level) per-view augmentation kernel, compiled once per instruction set.
//
// Included by augment.cpp (baseline target), by augment_avx2.cpp / augment_avx512.cpp, which
// set `#pragma GCC target` first, and by augment_neon.cpp (AArch64); each includer defines
// PYXFER_AUG_NS, so every copy lives in its own namespace and nothing with external linkage is
// shared between differently compiled copies (neon_ops.h's inline helpers are shared only by
// code compiled for AArch64's base target). Only raw pointers are used here (no std
// templates), for the same reason.
//
// With quantize=True every intermediate image holds uint8 levels, so the view is kept as planar
// uint8 (c, h, w) between ops (a quarter of the float traffic) and each op computes exactly the
// float32 expressions of augment.h on those levels: the results are bit-identical to the float
// buffer pipeline (and to the CUDA kernel), whatever the instruction set.
//
// The stages live in one header each, in pipeline order, each holding its baseline, AVX2
// (PYXFER_AUG_AVX2), AVX-512 (PYXFER_AUG_AVX512, which comes with PYXFER_AUG_AVX2) and NEON
// (PYXFER_AUG_NEON) code:
//   augment_kernel_resample.h  crop, antialiased resize, flip
//   augment_kernel_colour.h    brightness, contrast, saturation, hue, grayscale, solarize
//   augment_kernel_randaugment.h  RandAugment's ops and cutout (scalar)
//   augment_kernel_blur.h      gaussian blur
//   augment_kernel_output.h    normalisation into the float32 / float16 output
// This file holds the helpers they share and apply_view_quantized, which runs them on one view.
#ifndef PYXFER_AUG_NS
#error "define PYXFER_AUG_NS before including augment_kernel.h"
#endif

// -DPYXFER_AUG_PROFILE keeps the stages out of line, for per-stage profiles.
#if !defined(PYXFER_AUG_STAGE)
#if defined(PYXFER_AUG_PROFILE)
#define PYXFER_AUG_STAGE __attribute__((noinline))
#else
#define PYXFER_AUG_STAGE
#endif
#endif

#if defined(PYXFER_AUG_NEON)
#include "neon_ops.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {

namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

inline uint8_t to_u8(float v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

#if defined(PYXFER_AUG_NEON)
using neon_ops::bytes16;
using neon_ops::half8;
using neon_ops::levels16;
using neon_ops::reverse16;
#endif

#if defined(PYXFER_AUG_AVX512)
// Masked 16-lane loads of the colour, blur and output stages.
// 16 levels as float, lanes past `m` zero.
inline __m512 level16(const uint8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
inline __mmask16 tail16(int64_t left) {
  return static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
}
#endif

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS

#include "augment_kernel_resample.h"
#include "augment_kernel_colour.h"
#include "augment_kernel_randaugment.h"
#include "augment_kernel_blur.h"
#include "augment_kernel_output.h"

namespace pyxfer::cpu::PYXFER_AUG_NS {

// One view, quantize=True. `s` points at scratch laid out by QuantScratch.
void apply_view_quantized(const ImageRef& im, const float* prm, const ApplyParams& p, int64_t row,
                          void* out, const QuantScratch& s) {
  const int64_t c = p.c, oh = p.out_h, ow = p.out_w, n = oh * ow;
  const auto top = static_cast<int64_t>(prm[kTop]), left = static_cast<int64_t>(prm[kLeft]);
  uint8_t* img = s.img;
  const bool flip = prm[kFlip] != 0.f;
#if defined(PYXFER_AUG_AVX2)
  if (c == 3 && !s.ax.identity && s.ax.wv != nullptr) {
#if defined(PYXFER_AUG_AVX512)
    resample_rows_rgb_avx512(im.data, im.data + im.h * im.w * 3, im.w, top, left, s.ax, s.r0,
                             s.r1, ow, flip, s.tmp8, s.packed);
#else
    resample_rows_rgb_2rows(im.data, im.data + im.h * im.w * 3, im.w, top, left, s.ax, s.r0,
                            s.r1, ow, flip, s.tmp8, s.packed);
#endif
  } else {
    resample_rows(im.data, im.w, c, top, left, s.ax, s.r0, s.r1, ow, flip, s.tmp8);
  }
#elif defined(PYXFER_AUG_NEON)
  if (c == 3 && !s.ax.identity) {
    resample_rows_rgb_neon(im.data, im.data + im.h * im.w * 3, im.w, top, left, s.ax, s.r0, s.r1,
                           ow, flip, s.tmp8, s.packed);
  } else {
    resample_rows(im.data, im.w, c, top, left, s.ax, s.r0, s.r1, ow, flip, s.tmp8);
  }
#else
  resample_rows(im.data, im.w, c, top, left, s.ax, s.r0, s.r1, ow, flip, s.tmp8);
#endif
#if defined(PYXFER_AUG_AVX2)
  if (!s.ay.identity) {
    resample_cols_avx2(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
  } else {
    resample_cols(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
  }
#elif defined(PYXFER_AUG_NEON)
  if (!s.ay.identity) {
    resample_cols_neon(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, img);
  } else {
    resample_cols(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
  }
#else
  resample_cols(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
#endif
  for (int slot = 0; slot < kRaSlots; ++slot) {
    const int op = static_cast<int>(prm[kRaOp0 + 2 * slot]);
    if (op != kRaIdentity) {
      randaugment_op(img, c, oh, ow, op, prm[kRaMag0 + 2 * slot],
                     static_cast<uint8_t>(prm[kRaFill]), s.img2);
    }
  }
  if (prm[kJitter] != 0.f) {
    for (int pos = 0; pos < 4; ++pos) {
      switch (static_cast<int>(prm[kOrder0 + pos])) {
        case 0:
          if (prm[kBrightness] != 1.f) brightness_u8(img, c * n, prm[kBrightness]);
          break;
        case 1:
          if (prm[kContrast] != 1.f) contrast_u8(img, c, n, prm[kContrast]);
          break;
        case 2:
          if (c == 3 && prm[kSaturation] != 1.f) saturation_u8(img, n, prm[kSaturation]);
          break;
        default:
          if (c == 3 && prm[kHue] != 0.f) hue_u8(img, img + n, img + 2 * n, n, prm[kHue]);
          break;
      }
    }
  }
  if (prm[kGray] != 0.f && c == 3) gray_u8(img, n);
  if (prm[kBlur] != 0.f) {
    blur_u8(img, c, oh, ow, s.blur_k, s.blur_w, s.blur_xi, s.blur_yi, s.frow, s.ftmp, s.facc,
            s.blur_rows);
  }
  if (prm[kSolarize] != 0.f) solarize_u8(img, c * n, prm[kSolarizeThreshold]);
  if (prm[kCutout] != 0.f) cutout_u8(img, c, oh, ow, prm);
  if (p.dtype == OutDType::Float32) {
    store_f32(img, p, row, static_cast<float*>(out));
  } else {
    store_f16(img, p, row, static_cast<uint16_t*>(out));
  }
}

}  // namespace pyxfer::cpu::PYXFER_AUG_NS
