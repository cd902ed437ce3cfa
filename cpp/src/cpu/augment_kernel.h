// Quantized (uint8-level) per-view augmentation kernel, compiled once per instruction set.
//
// Included by augment.cpp (baseline target) and by augment_avx2.cpp / augment_avx512.cpp, which
// set `#pragma GCC target` first; each includer defines PYXFER_AUG_NS, so every copy lives in its
// own namespace and nothing with external linkage is shared between differently compiled copies.
// Only raw pointers are used here (no std templates), for the same reason.
//
// With quantize=True every intermediate image holds uint8 levels, so the view is kept as planar
// uint8 (c, h, w) between ops (a quarter of the float traffic) and each op computes exactly the
// float32 expressions of augment.h on those levels: the results are bit-identical to the float
// buffer pipeline (and to the CUDA kernel), whatever the instruction set.
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

namespace pyxfer::cpu::PYXFER_AUG_NS {

namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

inline uint8_t to_u8(float v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

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
// The AVX2 form of resample_rows_rgb_avx512 (see there): two crop rows at once, one per
// 128-bit lane; the rows it cannot take go to resample_rows_rgb_avx2's row loop.
PYXFER_AUG_STAGE
void resample_rows_rgb_2rows(const uint8_t* src, const uint8_t* src_end, int64_t src_w,
                             int64_t top, int64_t left, const ResampleAxis& ax, int64_t r0,
                             int64_t r1, int64_t ow, bool flip, uint8_t* tmp, uint32_t* packed) {
  const int64_t nrows = r1 - r0, plane = nrows * ow, stride = src_w * 3;
  const int64_t xb = ow - ow % 16;
  int64_t r = 0;
  if (ax.groups == 1 && xb > 0) {
    const __m256i pair01 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1));
    const __m256i pair23 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1));
    const __m256i planar = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __m256i reverse = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    const __m256i bias = _mm256_set1_epi32(ax.bias);
    const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(ax.precision));
    const int32_t* xmin = ax.xmin;
    const bool two_taps = ax.taps <= 2;
    for (; r + 2 <= nrows; r += 2) {
      const uint8_t* in = src + ((top + r0 + r) * src_w + left) * 3;
      if (src_end - (in + stride + static_cast<int64_t>(xmin[ow - 1]) * 3) < 16) break;
      for (int64_t x = 0; x < xb; x += 16) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
          __m256i acc[4];
          for (int i = 0; i < 4; ++i) {
            const int64_t xx = x + 4 * k + i;
            const uint8_t* p = in + static_cast<int64_t>(xmin[xx]) * 3;
            const __m256i raw =
                _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + stride),
                                    reinterpret_cast<const __m128i*>(p));
            const __m128i* w = reinterpret_cast<const __m128i*>(ax.wv + xx * 16);
            const __m256i w01 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w));
            __m256i sum = _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair01), w01);
            if (!two_taps) {
              const __m256i w23 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w + 1));
              sum = _mm256_add_epi32(sum,
                                     _mm256_madd_epi16(_mm256_shuffle_epi8(raw, pair23), w23));
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
          vr = _mm256_shuffle_epi8(vr, reverse);
          vg = _mm256_shuffle_epi8(vg, reverse);
          vb = _mm256_shuffle_epi8(vb, reverse);
        }
        uint8_t* t = tmp + r * ow + (flip ? ow - 16 - x : x);
        _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t),
                             vr);
        t += plane;
        _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t),
                             vg);
        t += plane;
        _mm256_storeu2_m128i(reinterpret_cast<__m128i*>(t + ow), reinterpret_cast<__m128i*>(t),
                             vb);
      }
      rgb_columns_scalar(in, stride, 2, ax, xb, ow, flip, tmp + r * ow, plane);
    }
  }
  if (r < nrows) {
    resample_rows_rgb_avx2(src, src_end, src_w, top, left, ax, r0, r1, r, ow, flip, tmp, packed);
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
// Vertical pass with AVX2: 16 columns per step, taps in pairs through pmaddwd (rows j and j + 1
// interleaved as int16), accumulators in registers. Integer sums: same result as the loop above.
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

#if defined(PYXFER_AUG_AVX512)
// Per-level ops (brightness, contrast, solarize) map each of the 256 levels through the op's own
// scalar expression once, then the image through that table: 64 bytes per two VBMI byte
// permutes where the CPU has them (the table holds exactly the values the loop would compute).
#define PYXFER_VBMI_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,bmi2,avx512vbmi")))

PYXFER_VBMI_TARGET PYXFER_AUG_STAGE
void lut_apply_vbmi(uint8_t* img, int64_t total, const uint8_t* lut) {
  const __m512i t0 = _mm512_loadu_si512(lut), t1 = _mm512_loadu_si512(lut + 64);
  const __m512i t2 = _mm512_loadu_si512(lut + 128), t3 = _mm512_loadu_si512(lut + 192);
  for (int64_t i = 0; i < total; i += 64) {
    const __mmask64 m =
        total - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (total - i)) - 1;
    const __m512i idx = _mm512_maskz_loadu_epi8(m, img + i);
    const __m512i lo = _mm512_permutex2var_epi8(t0, idx, t1);  // levels 0..127
    const __m512i hi = _mm512_permutex2var_epi8(t2, idx, t3);  // levels 128..255
    _mm512_mask_storeu_epi8(img + i, m,
                            _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi));
  }
}

