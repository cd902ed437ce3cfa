// Resample stage of the quantized augmentation kernel: crop, antialiased resize (torch's uint8
// fixed point) and horizontal flip, as a horizontal pass into planar rows, then a vertical pass.
// Scalar loops, their AVX2 forms (two crop rows at once, 32 columns per vertical step),
// AVX-512 forms (four crop rows at once, 32 columns per vertical step in 512-bit registers) and
// NEON forms (per-pixel tap vectors split by vld3q_u8, 16 columns per vertical step).
//
// Included only by augment_kernel.h (see there), once per instruction-set copy of the kernel:
// augment.cpp (baseline), augment_avx2.cpp (PYXFER_AUG_AVX2), augment_avx512.cpp
// (PYXFER_AUG_AVX2 and PYXFER_AUG_AVX512) and augment_neon.cpp (PYXFER_AUG_NEON); every function
// lives in that copy's namespace.
#ifndef PYXFER_AUG_NS
#error "include augment_kernel.h, not augment_kernel_resample.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

// Horizontal pass of the crop: rows [r0, r1) of the crop (HWC uint8, `c` channels) into planar
// uint8 tmp (c, r1 - r0, ow); the output column order is mirrored when `flip`.
PYXFER_AUG_STAGE
void resample_rows(const uint8_t* src, int64_t src_w, int64_t c, int64_t top, int64_t left,
                   const ResampleAxis& ax, int64_t r0, int64_t r1, int64_t ow, bool flip,
                   uint8_t* tmp) {
  const int64_t nrows = r1 - r0, plane = nrows * ow;
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* in = src + ((top + r0 + r) * src_w + left) * c;
    uint8_t* t = tmp + r * ow;
    if (ax.identity) {
      for (int64_t x = 0; x < ow; ++x) {
        const int64_t xo = flip ? ow - 1 - x : x;
        for (int64_t k = 0; k < c; ++k) t[k * plane + xo] = in[x * c + k];
      }
      continue;
    }
    const int taps = ax.taps;
    const int32_t bias = ax.bias;
    const unsigned prec = ax.precision;
    if (c == 3) {
      for (int64_t x = 0; x < ow; ++x) {
        const int16_t* w = ax.w + x * taps;
        const uint8_t* p = in + static_cast<int64_t>(ax.xmin[x]) * 3;
        int32_t s0 = bias, s1 = bias, s2 = bias;
        for (int j = 0; j < taps; ++j) {
          const int32_t wj = w[j];
          s0 += wj * p[j * 3], s1 += wj * p[j * 3 + 1], s2 += wj * p[j * 3 + 2];
        }
        const int64_t xo = flip ? ow - 1 - x : x;
        t[xo] = static_cast<uint8_t>(aa_finish(s0, prec));
        t[plane + xo] = static_cast<uint8_t>(aa_finish(s1, prec));
        t[2 * plane + xo] = static_cast<uint8_t>(aa_finish(s2, prec));
      }
    } else {
      for (int64_t x = 0; x < ow; ++x) {
        const int16_t* w = ax.w + x * taps;
        const uint8_t* p = in + static_cast<int64_t>(ax.xmin[x]) * c;
        const int64_t xo = flip ? ow - 1 - x : x;
        for (int64_t k = 0; k < c; ++k) {
          int32_t s = bias;
          for (int j = 0; j < taps; ++j) s += static_cast<int32_t>(w[j]) * p[j * c + k];
          t[k * plane + xo] = static_cast<uint8_t>(aa_finish(s, prec));
        }
      }
    }
  }
}

#if defined(PYXFER_AUG_AVX2)
// Prefetch of the bytes that the next group of `rows` crop rows (`in + offset` at the first,
// `stride` apart) reads for a block of 16 output pixels: at most 16 * 2 * 3 + 12 bytes per row
// when every pixel has at most four taps, so two lines from the block's first tap (the next
// block starts within them). The input image is usually outside the cache, and the row-by-row
// walk over a crop (a short run per row, then a jump of a row) keeps the hardware prefetchers
// from running ahead of it; this roughly halved the horizontal pass's time at 224 px. The
// addresses are formed as integers: past the image's last rows they point outside it, which a
// prefetch may do (it never faults) but pointer arithmetic may not.
inline void prefetch_block(const uint8_t* in, int64_t offset, int64_t stride, int rows) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(in) + static_cast<uintptr_t>(offset);
  for (int k = 0; k < rows; ++k) {
    const uintptr_t q = base + static_cast<uintptr_t>(k * stride);
    _mm_prefetch(reinterpret_cast<const char*>(q), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(q + 64), _MM_HINT_T0);
  }
}

