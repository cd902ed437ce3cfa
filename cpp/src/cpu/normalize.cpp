#include "pyxfer/normalize.h"

#include "pyxfer/half.h"
#include "pyxfer/parallel.h"

namespace pyxfer {
namespace {

template <typename Store>
void normalize_rows(const uint8_t* src, const NormalizeParams& p, const NormalizeAffine& a,
                    int64_t row_begin, int64_t row_end, Store store) {
  // A "row" is one image row (n, y); rows are independent, so any split gives the same output.
  const int64_t w = p.w, c = p.c;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / p.h;
    const int64_t y = row % p.h;
    const uint8_t* in = src + row * w * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float scale = a.scale[ch];
      const float shift = a.shift[ch];
      for (int64_t x = 0; x < w; ++x) {
        const float v = static_cast<float>(in[x * c + ch]) * scale + shift;
        const int64_t o = p.layout == Layout::NCHW ? ((n * c + ch) * p.h + y) * w + x
                                                   : ((n * p.h + y) * w + x) * c + ch;
        store(o, v);
      }
    }
  }
}

}  // namespace

void normalize_cpu(const uint8_t* src, void* dst, const NormalizeParams& p, int threads) {
  const NormalizeAffine a = normalize_affine(p);
  const int64_t rows = p.n * p.h;
  const int64_t grain = p.w * p.c >= 4096 ? 1 : (4096 / (p.w * p.c + 1) + 1);
  if (p.dtype == OutDType::Float32) {
    float* out = static_cast<float*>(dst);
    parallel_for(rows, threads, grain, [&](int64_t b, int64_t e) {
      normalize_rows(src, p, a, b, e, [out](int64_t o, float v) { out[o] = v; });
    });
  } else {
    uint16_t* out = static_cast<uint16_t*>(dst);
    parallel_for(rows, threads, grain, [&](int64_t b, int64_t e) {
      normalize_rows(src, p, a, b, e,
                     [out](int64_t o, float v) { out[o] = float_to_half_bits(v); });
    });
  }
}

}  // namespace pyxfer