bool has_vbmi() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") != 0;
  }();
  return yes;
}
#endif

PYXFER_AUG_STAGE
void brightness_u8(uint8_t* img, int64_t total, float f) {
#if defined(PYXFER_AUG_AVX512)
  if (has_vbmi()) {
    alignas(64) uint8_t lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = to_u8(floor_pos(clamp255(static_cast<float>(v) * f)));
    lut_apply_vbmi(img, total, lut);
    return;
  }
#endif
  for (int64_t i = 0; i < total; ++i) {
    img[i] = to_u8(floor_pos(clamp255(static_cast<float>(img[i]) * f)));
  }
}

#if defined(PYXFER_AUG_AVX512)
// 16 levels as float, lanes past `m` zero.
inline __m512 level16(const uint8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
inline __mmask16 tail16(int64_t left) {
  return static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
}
// floor_pos(gray_of(r, g, b)) as int32 lanes (separate products and sums, as gray_of).
inline __m512i gray16(__m512 r, __m512 g, __m512 b) {
  const __m512 rg = _mm512_add_ps(_mm512_mul_ps(r, _mm512_set1_ps(0.2989f)),
                                  _mm512_mul_ps(g, _mm512_set1_ps(0.587f)));
  return _mm512_cvttps_epi32(_mm512_add_ps(rg, _mm512_mul_ps(b, _mm512_set1_ps(0.114f))));
}
#endif

#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
// 8 levels as float.
inline __m256 level8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// floor_pos(gray_of(r, g, b)) as int32 lanes (separate products and sums, as gray_of).
inline __m256i gray8(__m256 r, __m256 g, __m256 b) {
  const __m256 rg = _mm256_add_ps(_mm256_mul_ps(r, _mm256_set1_ps(0.2989f)),
                                  _mm256_mul_ps(g, _mm256_set1_ps(0.587f)));
  return _mm256_cvttps_epi32(_mm256_add_ps(rg, _mm256_mul_ps(b, _mm256_set1_ps(0.114f))));
}
inline void store8(uint8_t* p, __m256i v) {  // int32 lanes in [0, 255]
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}
#endif

// Sum of floor(gray) (c == 3) or of the levels (c == 1): integers, so the int64 sum equals
// the float kernels' double sum exactly.
PYXFER_AUG_STAGE
int64_t gray_sum(const uint8_t* img, int64_t c, int64_t n) {
  int64_t sum = 0;
#if defined(PYXFER_AUG_AVX512)
  if (c == 3) {
    const uint8_t *r = img, *g = img + n, *b = img + 2 * n;
    for (int64_t i0 = 0; i0 < n; i0 += 16 << 16) {  // int32 lanes take 2^16 steps of <= 255
      const int64_t i1 = n - i0 < (16 << 16) ? n : i0 + (16 << 16);
      __m512i acc = _mm512_setzero_si512();
      for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 m = tail16(i1 - i);
        acc = _mm512_add_epi32(acc, gray16(level16(r + i, m), level16(g + i, m),
                                           level16(b + i, m)));
      }
      sum += _mm512_reduce_add_epi32(acc);
    }
    return sum;
  }
#endif
  if (c == 3) {
    const uint8_t *r = img, *g = img + n, *b = img + 2 * n;
    int64_t i = 0;
#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
    while (i + 8 <= n) {  // int32 lanes take 2^16 steps of <= 255
      const int64_t stop = n - i < (8 << 16) ? n - (n - i) % 8 : i + (8 << 16);
      __m256i acc = _mm256_setzero_si256();
      for (; i < stop; i += 8) {
        acc = _mm256_add_epi32(acc, gray8(level8(r + i), level8(g + i), level8(b + i)));
      }
      alignas(32) int32_t lanes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
      for (const int32_t v : lanes) sum += v;
    }
#endif
    for (; i < n; ++i) {
      sum += static_cast<int32_t>(
          floor_pos(gray_of(static_cast<float>(r[i]), static_cast<float>(g[i]),
                            static_cast<float>(b[i]))));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) sum += img[i];
  }
  return sum;
}

PYXFER_AUG_STAGE
void contrast_u8(uint8_t* img, int64_t c, int64_t n, float f) {
  const double sum = static_cast<double>(gray_sum(img, c, n));
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float other = mean * static_cast<float>(1.0 - static_cast<double>(f));
#if defined(PYXFER_AUG_AVX512)
  if (has_vbmi()) {
    alignas(64) uint8_t lut[256];
    for (int v = 0; v < 256; ++v) {
      lut[v] = to_u8(floor_pos(clamp255(static_cast<float>(v) * f + other)));
    }
    lut_apply_vbmi(img, c * n, lut);
    return;
  }
#endif
  for (int64_t i = 0; i < c * n; ++i) {
    img[i] = to_u8(floor_pos(clamp255(static_cast<float>(img[i]) * f + other)));
  }
}