// Scalar taps of one RGB output pixel, packed as R | G << 8 | B << 16.
inline uint32_t rgb_pixel_scalar(const uint8_t* p, const int16_t* w, int taps, int32_t bias,
                                 unsigned prec) {
  int32_t s0 = bias, s1 = bias, s2 = bias;
  for (int j = 0; j < taps; ++j) {
    const int32_t wj = w[j];
    s0 += wj * p[j * 3], s1 += wj * p[j * 3 + 1], s2 += wj * p[j * 3 + 2];
  }
  return static_cast<uint32_t>(aa_finish(s0, prec)) |
         static_cast<uint32_t>(aa_finish(s1, prec)) << 8 |
         static_cast<uint32_t>(aa_finish(s2, prec)) << 16;
}

// Columns [x0, ow) of `rows` consecutive crop rows (`in` at the first, rows `stride` bytes
// apart) by the scalar taps, into planar tmp rows starting at `t` (planes `plane` apart);
// the tails that the vector loops leave.
inline void rgb_columns_scalar(const uint8_t* in, int64_t stride, int rows, const ResampleAxis& ax,
                               int64_t x0, int64_t ow, bool flip, uint8_t* t, int64_t plane) {
  for (int k = 0; k < rows; ++k) {
    const uint8_t* row = in + k * stride;
    uint8_t* tk = t + k * ow;
    for (int64_t x = x0; x < ow; ++x) {
      const uint32_t v = rgb_pixel_scalar(row + static_cast<int64_t>(ax.xmin[x]) * 3,
                                          ax.w + x * ax.taps, ax.taps, ax.bias, ax.precision);
      const int64_t xo = flip ? ow - 1 - x : x;
      tk[xo] = static_cast<uint8_t>(v), tk[plane + xo] = static_cast<uint8_t>(v >> 8);
      tk[2 * plane + xo] = static_cast<uint8_t>(v >> 16);
    }
  }
}

// The horizontal pass for RGB with AVX2: pmaddwd on (tap pair) x (R, G, B, 0) int16 lanes, four
// taps per 256-bit step (two per 128-bit lane), or two output pixels per step (one per lane)
// when the axis has at most four taps. Packed pixels go to a row buffer, then to the planes.
// Integer sums: the same result as the scalar loop. Rows whose 16-byte loads could pass the end
// of the image take the scalar loop. Computes rows [first, r1 - r0) of the crop rows [r0, r1).
PYXFER_AUG_STAGE
void resample_rows_rgb_avx2(const uint8_t* src, const uint8_t* src_end, int64_t src_w,
                            int64_t top, int64_t left, const ResampleAxis& ax, int64_t r0,
                            int64_t r1, int64_t first, int64_t ow, bool flip, uint8_t* tmp,
                            uint32_t* packed) {
  const int64_t nrows = r1 - r0, plane = nrows * ow;
  const int groups = ax.groups, taps = ax.taps;
  const __m256i lo_hi = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1,
                                         -1, 6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1,
                                         -1, -1);
  const __m256i pair01 = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1,
                                          -1, 0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1,
                                          -1, -1);
  const __m256i pair23 = _mm256_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1,
                                          -1, 6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1,
                                          -1, -1);
  const __m256i bias8 = _mm256_set1_epi32(ax.bias);
  const __m128i bias = _mm_set1_epi32(ax.bias);
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(ax.precision));
  const int64_t reach = 12 * static_cast<int64_t>(groups - 1) + 16;
  const int32_t* xmin = ax.xmin;
  for (int64_t r = first; r < nrows; ++r) {
    const uint8_t* in = src + ((top + r0 + r) * src_w + left) * 3;
    if (src_end - (in + static_cast<int64_t>(xmin[ow - 1]) * 3) < reach) {
      for (int64_t x = 0; x < ow; ++x) {
        packed[x] = rgb_pixel_scalar(in + static_cast<int64_t>(xmin[x]) * 3, ax.w + x * taps,
                                     taps, ax.bias, ax.precision);
      }
    } else if (groups == 1) {
      int64_t x = 0;
      for (; x + 2 <= ow; x += 2) {
        const __m256i raw = _mm256_loadu2_m128i(
            reinterpret_cast<const __m128i*>(in + static_cast<int64_t>(xmin[x + 1]) * 3),
            reinterpret_cast<const __m128i*>(in + static_cast<int64_t>(xmin[x]) * 3));
        const __m256i* w = reinterpret_cast<const __m256i*>(ax.wv + x * 16);
        // lanes: pixel x, pixel x + 1; weights of (x: taps 0-1 | 2-3), (x + 1: taps 0-1 | 2-3)
        const __m256i w01 = _mm256_permute2x128_si256(_mm256_loadu_si256(w),
                                                      _mm256_loadu_si256(w + 1), 0x20);
        const __m256i w23 = _mm256_permute2x128_si256(_mm256_loadu_si256(w),
                                                      _mm256_loadu_si256(w + 1), 0x31);
        __m256i acc = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair01), w01),
            _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair23), w23));
        acc = _mm256_sra_epi32(_mm256_add_epi32(acc, bias8), shift);
        acc = _mm256_packus_epi16(_mm256_packs_epi32(acc, acc), acc);
        packed[x] = static_cast<uint32_t>(_mm256_cvtsi256_si32(acc));
        packed[x + 1] = static_cast<uint32_t>(_mm256_extract_epi32(acc, 4));
      }
      for (; x < ow; ++x) {
        packed[x] = rgb_pixel_scalar(in + static_cast<int64_t>(xmin[x]) * 3, ax.w + x * taps,
                                     taps, ax.bias, ax.precision);
      }
    } else {
      for (int64_t x = 0; x < ow; ++x) {
        const uint8_t* p = in + static_cast<int64_t>(xmin[x]) * 3;
        const int16_t* w = ax.wv + x * groups * 16;
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < groups; ++g) {
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 12 * g));
          const __m256i v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(raw), lo_hi);
          const __m256i wg = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 * g));
          acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, wg));
        }
        __m128i sum =
            _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        sum = _mm_sra_epi32(_mm_add_epi32(sum, bias), shift);
        sum = _mm_packus_epi16(_mm_packs_epi32(sum, sum), sum);
        packed[x] = static_cast<uint32_t>(_mm_cvtsi128_si32(sum));
      }
    }
    uint8_t* t0 = tmp + r * ow;
    uint8_t* t1 = t0 + plane;
    uint8_t* t2 = t1 + plane;
    if (flip) {
      for (int64_t x = 0; x < ow; ++x) {
        const uint32_t v = packed[ow - 1 - x];
        t0[x] = static_cast<uint8_t>(v), t1[x] = static_cast<uint8_t>(v >> 8);
        t2[x] = static_cast<uint8_t>(v >> 16);
      }
    } else {
      for (int64_t x = 0; x < ow; ++x) {
        const uint32_t v = packed[x];
        t0[x] = static_cast<uint8_t>(v), t1[x] = static_cast<uint8_t>(v >> 8);
        t2[x] = static_cast<uint8_t>(v >> 16);
      }
    }
  }
}
#endif

