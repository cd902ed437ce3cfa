// Colour stage of the quantized augmentation kernel: the jitter ops (brightness, contrast,
// saturation, hue), grayscale and solarize on planar uint8 levels. Scalar loops, AVX2, AVX-512
// and NEON intrinsics, and 256-level tables applied with VBMI byte permutes where the CPU has
// them (AVX-512 copy) or with NEON TBL lookups (NEON copy).
//
// Included only by augment_kernel.h (see there), once per instruction-set copy of the kernel:
// augment.cpp (baseline), augment_avx2.cpp (PYXFER_AUG_AVX2), augment_avx512.cpp
// (PYXFER_AUG_AVX2 and PYXFER_AUG_AVX512) and augment_neon.cpp (PYXFER_AUG_NEON); every function
// lives in that copy's namespace.
#ifndef PYXFER_AUG_NS
#error "include augment_kernel.h, not augment_kernel_colour.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

#if defined(PYXFER_AUG_AVX512)
// Per-level ops (brightness, contrast, solarize) map each of the 256 levels through the op's own
// scalar expression once, then the image through that table: 64 bytes per two VBMI byte
// permutes where the CPU has them (the table holds exactly the values the loop would compute).
#define PYXFER_VBMI_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2,avx512vbmi")))

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

#if defined(PYXFER_AUG_AVX2)
// 8 levels as float.
inline __m256 level8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// floor_pos(gray_of(r, g, b)) as int32 lanes (the fused multiply-adds of gray_of).
inline __m256i gray8(__m256 r, __m256 g, __m256 b) {
  const __m256 rg = _mm256_fmadd_ps(g, _mm256_set1_ps(0.587f),
                                    _mm256_mul_ps(r, _mm256_set1_ps(0.2989f)));
  return _mm256_cvttps_epi32(_mm256_fmadd_ps(b, _mm256_set1_ps(0.114f), rg));
}
// Four vectors of 8 int32 lanes (levels 0-7, 8-15, 16-23, 24-31) as 32 bytes: the packs
// interleave the 128-bit lanes (4-byte groups 0 2 4 6 1 3 5 7), put back by one permute. The
// packs saturate lanes in [-2^15, 2^15) to [0, 255], so to_u8(floor_pos(clamp255(x))) of such an
// x is its truncating convert alone: x < 0 gives a lane <= 0, x >= 255 one >= 255. The blends
// below (x * f, plus (1 - f) times a level) stay in that range for |f| <= kPackable.
constexpr float kPackable = 60.f;  // 255 * (60 + 61) < 2^15

template <bool B>
struct Flag {  // a compile-time choice passed to a generic lambda
  static constexpr bool value = B;
};

inline void store32(uint8_t* p, __m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  const __m256i bytes =
      _mm256_packus_epi16(_mm256_packus_epi32(v0, v1), _mm256_packus_epi32(v2, v3));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Brightness and contrast without VBMI: to_u8(floor_pos(clamp255(v * f))) for brightness,
// to_u8(blend(v, mean, f, 1 - f, true)) for contrast, on 32 levels per step, each lane the
// scalar expression's float operations. (Measured faster than the 256-level table through 16
// vpshufb and a 15-blend tree, and than gathers: the table costs 31 shuffle-port operations per
// 32 bytes.)
template <bool contrast, bool clamp>
void affine_levels_avx2(uint8_t* img, int64_t total, float f, float mean, float omf) {
  const __m256 vf = _mm256_set1_ps(f), vm = _mm256_set1_ps(mean), vo = _mm256_set1_ps(omf);
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.f);
  auto eight = [&](const uint8_t* p) {  // without `clamp`, clamped by store32's packs
    __m256 x = _mm256_mul_ps(level8(p), vf);
    if (contrast) x = _mm256_fmadd_ps(vm, vo, x);
    if (clamp) x = _mm256_min_ps(_mm256_max_ps(x, zero), top);
    return _mm256_cvttps_epi32(x);
  };
  int64_t i = 0;
  for (; i + 32 <= total; i += 32) {
    uint8_t* p = img + i;
    store32(p, eight(p), eight(p + 8), eight(p + 16), eight(p + 24));
  }
  for (; i < total; ++i) {
    const auto v = static_cast<float>(img[i]);
    img[i] = to_u8(contrast ? blend(v, mean, f, omf, true) : floor_pos(clamp255(v * f)));
  }
}
#endif

