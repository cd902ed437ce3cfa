// Output stage of the quantized augmentation kernel: levels -> (level / 255 - mean) / std into
// the float32 or float16 output row, NCHW or NHWC; the AVX2 and AVX-512 copies stream large
// float32 views past the cache, and they and the NEON copy convert float16 planes in vectors.
//
// Included only by augment_kernel.h (see there), once per instruction-set copy of the kernel:
// augment.cpp (baseline), augment_avx2.cpp (PYXFER_AUG_AVX2), augment_avx512.cpp
// (PYXFER_AUG_AVX2 and PYXFER_AUG_AVX512) and augment_neon.cpp (PYXFER_AUG_NEON); every function
// lives in that copy's namespace.
#ifndef PYXFER_AUG_NS
#error "include augment_kernel.h, not augment_kernel_output.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

#if defined(PYXFER_AUG_AVX2)
// Views of at least 256 KB (224 px RGB is 588 KB) are stored with non-temporal stores, which
// skip reading the destination lines first; smaller ones stay in the cache for the consumer.
constexpr int64_t kStreamFloats = int64_t{1} << 16;
#endif

#if defined(PYXFER_AUG_AVX512)

inline void store_plane_stream(const uint8_t* src, int64_t n, float scale, float shift,
                               float* dst) {
  const __m512 vs = _mm512_set1_ps(scale), vh = _mm512_set1_ps(shift);
  auto value = [&](int64_t at, __mmask16 m) {  // level * scale + shift, as the loop below
    return _mm512_add_ps(_mm512_mul_ps(level16(src + at, m), vs), vh);
  };
  int64_t x = 0;
  const auto addr = reinterpret_cast<uintptr_t>(dst);
  if (addr % 4 == 0 && addr % 64 != 0) {  // masked head up to the first 64-byte boundary
    const int64_t head = static_cast<int64_t>((64 - addr % 64) / 4);
    const __mmask16 m = tail16(head < n ? head : n);
    _mm512_mask_storeu_ps(dst, m, value(0, m));
    x = head;
  }
  if (reinterpret_cast<uintptr_t>(dst + x) % 64 == 0) {
    for (; x + 16 <= n; x += 16) _mm512_stream_ps(dst + x, value(x, 0xFFFF));
  }
  for (; x < n; x += 16) {
    const __mmask16 m = tail16(n - x);
    _mm512_mask_storeu_ps(dst + x, m, value(x, m));
  }
}
#elif defined(PYXFER_AUG_AVX2)
inline void store_plane_stream(const uint8_t* src, int64_t n, float scale, float shift,
                               float* dst) {
  const __m256 vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
  int64_t x = 0;
  const auto addr = reinterpret_cast<uintptr_t>(dst);
  if (addr % 4 == 0) {  // scalar head up to the first 32-byte boundary, then 16 per step
    for (; x < n && (addr + 4 * static_cast<uintptr_t>(x)) % 32 != 0; ++x) {
      dst[x] = static_cast<float>(src[x]) * scale + shift;
    }
    for (; x + 16 <= n; x += 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + x));
      const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
      const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
      _mm256_stream_ps(dst + x, _mm256_add_ps(_mm256_mul_ps(lo, vs), vh));
      _mm256_stream_ps(dst + x + 8, _mm256_add_ps(_mm256_mul_ps(hi, vs), vh));
    }
  }
  for (; x < n; ++x) dst[x] = static_cast<float>(src[x]) * scale + shift;
}
#endif

PYXFER_AUG_STAGE
void store_f32(const uint8_t* img, const ApplyParams& p, int64_t row, float* out) {
  const int64_t n = p.out_h * p.out_w, c = p.c;
  for (int64_t ch = 0; ch < c; ++ch) {
    const float scale = p.inv_std[ch] / 255.0f;
    const float shift = -p.mean[ch] * p.inv_std[ch];
    const uint8_t* src = img + ch * n;
    if (p.layout == Layout::NCHW) {
      float* dst = out + (row * c + ch) * n;
#if defined(PYXFER_AUG_AVX2)
      if (n * c >= kStreamFloats) {
        store_plane_stream(src, n, scale, shift, dst);
        continue;
      }
#endif
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * scale + shift;
    } else {
      float* dst = out + row * n * c + ch;
      for (int64_t i = 0; i < n; ++i) dst[i * c] = static_cast<float>(src[i]) * scale + shift;
    }
  }
#if defined(PYXFER_AUG_AVX2)
  if (p.layout == Layout::NCHW && n * c >= kStreamFloats) _mm_sfence();
#endif
}