#if defined(PYXFER_AUG_AVX512)
template <int k>
inline void store_lane(uint8_t* dst, __m512i v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_extracti32x4_epi32(v, k));
}

// The horizontal pass for RGB with AVX-512 when every output pixel has at most four taps: four
// crop rows at once (one per 128-bit lane, the pixel's weights broadcast to all four), sixteen
// output pixels per step, transposed in registers into sixteen planar bytes per row and plane.
// Integer sums as in resample_rows_rgb_avx2; the rows it cannot take (a last block whose loads
// could pass the end of the image, fewer than four left) go to that function.
PYXFER_AUG_STAGE
void resample_rows_rgb_avx512(const uint8_t* src, const uint8_t* src_end, int64_t src_w,
                              int64_t top, int64_t left, const ResampleAxis& ax, int64_t r0,
                              int64_t r1, int64_t ow, bool flip, uint8_t* tmp, uint32_t* packed) {
  const int64_t nrows = r1 - r0, plane = nrows * ow, stride = src_w * 3;
  const int64_t xb = ow - ow % 16;
  int64_t r = 0;
  if (ax.groups == 1 && xb > 0) {
    const __m512i pair01 = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1));
    const __m512i pair23 = _mm512_broadcast_i32x4(
        _mm_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1));
    // R0 G0 B0 0 R1 G1 B1 0 ... (four pixels) -> R0..R3 G0..G3 B0..B3 0 0 0 0
    const __m512i planar = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __m512i reverse = _mm512_broadcast_i32x4(
        _mm_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    const __m512i bias = _mm512_set1_epi32(ax.bias);
    const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(ax.precision));
    const int32_t* xmin = ax.xmin;
    const bool two_taps = ax.taps <= 2;
    for (; r + 4 <= nrows; r += 4) {
      const uint8_t* in = src + ((top + r0 + r) * src_w + left) * 3;
      if (src_end - (in + 3 * stride + static_cast<int64_t>(xmin[ow - 1]) * 3) < 16) break;
      for (int64_t x = 0; x < xb; x += 16) {
        prefetch_block(in, 4 * stride + static_cast<int64_t>(xmin[x]) * 3, stride, 4);
        __m512i q[4];
        for (int k = 0; k < 4; ++k) {
          __m512i acc[4];
          for (int i = 0; i < 4; ++i) {
            const int64_t xx = x + 4 * k + i;
            const uint8_t* p = in + static_cast<int64_t>(xmin[xx]) * 3;
            __m512i raw =
                _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
            raw = _mm512_inserti32x4(
                raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
            raw = _mm512_inserti32x4(
                raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * stride)), 2);
            raw = _mm512_inserti32x4(
                raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * stride)), 3);
            const __m128i* w = reinterpret_cast<const __m128i*>(ax.wv + xx * 16);
            const __m512i w01 = _mm512_broadcast_i32x4(_mm_loadu_si128(w));
            __m512i sum = _mm512_madd_epi16(_mm512_shuffle_epi8(raw, pair01), w01);
            if (!two_taps) {  // taps 2 and 3 (their weights are 0 on a two-tap axis)
              const __m512i w23 = _mm512_broadcast_i32x4(_mm_loadu_si128(w + 1));
              sum = _mm512_add_epi32(sum,
                                     _mm512_madd_epi16(_mm512_shuffle_epi8(raw, pair23), w23));
            }
            acc[i] = _mm512_sra_epi32(_mm512_add_epi32(sum, bias), shift);  // R G B 0 per row
          }
          const __m512i u8 = _mm512_packus_epi16(_mm512_packs_epi32(acc[0], acc[1]),
                                                 _mm512_packs_epi32(acc[2], acc[3]));
          q[k] = _mm512_shuffle_epi8(u8, planar);
        }
        const __m512i rg01 = _mm512_unpacklo_epi32(q[0], q[1]);  // R 0-7 interleaved, G 0-7
        const __m512i rg23 = _mm512_unpacklo_epi32(q[2], q[3]);
        const __m512i b01 = _mm512_unpackhi_epi32(q[0], q[1]);
        const __m512i b23 = _mm512_unpackhi_epi32(q[2], q[3]);
        __m512i vr = _mm512_unpacklo_epi64(rg01, rg23);  // lane k: R of pixels x..x+15, row k
        __m512i vg = _mm512_unpackhi_epi64(rg01, rg23);
        __m512i vb = _mm512_unpacklo_epi64(b01, b23);
        if (flip) {
          vr = _mm512_shuffle_epi8(vr, reverse);
          vg = _mm512_shuffle_epi8(vg, reverse);
          vb = _mm512_shuffle_epi8(vb, reverse);
        }
        uint8_t* t = tmp + r * ow + (flip ? ow - 16 - x : x);
        store_lane<0>(t, vr), store_lane<1>(t + ow, vr);
        store_lane<2>(t + 2 * ow, vr), store_lane<3>(t + 3 * ow, vr);
        t += plane;
        store_lane<0>(t, vg), store_lane<1>(t + ow, vg);
        store_lane<2>(t + 2 * ow, vg), store_lane<3>(t + 3 * ow, vg);
        t += plane;
        store_lane<0>(t, vb), store_lane<1>(t + ow, vb);
        store_lane<2>(t + 2 * ow, vb), store_lane<3>(t + 3 * ow, vb);
      }
      rgb_columns_scalar(in, stride, 4, ax, xb, ow, flip, tmp + r * ow, plane);
    }
  }
  if (r < nrows) {
    resample_rows_rgb_avx2(src, src_end, src_w, top, left, ax, r0, r1, r, ow, flip, tmp, packed);
  }
}
#elif defined(PYXFER_AUG_AVX2)
// Sixteen output pixels [x, x + 16) of crop rows `in` and `in + stride`, written to the planar
// tmp rows at `t` (planes `plane` apart, the second row `ow` after the first); the weights of
// taps 2 and 3 are read only when `four` (they are 0 on a two-tap axis).
template <bool four>
inline void rows2_block(const uint8_t* in, int64_t stride, const ResampleAxis& ax, int64_t x,
                        int64_t ow, int64_t plane, bool flip, uint8_t* t) {
  const __m256i pair01 = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1));
  const __m256i pair23 = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1));
  const __m256i planar = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  const __m256i bias = _mm256_set1_epi32(ax.bias);
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(ax.precision));
  __m256i q[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    __m256i acc[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const int64_t xx = x + 4 * k + i;
      const uint8_t* p = in + static_cast<int64_t>(ax.xmin[xx]) * 3;
      const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + stride),
                                              reinterpret_cast<const __m128i*>(p));
      const __m128i* w = reinterpret_cast<const __m128i*>(ax.wv + xx * 16);
      const __m256i w01 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w));
      __m256i sum = _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair01), w01);
      if (four) {
        const __m256i w23 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w + 1));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair23), w23));
      }
      acc[i] = _mm256_sra_epi32(_mm256_add_epi32(sum, bias), shift);
    }
    const __m256i u8 = _mm256_packus_epi16(_mm256_packs_epi32(acc[0], acc[1]),
                                           _mm256_packs_epi32(acc[2], acc[3]));
    q[k] = _mm256_shuffle_epi8(u8, planar);
  }
  const __m256i rg01 = _mm256_unpacklo_epi32(q[0], q[1]);
  const __m256i rg23 = _mm256_unpacklo_epi32(q[2], q[3]);
  const __m256i b01 = _mm256_unpackhi_epi32(q[0], q[1]);
  const __m256i b23 = _mm256_unpackhi_epi32(q[2], q[3]);
  __m256i vr = _mm256_unpacklo_epi64(rg01, rg23);  // lane k: R of pixels x..x+15, row k
  __m256i vg = _mm256_unpackhi_epi64(rg01, rg23);
  __m256i vb = _mm256_unpacklo_epi64(b01, b23);
  if (flip) {
    const __m256i reverse = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    vr = _mm256_shuffle_epi8(vr, reverse);
    vg = _mm256_shuffle_epi8(vg, reverse);
    vb = _mm256_shuffle_epi8(vb, reverse);
  }
  _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t), vr);
  t += plane;
  _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t), vg);
  t += plane;
  _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t), vb);
}