PYXFER_AUG_STAGE
void saturation_u8(uint8_t* img, int64_t n, float f) {
  uint8_t *r = img, *g = img + n, *b = img + 2 * n;
  const float omf = static_cast<float>(1.0 - static_cast<double>(f));
#if defined(PYXFER_AUG_AVX512)
  {  // blend(x, gray, f, 1 - f) = floor(clamp255(x * f + gray * (1 - f)))
    const __m512 vf = _mm512_set1_ps(f), vo = _mm512_set1_ps(omf);
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.f);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = tail16(n - i);
      const __m512 rf = level16(r + i, m), gf = level16(g + i, m), bf = level16(b + i, m);
      const __m512 other = _mm512_mul_ps(_mm512_cvtepi32_ps(gray16(rf, gf, bf)), vo);
      auto out = [&](uint8_t* p, __m512 x) {
        const __m512 v = _mm512_add_ps(_mm512_mul_ps(x, vf), other);
        const __m512 cl = _mm512_min_ps(_mm512_max_ps(v, zero), top);
        _mm_mask_storeu_epi8(p + i, m, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(cl)));
      };
      out(r, rf), out(g, gf), out(b, bf);
    }
    return;
  }
#endif
  int64_t i = 0;
#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
  {
    const __m256 vf = _mm256_set1_ps(f), vo = _mm256_set1_ps(omf);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.f);
    for (; i + 8 <= n; i += 8) {
      const __m256 rf = level8(r + i), gf = level8(g + i), bf = level8(b + i);
      const __m256 other = _mm256_mul_ps(_mm256_cvtepi32_ps(gray8(rf, gf, bf)), vo);
      auto out = [&](uint8_t* p, __m256 x) {
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(x, vf), other);
        store8(p + i, _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, zero), top)));
      };
      out(r, rf), out(g, gf), out(b, bf);
    }
  }
#endif
  for (; i < n; ++i) {
    const float rf = r[i], gf = g[i], bf = b[i];
    const float gr = floor_pos(gray_of(rf, gf, bf));
    r[i] = to_u8(blend(rf, gr, f, omf, true));
    g[i] = to_u8(blend(gf, gr, f, omf, true));
    b[i] = to_u8(blend(bf, gr, f, omf, true));
  }
}

inline void hue_scalar(uint8_t* __restrict r, uint8_t* __restrict g, uint8_t* __restrict b,
                       int64_t n, float h) {
  for (int64_t i = 0; i < n; ++i) {
    float rf = r[i], gf = g[i], bf = b[i];
    hue_shift(rf, gf, bf, h, true);
    r[i] = to_u8(rf), g[i] = to_u8(gf), b[i] = to_u8(bf);
  }
}

// The vector hue loops below compute hue_shift's float32 operations with the same roundings,
// written with selects where hue_shift multiplies by 0 / 1 masks (exactly one mask is 1 and
// every product with 0 is +0, so the sums equal the selected term). Of rc, gc, bc only the two
// that the selected hue formula reads are divided: the third is 0 / div = +0 and unused.
#if defined(PYXFER_AUG_AVX512)
constexpr int64_t kHueStep = 16;
inline __m512 hue_level(const uint8_t* p) {
  const __m512 v = _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  return _mm512_div_ps(v, _mm512_set1_ps(255.f));
}
inline __m512 hue_trunc(__m512 v) { return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(v)); }
inline __m512 hue_clamp01(__m512 v) {
  return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(1.f));
}
inline void hue_store(uint8_t* p, __m512 v) {
  const __m512i i = _mm512_cvttps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(255.999f)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(i));
}

