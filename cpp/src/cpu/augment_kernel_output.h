// Output stage of the quantized augmentation kernel: levels -> (level / 255 - mean) / std into
// the float32 or float16 output row, NCHW or NHWC; the AVX-512 copy streams large float32 views
// past the cache.
//
// Included only by augment_kernel.h (see there), once per instruction-set copy of the kernel:
// augment.cpp (baseline), augment_avx2.cpp (PYXFER_AUG_AVX2) and augment_avx512.cpp
// (PYXFER_AUG_AVX2 and PYXFER_AUG_AVX512); every function lives in that copy's namespace.
#ifndef PYXFER_AUG_NS
#error "include augment_kernel.h, not augment_kernel_output.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

#if defined(PYXFER_AUG_AVX512)
// Views of at least 256 KB (224 px RGB is 588 KB) are stored with non-temporal stores, which
// skip reading the destination lines first; smaller ones stay in the cache for the consumer.
constexpr int64_t kStreamFloats = int64_t{1} << 16;

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
#if defined(PYXFER_AUG_AVX512)
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
#if defined(PYXFER_AUG_AVX512)
  if (p.layout == Layout::NCHW && n * c >= kStreamFloats) _mm_sfence();
#endif
}

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
      for (int64_t i = 0; i < n; ++i) dst[i] = lut[src[i]];
    } else {
      uint16_t* dst = out + row * n * c + ch;
      for (int64_t i = 0; i < n; ++i) dst[i * c] = lut[src[i]];
    }
  }
}

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