// The AVX2 form of resample_rows_rgb_avx512 (see there): two crop rows at once, one per
// 128-bit lane, in blocks of rows2_block (the tap count's branch taken once per call, the block's
// loops unrolled so its sixteen pixels stay in registers); the rows it cannot take go to
// resample_rows_rgb_avx2's row loop.
PYXFER_AUG_STAGE
void resample_rows_rgb_2rows(const uint8_t* src, const uint8_t* src_end, int64_t src_w,
                             int64_t top, int64_t left, const ResampleAxis& ax, int64_t r0,
                             int64_t r1, int64_t ow, bool flip, uint8_t* tmp, uint32_t* packed) {
  const int64_t nrows = r1 - r0, plane = nrows * ow, stride = src_w * 3;
  const int64_t xb = ow - ow % 16;
  int64_t r = 0;
  if (ax.groups == 1 && xb > 0) {
    const int32_t* xmin = ax.xmin;
    const bool four = ax.taps > 2;
    for (; r + 2 <= nrows; r += 2) {
      const uint8_t* in = src + ((top + r0 + r) * src_w + left) * 3;
      if (src_end - (in + stride + static_cast<int64_t>(xmin[ow - 1]) * 3) < 16) break;
      for (int64_t x = 0; x < xb; x += 16) {
        prefetch_block(in, 2 * stride + static_cast<int64_t>(xmin[x]) * 3, stride, 2);
        uint8_t* t = tmp + r * ow + (flip ? ow - 16 - x : x);
        if (four) {
          rows2_block<true>(in, stride, ax, x, ow, plane, flip, t);
        } else {
          rows2_block<false>(in, stride, ax, x, ow, plane, flip, t);
        }
      }
      rgb_columns_scalar(in, stride, 2, ax, xb, ow, flip, tmp + r * ow, plane);
    }
  }
  if (r < nrows) {
    resample_rows_rgb_avx2(src, src_end, src_w, top, left, ax, r0, r1, r, ow, flip, tmp, packed);
  }
}
#endif