inline void hue_block(uint8_t* r8, uint8_t* g8, uint8_t* b8, __m512 hue) {
  const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps();
  const __m512 r = hue_level(r8), g = hue_level(g8), b = hue_level(b8);
  const __m512 maxc = _mm512_max_ps(r, _mm512_max_ps(g, b));
  const __m512 minc = _mm512_min_ps(r, _mm512_min_ps(g, b));
  const __mmask16 eqc = _mm512_cmp_ps_mask(maxc, minc, _CMP_EQ_OQ);
  const __m512 cr = _mm512_sub_ps(maxc, minc);
  const __m512 s = _mm512_div_ps(cr, _mm512_mask_mov_ps(maxc, eqc, one));
  const __m512 div = _mm512_mask_mov_ps(cr, eqc, one);
  const __mmask16 mr = _mm512_cmp_ps_mask(maxc, r, _CMP_EQ_OQ);
  const __mmask16 mg = static_cast<__mmask16>(_mm512_cmp_ps_mask(maxc, g, _CMP_EQ_OQ) & ~mr);
  // mr: bc - gc; mg: (rc + 2) - bc; otherwise (gc + 4) - rc
  const __m512 n1 = _mm512_mask_mov_ps(_mm512_mask_mov_ps(g, mg, r), mr, b);
  const __m512 n2 = _mm512_mask_mov_ps(_mm512_mask_mov_ps(r, mg, b), mr, g);
  const __m512 add = _mm512_mask_mov_ps(_mm512_mask_mov_ps(_mm512_set1_ps(4.f), mg,
                                                           _mm512_set1_ps(2.f)), mr, zero);
  const __m512 d1 = _mm512_div_ps(_mm512_sub_ps(maxc, n1), div);
  const __m512 d2 = _mm512_div_ps(_mm512_sub_ps(maxc, n2), div);
  __m512 h = _mm512_sub_ps(_mm512_add_ps(d1, add), d2);
  h = _mm512_add_ps(_mm512_mul_ps(h, _mm512_set1_ps(1.f / 6.f)), one);
  h = _mm512_sub_ps(h, hue_trunc(h));
  h = _mm512_add_ps(h, hue);
  __m512 t = hue_trunc(h);
  t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(t, h, _CMP_GT_OQ), t, one);
  h = _mm512_sub_ps(h, t);
  const __m512 v = maxc;
  const __m512 h6 = _mm512_mul_ps(h, _mm512_set1_ps(6.f));
  __m512i i = _mm512_cvttps_epi32(h6);
  const __m512 f = _mm512_sub_ps(h6, _mm512_cvtepi32_ps(i));
  const __m512i six = _mm512_set1_epi32(6);
  i = _mm512_mask_sub_epi32(i, _mm512_cmpge_epi32_mask(i, six), i, six);
  const __m512 sxf = _mm512_mul_ps(s, f);
  const __m512 oms = _mm512_sub_ps(one, s);
  const __m512 pq = hue_clamp01(_mm512_mul_ps(_mm512_sub_ps(one, sxf), v));
  const __m512 pt = hue_clamp01(_mm512_mul_ps(_mm512_add_ps(sxf, oms), v));
  const __m512 pp = hue_clamp01(_mm512_mul_ps(oms, v));
  const __mmask16 i1 = _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(1));
  const __mmask16 i2 = _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(2));
  const __mmask16 i3 = _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(3));
  const __mmask16 i4 = _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(4));
  const __mmask16 i5 = _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(5));
  const __mmask16 i0 = static_cast<__mmask16>(~(i1 | i2 | i3 | i4 | i5));
  // i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
  const __m512 ro =
      _mm512_mask_mov_ps(_mm512_mask_mov_ps(_mm512_mask_mov_ps(v, i1, pq), i2 | i3, pp), i4, pt);
  const __m512 go = _mm512_mask_mov_ps(_mm512_mask_mov_ps(_mm512_mask_mov_ps(v, i0, pt), i3, pq),
                                 i4 | i5, pp);
  const __m512 bo =
      _mm512_mask_mov_ps(_mm512_mask_mov_ps(_mm512_mask_mov_ps(v, i0 | i1, pp), i2, pt), i5, pq);
  hue_store(r8, ro), hue_store(g8, go), hue_store(b8, bo);
}
#elif defined(PYXFER_AUG_AVX2)
constexpr int64_t kHueStep = 8;
inline __m256 hue_level(const uint8_t* p) {
  const __m256 v = _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  return _mm256_div_ps(v, _mm256_set1_ps(255.f));
}
inline __m256 hue_trunc(__m256 v) { return _mm256_cvtepi32_ps(_mm256_cvttps_epi32(v)); }
inline __m256 hue_clamp01(__m256 v) {
  return _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(1.f));
}
inline void hue_store(uint8_t* p, __m256 v) {
  const __m256i i = _mm256_cvttps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(255.999f)));
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}
inline __m256 sel(__m256 a, __m256 b, __m256 m) { return _mm256_blendv_ps(a, b, m); }

inline void hue_block(uint8_t* r8, uint8_t* g8, uint8_t* b8, __m256 hue) {
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  const __m256 r = hue_level(r8), g = hue_level(g8), b = hue_level(b8);
  const __m256 maxc = _mm256_max_ps(r, _mm256_max_ps(g, b));
  const __m256 minc = _mm256_min_ps(r, _mm256_min_ps(g, b));
  const __m256 eqc = _mm256_cmp_ps(maxc, minc, _CMP_EQ_OQ);
  const __m256 cr = _mm256_sub_ps(maxc, minc);
  const __m256 s = _mm256_div_ps(cr, sel(maxc, one, eqc));
  const __m256 div = sel(cr, one, eqc);
  const __m256 mr = _mm256_cmp_ps(maxc, r, _CMP_EQ_OQ);
  const __m256 mg = _mm256_andnot_ps(mr, _mm256_cmp_ps(maxc, g, _CMP_EQ_OQ));
  const __m256 n1 = sel(sel(g, r, mg), b, mr);
  const __m256 n2 = sel(sel(r, b, mg), g, mr);
  const __m256 add = sel(sel(_mm256_set1_ps(4.f), _mm256_set1_ps(2.f), mg), zero, mr);
  const __m256 d1 = _mm256_div_ps(_mm256_sub_ps(maxc, n1), div);
  const __m256 d2 = _mm256_div_ps(_mm256_sub_ps(maxc, n2), div);
  __m256 h = _mm256_sub_ps(_mm256_add_ps(d1, add), d2);
  h = _mm256_add_ps(_mm256_mul_ps(h, _mm256_set1_ps(1.f / 6.f)), one);
  h = _mm256_sub_ps(h, hue_trunc(h));
  h = _mm256_add_ps(h, hue);
  __m256 t = hue_trunc(h);
  t = sel(t, _mm256_sub_ps(t, one), _mm256_cmp_ps(t, h, _CMP_GT_OQ));
  h = _mm256_sub_ps(h, t);
  const __m256 v = maxc;
  const __m256 h6 = _mm256_mul_ps(h, _mm256_set1_ps(6.f));
  __m256i i = _mm256_cvttps_epi32(h6);
  const __m256 f = _mm256_sub_ps(h6, _mm256_cvtepi32_ps(i));
  const __m256i six = _mm256_set1_epi32(6);
  i = _mm256_sub_epi32(i, _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(5)), six));
  const __m256 sxf = _mm256_mul_ps(s, f);
  const __m256 oms = _mm256_sub_ps(one, s);
  const __m256 pq = hue_clamp01(_mm256_mul_ps(_mm256_sub_ps(one, sxf), v));
  const __m256 pt = hue_clamp01(_mm256_mul_ps(_mm256_add_ps(sxf, oms), v));
  const __m256 pp = hue_clamp01(_mm256_mul_ps(oms, v));
  auto is = [&](int k) {
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(i, _mm256_set1_epi32(k)));
  };
  const __m256 i0 = is(0), i1 = is(1), i2 = is(2), i3 = is(3), i4 = is(4), i5 = is(5);
  // i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
  const __m256 ro = sel(sel(sel(v, pq, i1), pp, _mm256_or_ps(i2, i3)), pt, i4);
  const __m256 go = sel(sel(sel(v, pt, i0), pq, i3), pp, _mm256_or_ps(i4, i5));
  const __m256 bo = sel(sel(sel(v, pp, _mm256_or_ps(i0, i1)), pt, i2), pq, i5);
  hue_store(r8, ro), hue_store(g8, go), hue_store(b8, bo);
}
#endif