#if defined(PYXFER_AUG_NEON)
// Per-level ops (brightness, contrast, solarize) map each of the 256 levels through the op's own
// scalar expression once, then the image through that table, 16 bytes per four TBL lookups of
// 64 table bytes each (an index past a lookup's 64 bytes gives 0 there, so the four OR together).
PYXFER_AUG_STAGE
void lut_apply_neon(uint8_t* img, int64_t total, const uint8_t* lut) {
  uint8x16x4_t t[4];
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 4; ++j) t[k].val[j] = vld1q_u8(lut + 64 * k + 16 * j);
  }
  const uint8x16_t step = vdupq_n_u8(64);
  int64_t i = 0;
  for (; i + 16 <= total; i += 16) {
    uint8x16_t idx = vld1q_u8(img + i);
    uint8x16_t v = vqtbl4q_u8(t[0], idx);
    for (int k = 1; k < 4; ++k) {
      idx = vsubq_u8(idx, step);
      v = vorrq_u8(v, vqtbl4q_u8(t[k], idx));
    }
    vst1q_u8(img + i, v);
  }
  for (; i < total; ++i) img[i] = lut[img[i]];
}

// floor_pos(gray_of(r, g, b)) as int32 lanes (the fused multiply-adds of gray_of).
inline int32x4_t gray4(float32x4_t r, float32x4_t g, float32x4_t b) {
  const float32x4_t rg = vfmaq_n_f32(vmulq_n_f32(r, 0.2989f), g, 0.587f);
  return vcvtq_s32_f32(vfmaq_n_f32(rg, b, 0.114f));
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
#if defined(PYXFER_AUG_NEON)
  uint8_t lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = to_u8(floor_pos(clamp255(static_cast<float>(v) * f)));
  lut_apply_neon(img, total, lut);
#elif defined(PYXFER_AUG_AVX2)
  if (f <= kPackable && f >= -kPackable) {
    affine_levels_avx2<false, false>(img, total, f, 0.f, 0.f);
  } else {
    affine_levels_avx2<false, true>(img, total, f, 0.f, 0.f);
  }
#else
  for (int64_t i = 0; i < total; ++i) {
    img[i] = to_u8(floor_pos(clamp255(static_cast<float>(img[i]) * f)));
  }
#endif
}

#if defined(PYXFER_AUG_AVX512)
// floor_pos(gray_of(r, g, b)) as int32 lanes (the fused multiply-adds of gray_of).
inline __m512i gray16(__m512 r, __m512 g, __m512 b) {
  const __m512 rg = _mm512_fmadd_ps(g, _mm512_set1_ps(0.587f),
                                    _mm512_mul_ps(r, _mm512_set1_ps(0.2989f)));
  return _mm512_cvttps_epi32(_mm512_fmadd_ps(b, _mm512_set1_ps(0.114f), rg));
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
#if defined(PYXFER_AUG_NEON)
    int64x2_t acc = vdupq_n_s64(0);  // pairwise widening adds: no int32 overflow
    for (; i + 16 <= n; i += 16) {
      float32x4_t rf[4], gf[4], bf[4];
      levels16(r + i, rf), levels16(g + i, gf), levels16(b + i, bf);
      for (int k = 0; k < 4; ++k) acc = vpadalq_s32(acc, gray4(rf[k], gf[k], bf[k]));
    }
    sum += vaddvq_s64(acc);
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
  const float omf = static_cast<float>(1.0 - static_cast<double>(f));
#if defined(PYXFER_AUG_AVX512)
  if (has_vbmi()) {
    alignas(64) uint8_t lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = to_u8(blend(static_cast<float>(v), mean, f, omf, true));
    lut_apply_vbmi(img, c * n, lut);
    return;
  }
#endif
#if defined(PYXFER_AUG_NEON)
  uint8_t lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = to_u8(blend(static_cast<float>(v), mean, f, omf, true));
  lut_apply_neon(img, c * n, lut);
#elif defined(PYXFER_AUG_AVX2)
  if (f <= kPackable && f >= -kPackable) {
    affine_levels_avx2<true, false>(img, c * n, f, mean, omf);
  } else {
    affine_levels_avx2<true, true>(img, c * n, f, mean, omf);
  }
#else
  for (int64_t i = 0; i < c * n; ++i) img[i] = to_u8(blend(img[i], mean, f, omf, true));
#endif
}

