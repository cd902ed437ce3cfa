// Blur stage of the quantized augmentation kernel: separable gaussian blur with reflect padding,
// rounded back to uint8 levels. Vector-extension blocks of 32 columns (baseline), or up to 12
// (AVX2) / 16 (AVX-512) accumulator registers per row; AVX2 runs the vertical pass two output
// rows at a time, sharing their loads.
//
// Included only by augment_kernel.h (see there), once per instruction-set copy of the kernel:
// augment.cpp (baseline), augment_avx2.cpp (PYXFER_AUG_AVX2), augment_avx512.cpp
// (PYXFER_AUG_AVX2 and PYXFER_AUG_AVX512) and augment_neon.cpp (PYXFER_AUG_NEON); every function
// lives in that copy's namespace.
#ifndef PYXFER_AUG_NS
#error "include augment_kernel.h, not augment_kernel_blur.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

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
    if (level) {  // to_u8(round_even(clamp255(a))): the sums are >= 0 (positive weights
                  // times levels), the convert rounds half to even (the default rounding) and
                  // the unsigned narrowing saturates what rounds above 255 to 255
      _mm_mask_storeu_epi8(static_cast<uint8_t*>(dst) + 16 * v, mv,
                           _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(a[v])));
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
// to_u8(round_even(clamp255(a))) of 8 vertical sums, in the low 8 bytes. The sums are >= 0
// (positive weights times levels) and at most 255 times the weights' sum (1 within rounding):
// adding and subtracting 1.5 * 2^23 rounds them half to even, and the packs saturate what
// rounds above 255 to 255, as the clamp would. (vcvtps2dq, which rounds the same way in one
// instruction, made the AVX2 blur markedly slower on the machine measured.)
__attribute__((always_inline)) inline __m128i round_levels8(__m256 a) {
  const __m256 magic = _mm256_set1_ps(12582912.f);
  const __m256i q = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(a, magic), magic));
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  return _mm_packus_epi16(p16, p16);
}

// The first n (1..8) of those levels to o.
inline void store_levels8(uint8_t* o, __m256 sums, int n) {
  const __m128i p8 = round_levels8(sums);
  if (n < 8) {
    alignas(16) uint8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), p8);
    for (int i = 0; i < n; ++i) o[i] = bytes[i];
  } else {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(o), p8);
  }
}

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
      store_levels8(static_cast<uint8_t*>(dst) + 8 * v, a[v], part ? tail : 8);
    } else if (part) {
      _mm256_maskstore_ps(static_cast<float*>(dst) + 8 * v, lanes, a[v]);
    } else {
      _mm256_storeu_ps(static_cast<float*>(dst) + 8 * v, a[v]);
    }
  }
}

// The vertical sums of two output rows at once: p[j0 .. j1) are output row y's rows, p[j0 + 1 ..
// j1] row y + 1's. Step d of row y adds p[c - d] + p[c + d], of row y + 1 p[c + 1 - d] +
// p[c + 1 + d]; p[c + d] and p[c + 1 - d] were loaded at step d - 1, so each step loads two
// vectors for the two rows' sums (half the loads of a row at a time), each row's sum in its own
// order as in taps_wide. NV <= 3 vectors of 8 (4 registers each), the last holding `tail`
// (1..8) lanes.
template <int NV>
inline void taps_pair(const float* const* p, int64_t x, const float* w, int j0, int j1, int tail,
                      uint8_t* dst0, uint8_t* dst1) {
  const int c = (j0 + j1 - 1) / 2;
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  auto load = [&](const float* row, int v) {
    return v == NV - 1 && tail < 8 ? _mm256_maskload_ps(row + x + 8 * v, lanes)
                                   : _mm256_loadu_ps(row + x + 8 * v);
  };
  __m256 a[NV], b[NV], left[NV], right[NV];
  const __m256 wc = _mm256_set1_ps(w[c]);
#pragma GCC unroll 3
  for (int v = 0; v < NV; ++v) {
    left[v] = load(p[c], v), right[v] = load(p[c + 1], v);
    a[v] = _mm256_mul_ps(wc, left[v]), b[v] = _mm256_mul_ps(wc, right[v]);
  }
  for (int d = 1; d <= c - j0; ++d) {
    const __m256 wd = _mm256_set1_ps(w[c - d]);
    const float* lo = p[c - d];
    const float* hi = p[c + 1 + d];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      const __m256 l = load(lo, v), r = load(hi, v);
      a[v] = _mm256_add_ps(a[v], _mm256_mul_ps(wd, _mm256_add_ps(l, right[v])));
      b[v] = _mm256_add_ps(b[v], _mm256_mul_ps(wd, _mm256_add_ps(left[v], r)));
      left[v] = l, right[v] = r;
    }
  }
#pragma GCC unroll 3
  for (int v = 0; v < NV; ++v) {
    const bool part = v == NV - 1 && tail < 8;
    store_levels8(dst0 + x + 8 * v, a[v], part ? tail : 8);  // to_u8(round_even(clamp255))
    store_levels8(dst1 + x + 8 * v, b[v], part ? tail : 8);
  }
}

// Two output rows of the vertical pass: x in [0, w) in blocks of up to 24.
inline void taps_line_pair(const float* const* p, int64_t w, const float* kw, int j0, int j1,
                           uint8_t* dst0, uint8_t* dst1) {
  for (int64_t x = 0; x < w; x += 24) {
    const int64_t rem = w - x < 24 ? w - x : 24;
    const int nv = static_cast<int>((rem + 7) / 8);
    const int tail = static_cast<int>(rem - 8 * (nv - 1));
    switch (nv) {
      case 1: taps_pair<1>(p, x, kw, j0, j1, tail, dst0, dst1); break;
      case 2: taps_pair<2>(p, x, kw, j0, j1, tail, dst0, dst1); break;
      default: taps_pair<3>(p, x, kw, j0, j1, tail, dst0, dst1); break;
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
#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
      const bool pair = y + 1 < h;  // two output rows at once (taps_line_pair)
#else
      constexpr bool pair = false;
#endif
      const int64_t ahead = y + radius + (pair ? 2 : 1);
      for (const int64_t need = ahead < h ? ahead : h; done < need; ++done) {
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
      uint8_t* o = p + y * w;
#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
      if (pair) {
        for (int j = j0; j <= j1; ++j) rows[j] = slot(yi[y + j]);
        taps_line_pair(rows, w, kw, j0, j1, o, o + w);
        ++y;
        continue;
      }
#endif
      for (int j = j0; j < j1; ++j) rows[j] = slot(yi[y + j]);
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

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