PYXFER_AUG_STAGE
void hue_u8(uint8_t* __restrict r, uint8_t* __restrict g, uint8_t* __restrict b, int64_t n,
            float h) {
#if defined(PYXFER_AUG_AVX2)
  int64_t i = 0;
#if defined(PYXFER_AUG_AVX512)
  const __m512 hue = _mm512_set1_ps(h);
#else
  const __m256 hue = _mm256_set1_ps(h);
#endif
  for (; i + kHueStep <= n; i += kHueStep) hue_block(r + i, g + i, b + i, hue);
  if (i < n) {
    // the last (partial) block in a zero-padded copy
    alignas(64) uint8_t tail[3][kHueStep] = {};
    const int64_t m = n - i;
    __builtin_memcpy(tail[0], r + i, static_cast<size_t>(m));
    __builtin_memcpy(tail[1], g + i, static_cast<size_t>(m));
    __builtin_memcpy(tail[2], b + i, static_cast<size_t>(m));
    hue_block(tail[0], tail[1], tail[2], hue);
    __builtin_memcpy(r + i, tail[0], static_cast<size_t>(m));
    __builtin_memcpy(g + i, tail[1], static_cast<size_t>(m));
    __builtin_memcpy(b + i, tail[2], static_cast<size_t>(m));
  }
#else
  hue_scalar(r, g, b, n, h);
#endif
}

PYXFER_AUG_STAGE
void gray_u8(uint8_t* img, int64_t n) {
  uint8_t *r = img, *g = img + n, *b = img + 2 * n;
#if defined(PYXFER_AUG_AVX512)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail16(n - i);
    const __m128i v = _mm512_cvtepi32_epi8(
        gray16(level16(r + i, m), level16(g + i, m), level16(b + i, m)));
    _mm_mask_storeu_epi8(r + i, m, v), _mm_mask_storeu_epi8(g + i, m, v);
    _mm_mask_storeu_epi8(b + i, m, v);
  }
  return;
#endif
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t v = to_u8(floor_pos(gray_of(static_cast<float>(r[i]), static_cast<float>(g[i]),
                                              static_cast<float>(b[i]))));
    r[i] = v, g[i] = v, b[i] = v;
  }
}

// dst[0..32) = the blur sum over taps [j0, j1) of rows[j][x + 0..32) in augment.h's order (centre
// tap, then w[c - d] * (left + right) for d = 1, 2, ...), accumulators in registers; separate
// multiply and add (no FMA), so every element rounds as in the scalar code.
constexpr int64_t kBlock = 32;
#if defined(PYXFER_AUG_AVX512)
template <typename At>
inline void taps_rows(At at, const float* w, int j0, int j1, float* dst) {
  const int c = (j0 + j1 - 1) / 2;
  const __m512 wc = _mm512_set1_ps(w[c]);
  __m512 a0 = _mm512_mul_ps(wc, _mm512_loadu_ps(at(c)));
  __m512 a1 = _mm512_mul_ps(wc, _mm512_loadu_ps(at(c) + 16));
  for (int d = 1; d <= c - j0; ++d) {
    const __m512 wd = _mm512_set1_ps(w[c - d]);
    const float* s = at(c - d);
    const float* t = at(c + d);
    a0 = _mm512_add_ps(
        a0, _mm512_mul_ps(wd, _mm512_add_ps(_mm512_loadu_ps(s), _mm512_loadu_ps(t))));
    a1 = _mm512_add_ps(
        a1, _mm512_mul_ps(wd, _mm512_add_ps(_mm512_loadu_ps(s + 16), _mm512_loadu_ps(t + 16))));
  }
  _mm512_storeu_ps(dst, a0), _mm512_storeu_ps(dst + 16, a1);
}
#elif defined(PYXFER_AUG_AVX2)
template <typename At>
inline void taps_rows(At at, const float* w, int j0, int j1, float* dst) {
  const int c = (j0 + j1 - 1) / 2;
  const __m256 wc = _mm256_set1_ps(w[c]);
  const float* m = at(c);
  __m256 a0 = _mm256_mul_ps(wc, _mm256_loadu_ps(m)), a1 = _mm256_mul_ps(wc, _mm256_loadu_ps(m + 8));
  __m256 a2 = _mm256_mul_ps(wc, _mm256_loadu_ps(m + 16));
  __m256 a3 = _mm256_mul_ps(wc, _mm256_loadu_ps(m + 24));
  for (int d = 1; d <= c - j0; ++d) {
    const __m256 wd = _mm256_set1_ps(w[c - d]);
    const float* s = at(c - d);
    const float* t = at(c + d);
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(wd, _mm256_add_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(t))));
    a1 = _mm256_add_ps(
        a1, _mm256_mul_ps(wd, _mm256_add_ps(_mm256_loadu_ps(s + 8), _mm256_loadu_ps(t + 8))));
    a2 = _mm256_add_ps(
        a2, _mm256_mul_ps(wd, _mm256_add_ps(_mm256_loadu_ps(s + 16), _mm256_loadu_ps(t + 16))));
    a3 = _mm256_add_ps(
        a3, _mm256_mul_ps(wd, _mm256_add_ps(_mm256_loadu_ps(s + 24), _mm256_loadu_ps(t + 24))));
  }
  _mm256_storeu_ps(dst, a0), _mm256_storeu_ps(dst + 8, a1);
  _mm256_storeu_ps(dst + 16, a2), _mm256_storeu_ps(dst + 24, a3);
}
#else
__extension__ typedef float vf4 __attribute__((vector_size(16), aligned(4)));