PYXFER_AUG_STAGE
void saturation_u8(uint8_t* img, int64_t n, float f) {
  uint8_t *r = img, *g = img + n, *b = img + 2 * n;
  const float omf = static_cast<float>(1.0 - static_cast<double>(f));
#if defined(PYXFER_AUG_AVX512)
  {  // blend(x, gray, f, 1 - f) = floor(clamp255(fma(gray, 1 - f, x * f)))
    const __m512 vf = _mm512_set1_ps(f), vo = _mm512_set1_ps(omf);
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.f);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = tail16(n - i);
      const __m512 rf = level16(r + i, m), gf = level16(g + i, m), bf = level16(b + i, m);
      const __m512 gray = _mm512_cvtepi32_ps(gray16(rf, gf, bf));
      auto out = [&](uint8_t* p, __m512 x) {
        const __m512 v = _mm512_fmadd_ps(gray, vo, _mm512_mul_ps(x, vf));
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
  auto blocks = [&](auto clamp) {
    const __m256 vf = _mm256_set1_ps(f), vo = _mm256_set1_ps(omf);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.f);
    for (; i + 32 <= n; i += 32) {  // four groups of 8 pixels, 32 bytes per plane store
      __m256i ro[4], go[4], bo[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t at = i + 8 * k;
        const __m256 rf = level8(r + at), gf = level8(g + at), bf = level8(b + at);
        const __m256 gray = _mm256_cvtepi32_ps(gray8(rf, gf, bf));
        auto out = [&](__m256 x) {  // without `clamp`, clamped by store32's packs
          __m256 v = _mm256_fmadd_ps(gray, vo, _mm256_mul_ps(x, vf));
          if (decltype(clamp)::value) v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
          return _mm256_cvttps_epi32(v);
        };
        ro[k] = out(rf), go[k] = out(gf), bo[k] = out(bf);
      }
      store32(r + i, ro[0], ro[1], ro[2], ro[3]);
      store32(g + i, go[0], go[1], go[2], go[3]);
      store32(b + i, bo[0], bo[1], bo[2], bo[3]);
    }
  };
  if (f <= kPackable && f >= -kPackable) {
    blocks(Flag<false>{});
  } else {
    blocks(Flag<true>{});
  }
#endif
#if defined(PYXFER_AUG_NEON)
  {  // blend(x, gray, f, 1 - f) = floor(clamp255(fma(gray, 1 - f, x * f))), 16 pixels per step
    const float32x4_t zero = vdupq_n_f32(0.f), top = vdupq_n_f32(255.f);
    auto out = [&](float32x4_t x, float32x4_t gray) {
      const float32x4_t v = vfmaq_n_f32(vmulq_n_f32(x, f), gray, omf);
      return vcvtq_s32_f32(vminq_f32(vmaxq_f32(v, zero), top));
    };
    for (; i + 16 <= n; i += 16) {
      float32x4_t rf[4], gf[4], bf[4];
      levels16(r + i, rf), levels16(g + i, gf), levels16(b + i, bf);
      int32x4_t ro[4], go[4], bo[4];
      for (int k = 0; k < 4; ++k) {
        const float32x4_t gray = vcvtq_f32_s32(gray4(rf[k], gf[k], bf[k]));
        ro[k] = out(rf[k], gray), go[k] = out(gf[k], gray), bo[k] = out(bf[k], gray);
      }
      vst1q_u8(r + i, bytes16(ro)), vst1q_u8(g + i, bytes16(go)), vst1q_u8(b + i, bytes16(bo));
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
  return _mm512_mul_ps(v, _mm512_set1_ps(1.f / 255.f));
}
inline __m512 hue_trunc(__m512 v) { return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(v)); }
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
  // hue_shift's clamps to [0, 1] change nothing: s = cr / maxc <= 1 (cr <= maxc) and f is in
  // [0, 1), so s * f <= s; 1 - s * f and 1 - s lie in [0, 1]; and s * f + (1 - s) rounds to at
  // most 1 (the rounded 1 - s exceeds 1 - s by at most 2^-24 relative, and a sum up to
  // 1 + 2^-24 rounds to 1, ties to even); times v = maxc in [0, 1] stays in [0, 1]
  const __m512 pq = _mm512_mul_ps(_mm512_sub_ps(one, sxf), v);
  const __m512 pt = _mm512_mul_ps(_mm512_add_ps(sxf, oms), v);
  const __m512 pp = _mm512_mul_ps(oms, v);
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
// AVX2: floors are vroundps (exact: the same integer-valued float as floor_pos / floor_any on
// these values), and the output channels are picked by the bits of the sector index in a blend
// tree (8 blends instead of 6 compares and 9 blends).
constexpr int64_t kHueStep = 32;
inline __m256 hue_level(const uint8_t* p) {
  const __m256 v = _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  return _mm256_mul_ps(v, _mm256_set1_ps(1.f / 255.f));
}
inline __m256i hue_out(__m256 v) {
  return _mm256_cvttps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(255.999f)));
}
// vblendvps as written: GCC 12 turns the intrinsic into a select on `m < 0` and rebuilds that
// mask with an extra compare per blend, although every mask here has whole-lane signs.
inline __m256 sel(__m256 a, __m256 b, __m256 m) {
  __m256 r;
  asm("vblendvps %3, %2, %1, %0" : "=x"(r) : "x"(a), "x"(b), "x"(m));
  return r;
}
constexpr int kTrunc = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;