#if defined(PYXFER_AUG_NEON)
// The horizontal pass for RGB with NEON: per output pixel, each tap one widening multiply-
// accumulate of its (R, G, B, next) levels by the tap's weight into int32 lanes, then the shift
// and saturating narrows (aa_finish's clamp); the pixels go packed (3 bytes each) to a row
// buffer that vld3q_u8 splits into the planes, 16 per step (reversed when `flip`). Integer
// sums: the same result as resample_rows. Rows whose 8-byte loads could pass the end of the
// image compute their pixels with resample_rows' scalar sums.
PYXFER_AUG_STAGE
void resample_rows_rgb_neon(const uint8_t* src, const uint8_t* src_end, int64_t src_w,
                            int64_t top, int64_t left, const ResampleAxis& ax, int64_t r0,
                            int64_t r1, int64_t ow, bool flip, uint8_t* tmp, uint32_t* packed) {
  const int64_t nrows = r1 - r0, plane = nrows * ow;
  const int taps = ax.taps;
  const int32x4_t bias = vdupq_n_s32(ax.bias);
  const int32x4_t shift = vdupq_n_s32(-static_cast<int32_t>(ax.precision));
  // xmin grows with x: the last pixel's last tap is the furthest load (8 bytes from its R)
  const int64_t reach = 3 * (static_cast<int64_t>(ax.xmin[ow - 1]) + taps - 1) + 8;
  uint8_t* rgb = reinterpret_cast<uint8_t*>(packed);  // 3 ow + 1 of its 4 ow bytes
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* in = src + ((top + r0 + r) * src_w + left) * 3;
    if (src_end - in >= reach) {
      for (int64_t x = 0; x < ow; ++x) {
        const uint8_t* p = in + static_cast<int64_t>(ax.xmin[x]) * 3;
        const int16_t* w = ax.w + x * taps;
        int32x4_t acc = bias;
        for (int j = 0; j < taps; ++j) {
          const uint16x8_t v = vmovl_u8(vld1_u8(p + 3 * j));
          acc = vmlal_n_s16(acc, vreinterpret_s16_u16(vget_low_u16(v)), w[j]);
        }
        const int16x4_t n16 = vqmovn_s32(vshlq_s32(acc, shift));  // arithmetic shift right
        const uint8x8_t u8 = vqmovun_s16(vcombine_s16(n16, n16));
        const uint32_t px = vget_lane_u32(vreinterpret_u32_u8(u8), 0);
        __builtin_memcpy(rgb + 3 * x, &px, 4);  // R G B, and a byte the next pixel overwrites
      }
    } else {
      for (int64_t x = 0; x < ow; ++x) {
        const uint8_t* p = in + static_cast<int64_t>(ax.xmin[x]) * 3;
        const int16_t* w = ax.w + x * taps;
        int32_t s0 = ax.bias, s1 = ax.bias, s2 = ax.bias;
        for (int j = 0; j < taps; ++j) {
          const int32_t wj = w[j];
          s0 += wj * p[j * 3], s1 += wj * p[j * 3 + 1], s2 += wj * p[j * 3 + 2];
        }
        rgb[3 * x] = static_cast<uint8_t>(aa_finish(s0, ax.precision));
        rgb[3 * x + 1] = static_cast<uint8_t>(aa_finish(s1, ax.precision));
        rgb[3 * x + 2] = static_cast<uint8_t>(aa_finish(s2, ax.precision));
      }
    }
    uint8_t* t = tmp + r * ow;
    int64_t x = 0;
    for (; x + 16 <= ow; x += 16) {
      uint8x16x3_t v = vld3q_u8(rgb + 3 * x);
      int64_t xo = x;
      if (flip) {
        v.val[0] = reverse16(v.val[0]), v.val[1] = reverse16(v.val[1]);
        v.val[2] = reverse16(v.val[2]);
        xo = ow - 16 - x;
      }
      vst1q_u8(t + xo, v.val[0]), vst1q_u8(t + plane + xo, v.val[1]);
      vst1q_u8(t + 2 * plane + xo, v.val[2]);
    }
    for (; x < ow; ++x) {
      const int64_t xo = flip ? ow - 1 - x : x;
      t[xo] = rgb[3 * x], t[plane + xo] = rgb[3 * x + 1], t[2 * plane + xo] = rgb[3 * x + 2];
    }
  }
}
#endif

