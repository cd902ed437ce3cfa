#include "pyxfer/normalize.h"

#include "neon_ops.h"
#include "pyxfer/half.h"
#include "pyxfer/parallel.h"
#include "simd_env.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#define PYXFER_NORMALIZE_NEON 1
#endif

namespace pyxfer {
namespace {

#if defined(PYXFER_NORMALIZE_NEON)
using namespace cpu::neon_ops;

inline void affine16(uint8x16_t levels, float scale, float shift, float32x4_t v[4]) {
  levels16(levels, v);
  for (int k = 0; k < 4; ++k) v[k] = affine4(v[k], scale, shift);
}
inline void store16(float* d, const float32x4_t v[4]) {
  for (int k = 0; k < 4; ++k) vst1q_f32(d + 4 * k, v[k]);
}
inline void store16(uint16_t* d, const float32x4_t v[4]) {
  vst1q_u16(d, half8(v[0], v[1])), vst1q_u16(d + 8, half8(v[2], v[3]));
}
inline void store16_rgb(float* d, const float32x4_t v[3][4]) {  // interleaved R G B
  for (int k = 0; k < 4; ++k) vst3q_f32(d + 12 * k, float32x4x3_t{{v[0][k], v[1][k], v[2][k]}});
}
inline void store16_rgb(uint16_t* d, const float32x4_t v[3][4]) {
  for (int k = 0; k < 2; ++k) {
    const uint16x8x3_t h{{half8(v[0][2 * k], v[0][2 * k + 1]), half8(v[1][2 * k], v[1][2 * k + 1]),
                          half8(v[2][2 * k], v[2][2 * k + 1])}};
    vst3q_u16(d + 24 * k, h);
  }
}

// Pixels [0, returned) of one image row with NEON (c = 1 or 3; other counts return 0): 16 per
// step, vld3q_u8 splitting RGB, the loop's product and sum (each rounded), then float32 stores or
// float16 conversions (no NaN arises: levels, scales and shifts are finite). `out` is the row's
// first element of channel 0; NCHW planes lie `plane` elements apart.
template <typename T>
int64_t normalize_row_neon(const uint8_t* in, int64_t w, int64_t c, const NormalizeAffine& a,
                           bool nchw, int64_t plane, T* out) {
  if (c != 1 && c != 3) return 0;
  int64_t x = 0;
  for (; x + 16 <= w; x += 16) {
    float32x4_t v[3][4];
    if (c == 3) {
      const uint8x16x3_t px = vld3q_u8(in + 3 * x);
      for (int ch = 0; ch < 3; ++ch) affine16(px.val[ch], a.scale[ch], a.shift[ch], v[ch]);
      if (nchw) {
        for (int ch = 0; ch < 3; ++ch) store16(out + ch * plane + x, v[ch]);
      } else {
        store16_rgb(out + 3 * x, v);
      }
    } else {
      affine16(vld1q_u8(in + x), a.scale[0], a.shift[0], v[0]);
      store16(out + x, v[0]);
    }
  }
  return x;
}
#endif

template <typename T, typename Cast>
void normalize_rows(const uint8_t* src, const NormalizeParams& p, const NormalizeAffine& a,
                    int64_t row_begin, int64_t row_end, bool vec, T* out, Cast cast) {
  // A "row" is one image row (n, y); rows are independent, so any split gives the same output.
  const int64_t w = p.w, c = p.c;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / p.h;
    const int64_t y = row % p.h;
    const uint8_t* in = src + row * w * c;
    int64_t x0 = 0;  // pixels before x0 written by the vector path
#if defined(PYXFER_NORMALIZE_NEON)
    if (vec) {
      const bool nchw = p.layout == Layout::NCHW;
      x0 = normalize_row_neon(in, w, c, a, nchw, p.h * w,
                              out + (nchw ? (n * c * p.h + y) * w : row * w * c));
    }
#endif
    (void)vec;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float scale = a.scale[ch];
      const float shift = a.shift[ch];
      for (int64_t x = x0; x < w; ++x) {
        const float v = static_cast<float>(in[x * c + ch]) * scale + shift;
        const int64_t o = p.layout == Layout::NCHW ? ((n * c + ch) * p.h + y) * w + x
                                                   : ((n * p.h + y) * w + x) * c + ch;
        out[o] = cast(v);
      }
    }
  }
}

}  // namespace

void normalize_cpu(const uint8_t* src, void* dst, const NormalizeParams& p, int threads) {
  const NormalizeAffine a = normalize_affine(p);
  const int64_t rows = p.n * p.h;
  const int64_t grain = p.w * p.c >= 4096 ? 1 : (4096 / (p.w * p.c + 1) + 1);
  // NEON rows on AArch64 unless PYXFER_SIMD=baseline|scalar; the same values either way.
  const bool vec = !cpu::simd_forced_baseline();
  if (p.dtype == OutDType::Float32) {
    float* out = static_cast<float*>(dst);
    parallel_for(rows, threads, grain, [&](int64_t b, int64_t e) {
      normalize_rows(src, p, a, b, e, vec, out, [](float v) { return v; });
    });
  } else {
    uint16_t* out = static_cast<uint16_t*>(dst);
    parallel_for(rows, threads, grain, [&](int64_t b, int64_t e) {
      normalize_rows(src, p, a, b, e, vec, out, [](float v) { return float_to_half_bits(v); });
    });
  }
}

}  // namespace pyxfer