// Eight pixels into int32 lanes out[0], out[4], out[8] (R, G, B).
inline void hue8(const uint8_t* r8, const uint8_t* g8, const uint8_t* b8, __m256 hue,
                 __m256i* out) {
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  const __m256 r = hue_level(r8), g = hue_level(g8), b = hue_level(b8);
  const __m256 maxc = _mm256_max_ps(r, _mm256_max_ps(g, b));
  const __m256 minc = _mm256_min_ps(r, _mm256_min_ps(g, b));
  const __m256 cr = _mm256_sub_ps(maxc, minc);
  // eqc ? 1 : maxc and eqc ? 1 : cr as maxima with the smallest normal float: where eqc, cr and
  // every maxc - n are +0, and +0 / FLT_MIN is +0 as +0 / 1; elsewhere cr >= 1 / 255
  const __m256 tiny = _mm256_set1_ps(1.17549435e-38f);
  const __m256 s = _mm256_div_ps(cr, _mm256_max_ps(maxc, tiny));
  const __m256 div = _mm256_max_ps(cr, tiny);
  const __m256 mr = _mm256_cmp_ps(maxc, r, _CMP_EQ_OQ);
  const __m256 mg = _mm256_cmp_ps(maxc, g, _CMP_EQ_OQ);  // read only where !mr
  const __m256 n1 = sel(sel(g, r, mg), b, mr);
  const __m256 n2 = sel(sel(r, b, mg), g, mr);
  const __m256 add = sel(sel(_mm256_set1_ps(4.f), _mm256_set1_ps(2.f), mg), zero, mr);
  const __m256 d1 = _mm256_div_ps(_mm256_sub_ps(maxc, n1), div);
  const __m256 d2 = _mm256_div_ps(_mm256_sub_ps(maxc, n2), div);
  __m256 h = _mm256_sub_ps(_mm256_add_ps(d1, add), d2);
  h = _mm256_add_ps(_mm256_mul_ps(h, _mm256_set1_ps(1.f / 6.f)), one);
  h = _mm256_sub_ps(h, _mm256_round_ps(h, kTrunc));  // h > 0
  h = _mm256_add_ps(h, hue);
  h = _mm256_sub_ps(h, _mm256_round_ps(h, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
  const __m256 v = maxc;
  const __m256 h6 = _mm256_mul_ps(h, _mm256_set1_ps(6.f));
  const __m256 fi = _mm256_round_ps(h6, kTrunc);
  const __m256 f = _mm256_sub_ps(h6, fi);
  __m256i i = _mm256_cvttps_epi32(fi);  // 0..6, 6 (h6 rounded up to 6) meaning 0
  i = _mm256_sub_epi32(i, _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(5)),
                                           _mm256_set1_epi32(6)));
  const __m256 sxf = _mm256_mul_ps(s, f);
  const __m256 oms = _mm256_sub_ps(one, s);
  // hue_shift's clamps to [0, 1] change nothing here (see the AVX-512 hue_block)
  const __m256 pq = _mm256_mul_ps(_mm256_sub_ps(one, sxf), v);
  const __m256 pt = _mm256_mul_ps(_mm256_add_ps(sxf, oms), v);
  const __m256 pp = _mm256_mul_ps(oms, v);
  // i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q); blendv reads bit 31, where
  // each bit of i is shifted
  const __m256 i0 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 31));
  const __m256 i1 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 30));
  const __m256 i2 = _mm256_castsi256_ps(_mm256_slli_epi32(i, 29));
  const __m256 qv = sel(v, pq, i0);  // ro of i = 0, 1; go of 2, 3; bo of 4, 5
  const __m256 vt = sel(pt, v, i0);  // ro of i = 4, 5; go of 0, 1; bo of 2, 3
  out[0] = hue_out(sel(sel(qv, pp, i1), vt, i2));
  out[4] = hue_out(sel(sel(vt, qv, i1), pp, i2));
  out[8] = hue_out(sel(sel(pp, vt, i1), qv, i2));
}