template <typename At>
inline void taps_rows(At at, const float* w, int j0, int j1, float* dst) {
  const int c = (j0 + j1 - 1) / 2;
  vf4 a[8];
  for (int i = 0; i < 8; ++i) {
    vf4 v;
    __builtin_memcpy(&v, at(c) + 4 * i, sizeof v);
    a[i] = w[c] * v;
  }
  for (int d = 1; d <= c - j0; ++d) {
    const float wd = w[c - d];
    const float* s = at(c - d);
    const float* t = at(c + d);
    for (int i = 0; i < 8; ++i) {
      vf4 u, v;
      __builtin_memcpy(&u, s + 4 * i, sizeof u);
      __builtin_memcpy(&v, t + 4 * i, sizeof v);
      a[i] += wd * (u + v);
    }
  }
  __builtin_memcpy(dst, a, sizeof a);
}
#endif

#if defined(PYXFER_AUG_AVX512)
// The same sums on NV vectors of 16 (NV independent accumulator chains), lanes past `m` of the
// last vector masked off; the vertical pass (`level`) rounds straight to uint8 levels.
template <int NV, bool level, typename At>
inline void taps_wide(At at, const float* w, int j0, int j1, __mmask16 m, void* dst) {
  const int c = (j0 + j1 - 1) / 2;
  auto load = [m](const float* p, int v) {
    return v == NV - 1 ? _mm512_maskz_loadu_ps(m, p + 16 * v) : _mm512_loadu_ps(p + 16 * v);
  };
  __m512 a[NV];
  const __m512 wc = _mm512_set1_ps(w[c]);
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) a[v] = _mm512_mul_ps(wc, load(at(c), v));
  for (int d = 1; d <= c - j0; ++d) {
    const __m512 wd = _mm512_set1_ps(w[c - d]);
    const float* s = at(c - d);
    const float* t = at(c + d);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      a[v] = _mm512_add_ps(a[v], _mm512_mul_ps(wd, _mm512_add_ps(load(s, v), load(t, v))));
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const __mmask16 mv = v == NV - 1 ? m : static_cast<__mmask16>(0xFFFF);
    if (level) {  // to_u8(round_even(clamp255(a)))
      const __m512 magic = _mm512_set1_ps(12582912.f);
      __m512 r = _mm512_min_ps(_mm512_max_ps(a[v], _mm512_setzero_ps()), _mm512_set1_ps(255.f));
      r = _mm512_sub_ps(_mm512_add_ps(r, magic), magic);
      _mm_mask_storeu_epi8(static_cast<uint8_t*>(dst) + 16 * v, mv,
                           _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
    } else {
      _mm512_mask_storeu_ps(static_cast<float*>(dst) + 16 * v, mv, a[v]);
    }
  }
}

