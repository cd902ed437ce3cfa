#include "pyxfer/pool.h"

#include <algorithm>

#include "pyxfer/half.h"
#include "pyxfer/parallel.h"

namespace pyxfer {
namespace {

template <typename Load>
void pool_channels(const PoolParams& p, float* out, int64_t begin, int64_t end, Load load) {
  // One item is one (n, c) plane; the sum runs in a fixed order, so any split gives the same value.
  for (int64_t nc = begin; nc < end; ++nc) {
    const int64_t base = nc * p.hw;
    double sum = 0.0;
    for (int64_t i = 0; i < p.hw; ++i) sum += static_cast<double>(pool_term(load(base + i), p));
    out[nc] = pool_finish(sum, p);
  }
}

}  // namespace

void pool_normalize_cpu(const void* x, float* out, const PoolParams& p, int threads) {
  const int64_t planes = p.n * p.c;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(p.hw, 1));
  if (p.half) {
    const auto* src = static_cast<const uint16_t*>(x);
    parallel_for(planes, threads, grain, [&](int64_t b, int64_t e) {
      pool_channels(p, out, b, e, [src](int64_t i) { return half_bits_to_float(src[i]); });
    });
  } else {
    const auto* src = static_cast<const float*>(x);
    parallel_for(planes, threads, grain, [&](int64_t b, int64_t e) {
      pool_channels(p, out, b, e, [src](int64_t i) { return src[i]; });
    });
  }
  if (!p.l2) return;
  const int64_t row_grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(p.c, 1));
  parallel_for(p.n, threads, row_grain, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      float* row = out + n * p.c;
      double sq = 0.0;
      for (int64_t c = 0; c < p.c; ++c) sq += static_cast<double>(row[c]) * row[c];
      const float scale = pool_l2_scale(sq, p);
      for (int64_t c = 0; c < p.c; ++c) row[c] *= scale;
    }
  });
}

}  // namespace pyxfer