// 32 pixels, each plane written with one 32-byte store.
inline void hue_block(uint8_t* r8, uint8_t* g8, uint8_t* b8, __m256 hue) {
  __m256i out[12];
  for (int k = 0; k < 4; ++k) hue8(r8 + 8 * k, g8 + 8 * k, b8 + 8 * k, hue, out + k);
  store32(r8, out[0], out[1], out[2], out[3]);
  store32(g8, out[4], out[5], out[6], out[7]);
  store32(b8, out[8], out[9], out[10], out[11]);
}
#elif defined(PYXFER_AUG_NEON)
constexpr int64_t kHueStep = 16;
inline float32x4_t hue_trunc(float32x4_t v) { return vcvtq_f32_s32(vcvtq_s32_f32(v)); }
inline float32x4_t hue_clamp01(float32x4_t v) {
  return vminq_f32(vmaxq_f32(v, vdupq_n_f32(0.f)), vdupq_n_f32(1.f));
}

// Four pixels (levels as float) into int32 lanes out[0], out[4], out[8] (R, G, B); the
// operations of the AVX-512 hue_block, selects as bit selects.
inline void hue4(float32x4_t r8, float32x4_t g8, float32x4_t b8, float32x4_t hue,
                 int32x4_t* out) {
  const float32x4_t one = vdupq_n_f32(1.f), zero = vdupq_n_f32(0.f);
  const float32x4_t r = vmulq_n_f32(r8, 1.f / 255.f), g = vmulq_n_f32(g8, 1.f / 255.f);
  const float32x4_t b = vmulq_n_f32(b8, 1.f / 255.f);
  const float32x4_t maxc = vmaxq_f32(r, vmaxq_f32(g, b));
  const float32x4_t minc = vminq_f32(r, vminq_f32(g, b));
  const uint32x4_t eqc = vceqq_f32(maxc, minc);
  const float32x4_t cr = vsubq_f32(maxc, minc);
  const float32x4_t s = vdivq_f32(cr, vbslq_f32(eqc, one, maxc));
  const float32x4_t div = vbslq_f32(eqc, one, cr);
  const uint32x4_t mr = vceqq_f32(maxc, r);
  const uint32x4_t mg = vbicq_u32(vceqq_f32(maxc, g), mr);
  // mr: bc - gc; mg: (rc + 2) - bc; otherwise (gc + 4) - rc
  const float32x4_t n1 = vbslq_f32(mr, b, vbslq_f32(mg, r, g));
  const float32x4_t n2 = vbslq_f32(mr, g, vbslq_f32(mg, b, r));
  const float32x4_t add = vbslq_f32(mr, zero, vbslq_f32(mg, vdupq_n_f32(2.f), vdupq_n_f32(4.f)));
  const float32x4_t d1 = vdivq_f32(vsubq_f32(maxc, n1), div);
  const float32x4_t d2 = vdivq_f32(vsubq_f32(maxc, n2), div);
  float32x4_t h = vsubq_f32(vaddq_f32(d1, add), d2);
  h = vaddq_f32(vmulq_n_f32(h, 1.f / 6.f), one);
  h = vsubq_f32(h, hue_trunc(h));
  h = vaddq_f32(h, hue);
  float32x4_t t = hue_trunc(h);
  t = vbslq_f32(vcgtq_f32(t, h), vsubq_f32(t, one), t);
  h = vsubq_f32(h, t);
  const float32x4_t v = maxc;
  const float32x4_t h6 = vmulq_n_f32(h, 6.f);
  int32x4_t i = vcvtq_s32_f32(h6);
  const float32x4_t f = vsubq_f32(h6, vcvtq_f32_s32(i));
  const int32x4_t six = vdupq_n_s32(6);
  i = vbslq_s32(vcgeq_s32(i, six), vsubq_s32(i, six), i);
  const float32x4_t sxf = vmulq_f32(s, f);
  const float32x4_t oms = vsubq_f32(one, s);
  const float32x4_t pq = hue_clamp01(vmulq_f32(vsubq_f32(one, sxf), v));
  const float32x4_t pt = hue_clamp01(vmulq_f32(vaddq_f32(sxf, oms), v));
  const float32x4_t pp = hue_clamp01(vmulq_f32(oms, v));
  const uint32x4_t i1 = vceqq_s32(i, vdupq_n_s32(1)), i2 = vceqq_s32(i, vdupq_n_s32(2));
  const uint32x4_t i3 = vceqq_s32(i, vdupq_n_s32(3)), i4 = vceqq_s32(i, vdupq_n_s32(4));
  const uint32x4_t i5 = vceqq_s32(i, vdupq_n_s32(5));
  const uint32x4_t i0 = vmvnq_u32(vorrq_u32(vorrq_u32(i1, i2), vorrq_u32(vorrq_u32(i3, i4), i5)));
  // i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
  const float32x4_t ro = vbslq_f32(i4, pt, vbslq_f32(vorrq_u32(i2, i3), pp, vbslq_f32(i1, pq, v)));
  const float32x4_t go = vbslq_f32(vorrq_u32(i4, i5), pp, vbslq_f32(i3, pq, vbslq_f32(i0, pt, v)));
  const float32x4_t bo = vbslq_f32(i5, pq, vbslq_f32(i2, pt, vbslq_f32(vorrq_u32(i0, i1), pp, v)));
  out[0] = vcvtq_s32_f32(vmulq_n_f32(ro, 255.999f));
  out[4] = vcvtq_s32_f32(vmulq_n_f32(go, 255.999f));
  out[8] = vcvtq_s32_f32(vmulq_n_f32(bo, 255.999f));
}