#if defined(PYXFER_AUG_AVX2)
constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// Whether F16C's conversion of level * scale + shift gives the table's half bits for all 256
// levels (it rounds to nearest even as float_to_half_bits_branchless does): then the levels are
// converted 16 per step, otherwise they go through the table.
inline bool f16c_matches(const uint16_t* lut, float scale, float shift) {
  const __m256 vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
  __m128i diff = _mm_setzero_si128();
  for (int v = 0; v < 256; v += 8) {
    const __m256 x = _mm256_cvtepi32_ps(_mm256_add_epi32(
        _mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    const __m128i h = _mm256_cvtps_ph(_mm256_add_ps(_mm256_mul_ps(x, vs), vh), kNearest);
    diff = _mm_or_si128(
        diff, _mm_xor_si128(h, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + v))));
  }
  return _mm_testz_si128(diff, diff) != 0;
}
#endif

#if defined(PYXFER_AUG_NEON)
// level * scale + shift for 16 levels (product and sum rounded separately).
inline void affine16(const uint8_t* src, float scale, float shift, float32x4_t out[4]) {
  levels16(src, out);
  for (int k = 0; k < 4; ++k) out[k] = neon_ops::affine4(out[k], scale, shift);
}
// Whether the conversion gives the table's half bits for all 256 levels: then the levels are
// converted 16 per step, otherwise they go through the table.
inline bool fcvt_matches(const uint16_t* lut, float scale, float shift) {
  uint16x8_t diff = vdupq_n_u16(0);
  for (int v = 0; v < 256; v += 16) {
    uint8_t levels[16];
    for (int k = 0; k < 16; ++k) levels[k] = static_cast<uint8_t>(v + k);
    float32x4_t x[4];
    affine16(levels, scale, shift, x);
    diff = vorrq_u16(diff, veorq_u16(half8(x[0], x[1]), vld1q_u16(lut + v)));
    diff = vorrq_u16(diff, veorq_u16(half8(x[2], x[3]), vld1q_u16(lut + v + 8)));
  }
  return vmaxvq_u16(diff) == 0;
}
#endif

PYXFER_AUG_STAGE
void store_f16(const uint8_t* img, const ApplyParams& p, int64_t row, uint16_t* out) {
  const int64_t n = p.out_h * p.out_w, c = p.c;
  for (int64_t ch = 0; ch < c; ++ch) {
    // 256 levels: a table of the exact half bits of level * scale + shift.
    const float scale = p.inv_std[ch] / 255.0f;
    const float shift = -p.mean[ch] * p.inv_std[ch];
    uint16_t lut[256];
    for (int v = 0; v < 256; ++v) {
      lut[v] = float_to_half_bits_branchless(static_cast<float>(v) * scale + shift);
    }
    const uint8_t* src = img + ch * n;
    if (p.layout == Layout::NCHW) {
      uint16_t* dst = out + (row * c + ch) * n;
      int64_t i = 0;
#if defined(PYXFER_AUG_AVX2)
      if (f16c_matches(lut, scale, shift)) {
        const __m256 vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
        for (; i + 16 <= n; i += 16) {
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
          const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
          const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
          const __m128i hlo = _mm256_cvtps_ph(_mm256_add_ps(_mm256_mul_ps(lo, vs), vh), kNearest);
          const __m128i hhi = _mm256_cvtps_ph(_mm256_add_ps(_mm256_mul_ps(hi, vs), vh), kNearest);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_set_m128i(hhi, hlo));
        }
      }
#elif defined(PYXFER_AUG_NEON)
      if (fcvt_matches(lut, scale, shift)) {
        for (; i + 16 <= n; i += 16) {
          float32x4_t x[4];
          affine16(src + i, scale, shift, x);
          vst1q_u16(dst + i, half8(x[0], x[1])), vst1q_u16(dst + i + 8, half8(x[2], x[3]));
        }
      }
#endif
      for (; i < n; ++i) dst[i] = lut[src[i]];
    } else {
      uint16_t* dst = out + row * n * c + ch;
      for (int64_t i = 0; i < n; ++i) dst[i * c] = lut[src[i]];
    }
  }
}

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