// One row of the blur: x in [0, w) in blocks of up to 256 (16 accumulators, 32 registers).
template <bool level, typename At>
inline void taps_line(At at, int64_t w, const float* kw, int j0, int j1, void* dst) {
  const int64_t size = level ? 1 : 4;
  for (int64_t x = 0; x < w; x += 256) {
    const int64_t rem = w - x < 256 ? w - x : 256;
    const int nv = static_cast<int>((rem + 15) / 16);
    const auto m = static_cast<__mmask16>(rem % 16 == 0 ? 0xFFFF : (1u << (rem % 16)) - 1);
    auto ax = [&](int j) { return at(j) + x; };
    void* d = static_cast<uint8_t*>(dst) + x * size;
    switch (nv) {
      case 1: taps_wide<1, level>(ax, kw, j0, j1, m, d); break;
      case 2: taps_wide<2, level>(ax, kw, j0, j1, m, d); break;
      case 3: taps_wide<3, level>(ax, kw, j0, j1, m, d); break;
      case 4: taps_wide<4, level>(ax, kw, j0, j1, m, d); break;
      case 5: taps_wide<5, level>(ax, kw, j0, j1, m, d); break;
      case 6: taps_wide<6, level>(ax, kw, j0, j1, m, d); break;
      case 7: taps_wide<7, level>(ax, kw, j0, j1, m, d); break;
      case 8: taps_wide<8, level>(ax, kw, j0, j1, m, d); break;
      case 9: taps_wide<9, level>(ax, kw, j0, j1, m, d); break;
      case 10: taps_wide<10, level>(ax, kw, j0, j1, m, d); break;
      case 11: taps_wide<11, level>(ax, kw, j0, j1, m, d); break;
      case 12: taps_wide<12, level>(ax, kw, j0, j1, m, d); break;
      case 13: taps_wide<13, level>(ax, kw, j0, j1, m, d); break;
      case 14: taps_wide<14, level>(ax, kw, j0, j1, m, d); break;
      case 15: taps_wide<15, level>(ax, kw, j0, j1, m, d); break;
      default: taps_wide<16, level>(ax, kw, j0, j1, m, d); break;
    }
  }
}
#elif defined(PYXFER_AUG_AVX2)
// AVX2: the same sums on NV vectors of 8 (NV <= 12 of the 16 registers), the last vector
// holding `tail` (1..8) lanes.
template <int NV, bool level, typename At>
inline void taps_wide(At at, const float* w, int j0, int j1, int tail, void* dst) {
  const int c = (j0 + j1 - 1) / 2;
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  auto load = [&](const float* p, int v) {
    return v == NV - 1 && tail < 8 ? _mm256_maskload_ps(p + 8 * v, lanes)
                                   : _mm256_loadu_ps(p + 8 * v);
  };
  __m256 a[NV];
  const __m256 wc = _mm256_set1_ps(w[c]);
#pragma GCC unroll 12
  for (int v = 0; v < NV; ++v) a[v] = _mm256_mul_ps(wc, load(at(c), v));
  for (int d = 1; d <= c - j0; ++d) {
    const __m256 wd = _mm256_set1_ps(w[c - d]);
    const float* s = at(c - d);
    const float* t = at(c + d);
#pragma GCC unroll 12
    for (int v = 0; v < NV; ++v) {
      a[v] = _mm256_add_ps(a[v], _mm256_mul_ps(wd, _mm256_add_ps(load(s, v), load(t, v))));
    }
  }
#pragma GCC unroll 12
  for (int v = 0; v < NV; ++v) {
    const bool part = v == NV - 1 && tail < 8;
    if (level) {  // to_u8(round_even(clamp255(a)))
      const __m256 magic = _mm256_set1_ps(12582912.f);
      __m256 r = _mm256_min_ps(_mm256_max_ps(a[v], _mm256_setzero_ps()), _mm256_set1_ps(255.f));
      r = _mm256_sub_ps(_mm256_add_ps(r, magic), magic);
      const __m256i q = _mm256_cvttps_epi32(r);
      const __m128i p16 =
          _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      const __m128i p8 = _mm_packus_epi16(p16, p16);
      uint8_t* o = static_cast<uint8_t*>(dst) + 8 * v;
      if (part) {
        alignas(16) uint8_t bytes[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(bytes), p8);
        for (int i = 0; i < tail; ++i) o[i] = bytes[i];
      } else {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(o), p8);
      }
    } else if (part) {
      _mm256_maskstore_ps(static_cast<float*>(dst) + 8 * v, lanes, a[v]);
    } else {
      _mm256_storeu_ps(static_cast<float*>(dst) + 8 * v, a[v]);
    }
  }
}

// One row of the blur: x in [0, w) in blocks of up to 96.
template <bool level, typename At>
inline void taps_line(At at, int64_t w, const float* kw, int j0, int j1, void* dst) {
  const int64_t size = level ? 1 : 4;
  for (int64_t x = 0; x < w; x += 96) {
    const int64_t rem = w - x < 96 ? w - x : 96;
    const int nv = static_cast<int>((rem + 7) / 8);
    const int tail = static_cast<int>(rem - 8 * (nv - 1));
    auto ax = [&](int j) { return at(j) + x; };
    void* d = static_cast<uint8_t*>(dst) + x * size;
    switch (nv) {
      case 1: taps_wide<1, level>(ax, kw, j0, j1, tail, d); break;
      case 2: taps_wide<2, level>(ax, kw, j0, j1, tail, d); break;
      case 3: taps_wide<3, level>(ax, kw, j0, j1, tail, d); break;
      case 4: taps_wide<4, level>(ax, kw, j0, j1, tail, d); break;
      case 5: taps_wide<5, level>(ax, kw, j0, j1, tail, d); break;
      case 6: taps_wide<6, level>(ax, kw, j0, j1, tail, d); break;
      case 7: taps_wide<7, level>(ax, kw, j0, j1, tail, d); break;
      case 8: taps_wide<8, level>(ax, kw, j0, j1, tail, d); break;
      case 9: taps_wide<9, level>(ax, kw, j0, j1, tail, d); break;
      case 10: taps_wide<10, level>(ax, kw, j0, j1, tail, d); break;
      case 11: taps_wide<11, level>(ax, kw, j0, j1, tail, d); break;
      default: taps_wide<12, level>(ax, kw, j0, j1, tail, d); break;
    }
  }
}
#endif