inline void hue_block(uint8_t* r8, uint8_t* g8, uint8_t* b8, float32x4_t hue) {
  float32x4_t rf[4], gf[4], bf[4];
  levels16(r8, rf), levels16(g8, gf), levels16(b8, bf);
  int32x4_t out[12];
  for (int k = 0; k < 4; ++k) hue4(rf[k], gf[k], bf[k], hue, out + k);
  vst1q_u8(r8, bytes16(out)), vst1q_u8(g8, bytes16(out + 4)), vst1q_u8(b8, bytes16(out + 8));
}
#endif

PYXFER_AUG_STAGE
void hue_u8(uint8_t* __restrict r, uint8_t* __restrict g, uint8_t* __restrict b, int64_t n,
            float h) {
#if defined(PYXFER_AUG_AVX2) || defined(PYXFER_AUG_NEON)
  int64_t i = 0;
#if defined(PYXFER_AUG_AVX512)
  const __m512 hue = _mm512_set1_ps(h);
#elif defined(PYXFER_AUG_NEON)
  const float32x4_t hue = vdupq_n_f32(h);
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
  int64_t i = 0;
#if defined(PYXFER_AUG_AVX2) && !defined(PYXFER_AUG_AVX512)
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t at = i + 8 * k;
      v[k] = gray8(level8(r + at), level8(g + at), level8(b + at));
    }
    store32(r + i, v[0], v[1], v[2], v[3]), store32(g + i, v[0], v[1], v[2], v[3]);
    store32(b + i, v[0], v[1], v[2], v[3]);
  }
#endif
#if defined(PYXFER_AUG_NEON)
  for (; i + 16 <= n; i += 16) {
    float32x4_t rf[4], gf[4], bf[4];
    levels16(r + i, rf), levels16(g + i, gf), levels16(b + i, bf);
    int32x4_t v[4];
    for (int k = 0; k < 4; ++k) v[k] = gray4(rf[k], gf[k], bf[k]);
    const uint8x16_t bytes = bytes16(v);
    vst1q_u8(r + i, bytes), vst1q_u8(g + i, bytes), vst1q_u8(b + i, bytes);
  }
#endif
  for (; i < n; ++i) {
    const uint8_t v = to_u8(floor_pos(gray_of(static_cast<float>(r[i]), static_cast<float>(g[i]),
                                              static_cast<float>(b[i]))));
    r[i] = v, g[i] = v, b[i] = v;
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
#if defined(PYXFER_AUG_NEON)
  uint8_t lut[256];
  for (int v = 0; v < 256; ++v) {
    lut[v] = static_cast<float>(v) >= thr ? static_cast<uint8_t>(255 - v) : static_cast<uint8_t>(v);
  }
  lut_apply_neon(img, total, lut);
  return;
#endif
  for (int64_t i = 0; i < total; ++i) {
    const uint8_t v = img[i];
    img[i] = static_cast<float>(v) >= thr ? static_cast<uint8_t>(255 - v) : v;
  }
}

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