// Vertical pass: planar tmp (c, nrows, ow) whose row 0 is crop row r0 -> planar img (c, oh, ow).
PYXFER_AUG_STAGE
void resample_cols(const uint8_t* tmp, int64_t c, int64_t nrows, int64_t r0,
                   const ResampleAxis& ay, int64_t oh, int64_t ow, int32_t* acc, uint8_t* img) {
  const int64_t tplane = nrows * ow, plane = oh * ow;
  for (int64_t k = 0; k < c; ++k) {
    const uint8_t* t = tmp + k * tplane;
    uint8_t* o = img + k * plane;
    for (int64_t y = 0; y < oh; ++y) {
      if (ay.identity) {
        const uint8_t* row = t + (y - r0) * ow;
        for (int64_t x = 0; x < ow; ++x) o[y * ow + x] = row[x];
        continue;
      }
      const int16_t* w = ay.w + y * ay.taps;
      const uint8_t* base = t + (ay.xmin[y] - r0) * ow;
      for (int64_t x = 0; x < ow; ++x) acc[x] = ay.bias;
      for (int j = 0; j < ay.taps; ++j) {
        const int32_t wj = w[j];
        if (wj == 0) continue;
        const uint8_t* row = base + j * ow;
        for (int64_t x = 0; x < ow; ++x) acc[x] += wj * static_cast<int32_t>(row[x]);
      }
      const unsigned prec = ay.precision;
      for (int64_t x = 0; x < ow; ++x) {
        int32_t v = acc[x] >> prec;
        v = v < 0 ? 0 : v;
        v = v > 255 ? 255 : v;
        o[y * ow + x] = static_cast<uint8_t>(v);
      }
    }
  }
}