// Separable gaussian blur (reflect padding) of each uint8 plane; same float order as augment.h
// (horizontal sum over the kept taps in order, then vertical), rounded half to even. The
// horizontal rows live in a ring of R >= 2 D + 2 rows (D the kept radius) that fits the L1 cache,
// each computed just before the first output row that reads it (rows of the plane above the
// current output row are overwritten only after their horizontal pass).
PYXFER_AUG_STAGE
void blur_u8(uint8_t* img, int64_t c, int64_t h, int64_t w, int k, const float* kw,
             const int32_t* xi, const int32_t* yi, float* row, float* tmp, float* acc,
             const float** rows) {
  const int half = k / 2;
  const int j0 = gaussian_trim(k, kw), j1 = k - j0, radius = half - j0;
  const int64_t n = h * w, wp = w + 2 * half;
  const int64_t wb = w - w % kBlock;
  int64_t ring = 1;
  while (ring < 2 * radius + 2) ring *= 2;
  const int64_t mask = ring < h ? ring - 1 : -1;  // -1: the whole plane, row r at r
  auto slot = [&](int64_t r) { return tmp + (r & mask) * w; };
  // The padded float copy of a plane row, filled one row ahead into the other half of `row`, so
  // that the vector loads of a row never wait on the stores that just wrote it.
  auto fill = [&](const uint8_t* src, float* dst) {
    for (int64_t i = 0; i < half; ++i) dst[i] = static_cast<float>(src[xi[i]]);
#if defined(PYXFER_AUG_AVX512)
    for (int64_t x = 0; x < w; x += 16) {
      const __mmask16 m = tail16(w - x);
      _mm512_mask_storeu_ps(dst + half + x, m, level16(src + x, m));
    }
#else
    for (int64_t x = 0; x < w; ++x) dst[half + x] = static_cast<float>(src[x]);
#endif
    for (int64_t i = half + w; i < wp; ++i) dst[i] = static_cast<float>(src[xi[i]]);
  };
  for (int64_t ch = 0; ch < c; ++ch) {
    uint8_t* p = img + ch * n;
    int64_t done = 0;  // horizontal rows computed so far
    fill(p, row);
    for (int64_t y = 0; y < h; ++y) {
      for (const int64_t need = y + radius + 1 < h ? y + radius + 1 : h; done < need; ++done) {
        const float* cur = row + (done & 1) * wp;
        if (done + 1 < h) fill(p + (done + 1) * w, row + ((done + 1) & 1) * wp);
        float* t = slot(done);
#if defined(PYXFER_AUG_AVX2)
        taps_line<false>([cur](int j) { return cur + j; }, w, kw, j0, j1, t);
        continue;
#endif
        for (int64_t x = 0; x < wb; x += kBlock) {
          taps_rows([cur, x](int j) { return cur + x + j; }, kw, j0, j1, t + x);
        }
        for (int64_t x = wb; x < w; ++x) {
          const float* r = cur + x + half;
          float a = kw[half] * r[0];
          for (int d = 1; d <= radius; ++d) a += kw[half - d] * (r[-d] + r[d]);
          t[x] = a;
        }
      }
      for (int j = j0; j < j1; ++j) rows[j] = slot(yi[y + j]);
      uint8_t* o = p + y * w;
#if defined(PYXFER_AUG_AVX2)
      taps_line<true>([rows](int j) { return rows[j]; }, w, kw, j0, j1, o);
      (void)acc, (void)wb;
      continue;
#endif
      for (int64_t x = 0; x < wb; x += kBlock) {
        taps_rows([rows, x](int j) { return rows[j] + x; }, kw, j0, j1, acc + x);
      }
      for (int64_t x = wb; x < w; ++x) {
        float a = kw[half] * rows[half][x];
        for (int d = 1; d <= radius; ++d) {
          a += kw[half - d] * (rows[half - d][x] + rows[half + d][x]);
        }
        acc[x] = a;
      }
      for (int64_t x = 0; x < w; ++x) o[x] = to_u8(round_even(clamp255(acc[x])));
    }
  }
}

PYXFER_AUG_STAGE
void solarize_u8(uint8_t* img, int64_t total, float thr) {
#if defined(PYXFER_AUG_AVX512)
  if (has_vbmi()) {
    alignas(64) uint8_t lut[256];
    for (int v = 0; v < 256; ++v) {
      lut[v] = static_cast<float>(v) >= thr ? static_cast<uint8_t>(255 - v)
                                            : static_cast<uint8_t>(v);
    }
    lut_apply_vbmi(img, total, lut);
    return;
  }
#endif
  for (int64_t i = 0; i < total; ++i) {
    const uint8_t v = img[i];
    img[i] = static_cast<float>(v) >= thr ? static_cast<uint8_t>(255 - v) : v;
  }
}

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
#else
  resample_rows(im.data, im.w, c, top, left, s.ax, s.r0, s.r1, ow, flip, s.tmp8);
#endif
#if defined(PYXFER_AUG_AVX2)
  if (!s.ay.identity) {
    resample_cols_avx2(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
  } else {
    resample_cols(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
  }
#else
  resample_cols(s.tmp8, c, s.r1 - s.r0, s.r0, s.ay, oh, ow, s.iacc, img);
#endif
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
  if (p.dtype == OutDType::Float32) {
    store_f32(img, p, row, static_cast<float*>(out));
  } else {
    store_f16(img, p, row, static_cast<uint16_t*>(out));
  }
}

}  // namespace pyxfer::cpu::PYXFER_AUG_NS