#if defined(PYXFER_AUG_AVX2)
// Vertical pass with AVX2: 32 (AVX-512: 512-bit registers, else two 256-bit halves), then 16
// columns per step, taps in pairs through pmaddwd (rows j and j + 1 interleaved as int16),
// accumulators in registers. Integer sums: same result as the loop above.
PYXFER_AUG_STAGE
void resample_cols_avx2(const uint8_t* tmp, int64_t c, int64_t nrows, int64_t r0,
                        const ResampleAxis& ay, int64_t oh, int64_t ow, int32_t* acc,
                        uint8_t* img) {
  const int taps = ay.taps;
  const int64_t tplane = nrows * ow, plane = oh * ow, xb = ow - ow % 16;
  const __m256i bias = _mm256_set1_epi32(ay.bias);
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(ay.precision));
  const __m128i zero = _mm_setzero_si128();
  for (int64_t k = 0; k < c; ++k) {
    const uint8_t* t = tmp + k * tplane;
    uint8_t* o = img + k * plane;
    for (int64_t y = 0; y < oh; ++y) {
      const int16_t* w = ay.w + y * taps;
      const uint8_t* base = t + (ay.xmin[y] - r0) * ow;
      int64_t x0 = 0;
#if defined(PYXFER_AUG_AVX512)
      // 32 columns per step; lanes of 8 columns keep their order through unpack and packs
      const __m512i bias16 = _mm512_set1_epi32(ay.bias);
      for (; x0 + 32 <= ow; x0 += 32) {
        __m512i lo = bias16, hi = bias16;
        for (int j = 0; j < taps; j += 2) {
          const __m512i a = _mm512_cvtepu8_epi16(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + j * ow + x0)));
          const bool two = j + 1 < taps;
          const __m512i b =
              two ? _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                        reinterpret_cast<const __m256i*>(base + (j + 1) * ow + x0)))
                  : _mm512_setzero_si512();
          const int32_t pair = static_cast<int32_t>(static_cast<uint16_t>(w[j])) |
                               (two ? static_cast<int32_t>(static_cast<uint32_t>(
                                          static_cast<uint16_t>(w[j + 1])) << 16)
                                    : 0);
          const __m512i wp = _mm512_set1_epi32(pair);
          lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), wp));
          hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), wp));
        }
        const __m512i p16 =
            _mm512_packs_epi32(_mm512_sra_epi32(lo, shift), _mm512_sra_epi32(hi, shift));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + y * ow + x0),
                            _mm512_cvtusepi16_epi8(_mm512_max_epi16(p16, _mm512_setzero_si512())));
      }
#else
      // 32 columns per step as two 16-column halves sharing each tap pair's weights
      for (; x0 + 32 <= ow; x0 += 32) {
        __m256i sum[4] = {bias, bias, bias, bias};  // columns 0-3|8-11, 4-7|12-15, then +16
        for (int j = 0; j < taps; j += 2) {
          const bool two = j + 1 < taps;
          const int32_t pair = static_cast<int32_t>(static_cast<uint16_t>(w[j])) |
                               (two ? static_cast<int32_t>(static_cast<uint32_t>(
                                          static_cast<uint16_t>(w[j + 1])) << 16)
                                    : 0);
          const __m256i wp = _mm256_set1_epi32(pair);
          const uint8_t* ra = base + j * ow + x0;
          for (int hx = 0; hx < 2; ++hx) {
            const __m256i a = _mm256_cvtepu8_epi16(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(ra + 16 * hx)));
            const __m256i b = two ? _mm256_cvtepu8_epi16(_mm_loadu_si128(
                                        reinterpret_cast<const __m128i*>(ra + ow + 16 * hx)))
                                  : _mm256_setzero_si256();
            sum[2 * hx] = _mm256_add_epi32(sum[2 * hx],
                                           _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
            sum[2 * hx + 1] = _mm256_add_epi32(
                sum[2 * hx + 1], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
          }
        }
        // int16 columns 0-15 and 16-31, then bytes in lane order 0-7 16-23 | 8-15 24-31
        const __m256i p0 = _mm256_packs_epi32(_mm256_sra_epi32(sum[0], shift),
                                              _mm256_sra_epi32(sum[1], shift));
        const __m256i p1 = _mm256_packs_epi32(_mm256_sra_epi32(sum[2], shift),
                                              _mm256_sra_epi32(sum[3], shift));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + y * ow + x0),
                            _mm256_permute4x64_epi64(_mm256_packus_epi16(p0, p1), 0xD8));
      }
#endif
      for (int64_t x = x0; x < xb; x += 16) {
        __m256i lo = bias, hi = bias;
        for (int j = 0; j < taps; j += 2) {
          const __m256i a = _mm256_cvtepu8_epi16(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + j * ow + x)));
          const bool two = j + 1 < taps;
          const __m256i b =
              two ? _mm256_cvtepu8_epi16(_mm_loadu_si128(
                        reinterpret_cast<const __m128i*>(base + (j + 1) * ow + x)))
                  : _mm256_setzero_si256();
          const int32_t pair = static_cast<int32_t>(static_cast<uint16_t>(w[j])) |
                               (two ? static_cast<int32_t>(static_cast<uint32_t>(
                                          static_cast<uint16_t>(w[j + 1])) << 16)
                                    : 0);
          const __m256i wp = _mm256_set1_epi32(pair);
          lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
          hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
        }
        lo = _mm256_sra_epi32(lo, shift);
        hi = _mm256_sra_epi32(hi, shift);
        const __m256i p16 = _mm256_packs_epi32(lo, hi);  // pixels 0-7 | 8-15 as int16
        const __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16),
                                            _mm256_extracti128_si256(p16, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + y * ow + x), p8);
      }
      for (int64_t x = xb; x < ow; ++x) {
        int32_t v = ay.bias;
        for (int j = 0; j < taps; ++j) v += static_cast<int32_t>(w[j]) * base[j * ow + x];
        v >>= ay.precision;
        v = v < 0 ? 0 : v;
        o[y * ow + x] = static_cast<uint8_t>(v > 255 ? 255 : v);
      }
    }
  }
  (void)acc, (void)zero;
}
#endif

#if defined(PYXFER_AUG_NEON)
// Vertical pass with NEON: 16 columns per step, each tap a widening multiply-accumulate of the
// row's levels (as int16) by the tap's weight into four int32x4 accumulators, then the shift and
// saturating narrows (the clamp of resample_cols). Integer sums: same result as resample_cols.
PYXFER_AUG_STAGE
void resample_cols_neon(const uint8_t* tmp, int64_t c, int64_t nrows, int64_t r0,
                        const ResampleAxis& ay, int64_t oh, int64_t ow, uint8_t* img) {
  const int taps = ay.taps;
  const int64_t tplane = nrows * ow, plane = oh * ow, xb = ow - ow % 16;
  const int32x4_t bias = vdupq_n_s32(ay.bias);
  const int32x4_t shift = vdupq_n_s32(-static_cast<int32_t>(ay.precision));
  for (int64_t k = 0; k < c; ++k) {
    const uint8_t* t = tmp + k * tplane;
    uint8_t* o = img + k * plane;
    for (int64_t y = 0; y < oh; ++y) {
      const int16_t* w = ay.w + y * taps;
      const uint8_t* base = t + (ay.xmin[y] - r0) * ow;
      for (int64_t x = 0; x < xb; x += 16) {
        int32x4_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;
        for (int j = 0; j < taps; ++j) {
          const uint8x16_t v = vld1q_u8(base + j * ow + x);
          const int16x8_t lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
          const int16x8_t hi = vreinterpretq_s16_u16(vmovl_high_u8(v));
          const int16_t wj = w[j];
          a0 = vmlal_n_s16(a0, vget_low_s16(lo), wj);
          a1 = vmlal_high_n_s16(a1, lo, wj);
          a2 = vmlal_n_s16(a2, vget_low_s16(hi), wj);
          a3 = vmlal_high_n_s16(a3, hi, wj);
        }
        const int16x8_t p0 = vcombine_s16(vqmovn_s32(vshlq_s32(a0, shift)),
                                          vqmovn_s32(vshlq_s32(a1, shift)));
        const int16x8_t p1 = vcombine_s16(vqmovn_s32(vshlq_s32(a2, shift)),
                                          vqmovn_s32(vshlq_s32(a3, shift)));
        vst1q_u8(o + y * ow + x, vcombine_u8(vqmovun_s16(p0), vqmovun_s16(p1)));
      }
      for (int64_t x = xb; x < ow; ++x) {
        int32_t v = ay.bias;
        for (int j = 0; j < taps; ++j) v += static_cast<int32_t>(w[j]) * base[j * ow + x];
        v >>= ay.precision;
        v = v < 0 ? 0 : v;
        o[y * ow + x] = static_cast<uint8_t>(v > 255 ? 255 : v);
      }
    }
  }
}
#endif

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
