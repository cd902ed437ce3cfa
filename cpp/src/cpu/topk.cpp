#include "pyxfer/topk.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pyxfer/half.h"
#include "pyxfer/parallel.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PYXFER_X86_KERNELS 1
#include <immintrin.h>
#endif

namespace pyxfer {
namespace {

// ---------------------------------------------------------------------------------------------
// Micro-kernels: out[i * NR + j] = dot(q[i], b[j]) for an MR x NR tile of query rows x bank rows.
// Each similarity is produced by the same instruction sequence whatever its slot in the tile, so
// a value never depends on how rows were grouped into tiles or blocks.
// ---------------------------------------------------------------------------------------------
using MicroKernel = void (*)(const float* const* q, const void* const* b, int64_t d, float* out);

template <bool Half>
inline float bank_at(const void* row, int64_t i) {
  if constexpr (Half) {
    return half_bits_to_float(static_cast<const uint16_t*>(row)[i]);
  } else {
    return static_cast<const float*>(row)[i];
  }
}

// Portable path: eight independent lanes per dot product (plain loops the compiler may vectorise
// for the baseline ISA), reduced in a fixed order.
constexpr int kScalarMR = 2, kScalarNR = 2, kLanes = 8;

template <bool Half>
void micro_scalar(const float* const* q, const void* const* b, int64_t d, float* out) {
  float acc[kScalarMR][kScalarNR][kLanes] = {};
  const int64_t dv = d - d % kLanes;
  for (int64_t x = 0; x < dv; x += kLanes) {
    float bv[kScalarNR][kLanes];
    for (int j = 0; j < kScalarNR; ++j)
      for (int l = 0; l < kLanes; ++l) bv[j][l] = bank_at<Half>(b[j], x + l);
    for (int i = 0; i < kScalarMR; ++i)
      for (int j = 0; j < kScalarNR; ++j)
        for (int l = 0; l < kLanes; ++l) acc[i][j][l] += q[i][x + l] * bv[j][l];
  }
  for (int i = 0; i < kScalarMR; ++i) {
    for (int j = 0; j < kScalarNR; ++j) {
      const float* a = acc[i][j];
      float s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
      for (int64_t x = dv; x < d; ++x) s += q[i][x] * bank_at<Half>(b[j], x);
      out[i * kScalarNR + j] = s;
    }
  }
}

#if defined(PYXFER_X86_KERNELS)
#define PYXFER_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PYXFER_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

// AVX2 + FMA: 3 x 4 tile = 12 accumulators + 3 query vectors + 1 bank vector = 16 ymm registers.
constexpr int kAvx2MR = 3, kAvx2NR = 4;

PYXFER_TARGET_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

template <bool Half>
PYXFER_TARGET_AVX2 void micro_avx2(const float* const* q, const void* const* b, int64_t d,
                                   float* out) {
  __m256 acc[kAvx2MR][kAvx2NR];
  for (int i = 0; i < kAvx2MR; ++i)
    for (int j = 0; j < kAvx2NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t dv = d & ~int64_t{7};
  for (int64_t x = 0; x < dv; x += 8) {
    __m256 qv[kAvx2MR];
    for (int i = 0; i < kAvx2MR; ++i) qv[i] = _mm256_loadu_ps(q[i] + x);
    for (int j = 0; j < kAvx2NR; ++j) {
      __m256 bv;
      if constexpr (Half) {
        const auto* h = static_cast<const uint16_t*>(b[j]) + x;
        bv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
      } else {
        bv = _mm256_loadu_ps(static_cast<const float*>(b[j]) + x);
      }
      for (int i = 0; i < kAvx2MR; ++i) acc[i][j] = _mm256_fmadd_ps(qv[i], bv, acc[i][j]);
    }
  }
  for (int i = 0; i < kAvx2MR; ++i) {
    for (int j = 0; j < kAvx2NR; ++j) {
      float s = hsum256(acc[i][j]);
      for (int64_t x = dv; x < d; ++x) s += q[i][x] * bank_at<Half>(b[j], x);
      out[i * kAvx2NR + j] = s;
    }
  }
}

// AVX-512: 4 x 6 tile = 24 accumulators + 4 query vectors + 1 bank vector of 32 zmm registers.
constexpr int kAvx512MR = 4, kAvx512NR = 6;

PYXFER_TARGET_AVX512 inline float hsum512(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s[8];
  for (int l = 0; l < 8; ++l) s[l] = t[l] + t[l + 8];
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

template <bool Half>
PYXFER_TARGET_AVX512 void micro_avx512(const float* const* q, const void* const* b, int64_t d,
                                       float* out) {
  __m512 acc[kAvx512MR][kAvx512NR];
  for (int i = 0; i < kAvx512MR; ++i)
    for (int j = 0; j < kAvx512NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t dv = d & ~int64_t{15};
  for (int64_t x = 0; x < dv; x += 16) {
    __m512 qv[kAvx512MR];
    for (int i = 0; i < kAvx512MR; ++i) qv[i] = _mm512_loadu_ps(q[i] + x);
    for (int j = 0; j < kAvx512NR; ++j) {
      __m512 bv;
      if constexpr (Half) {
        // maskz form: the unmasked intrinsic trips -Wuninitialized in GCC 12's header.
        bv = _mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xffff), _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(b[j]) + x)));
      } else {
        bv = _mm512_loadu_ps(static_cast<const float*>(b[j]) + x);
      }
      for (int i = 0; i < kAvx512MR; ++i) acc[i][j] = _mm512_fmadd_ps(qv[i], bv, acc[i][j]);
    }
  }
  for (int i = 0; i < kAvx512MR; ++i) {
    for (int j = 0; j < kAvx512NR; ++j) {
      float s = hsum512(acc[i][j]);
      for (int64_t x = dv; x < d; ++x) s += q[i][x] * bank_at<Half>(b[j], x);
      out[i * kAvx512NR + j] = s;
    }
  }
}
#endif  // PYXFER_X86_KERNELS

struct KernelChoice {
  MicroKernel fn;
  int mr, nr;
};

KernelChoice choose_kernel(SimdPath path, bool half) {
  if (path == SimdPath::Auto) path = simd_path_best();
#if defined(PYXFER_X86_KERNELS)
  if (path == SimdPath::Avx512) {
    return {half ? &micro_avx512<true> : &micro_avx512<false>, kAvx512MR, kAvx512NR};
  }
  if (path == SimdPath::Avx2) {
    return {half ? &micro_avx2<true> : &micro_avx2<false>, kAvx2MR, kAvx2NR};
  }
#endif
  return {half ? &micro_scalar<true> : &micro_scalar<false>, kScalarMR, kScalarNR};
}

// sim[i * ld + j] = dot(q row i, bank row j) for i < qrows, j < brows. Edge tiles repeat the last
// valid row (and discard the copies) so every value runs through the full micro-kernel.
void similarity_block(const KernelChoice& kc, const float* q, int64_t qrows, const char* bank,
                      size_t row_bytes, int64_t brows, int64_t d, float* sim, int64_t ld) {
  const float* qp[8];
  const void* bp[8];
  float tile[64];
  for (int64_t j0 = 0; j0 < brows; j0 += kc.nr) {
    for (int j = 0; j < kc.nr; ++j) {
      const int64_t row = std::min<int64_t>(j0 + j, brows - 1);
      bp[j] = bank + static_cast<size_t>(row) * row_bytes;
    }
    const int64_t nj = std::min<int64_t>(kc.nr, brows - j0);
    for (int64_t i0 = 0; i0 < qrows; i0 += kc.mr) {
      for (int i = 0; i < kc.mr; ++i) qp[i] = q + std::min<int64_t>(i0 + i, qrows - 1) * d;
      kc.fn(qp, bp, d, tile);
      const int64_t ni = std::min<int64_t>(kc.mr, qrows - i0);
      for (int64_t i = 0; i < ni; ++i) {
        for (int64_t j = 0; j < nj; ++j) sim[(i0 + i) * ld + j0 + j] = tile[i * kc.nr + j];
      }
    }
  }
}

// Insert (s, j) into the row's sorted list (descending; equal values keep the earlier, lower
// index first). Precondition: count < k or s > v[k - 1].
inline void topk_insert(float* v, int64_t* idx, int64_t& count, int64_t k, float s, int64_t j) {
  const int64_t kept = count < k ? count : k - 1;
  const int64_t pos =
      std::upper_bound(v, v + kept, s, [](float a, float b) { return a > b; }) - v;
  std::memmove(v + pos + 1, v + pos, static_cast<size_t>(kept - pos) * sizeof(float));
  std::memmove(idx + pos + 1, idx + pos, static_cast<size_t>(kept - pos) * sizeof(int64_t));
  v[pos] = s;
  idx[pos] = j;
  if (count < k) ++count;
}

// Fold one block of similarities (bank rows j0 .. j0 + nb) into the running top-k of each query.
void fold_block(const float* sim, int64_t ld, int64_t qrows, int64_t nb, int64_t j0, int64_t k,
                float* values, int64_t* indices, int64_t* counts) {
  for (int64_t i = 0; i < qrows; ++i) {
    float* v = values + i * k;
    int64_t* idx = indices + i * k;
    int64_t count = counts[i];
    const float* row = sim + i * ld;
    int64_t j = 0;
    for (; j < nb && count < k; ++j) topk_insert(v, idx, count, k, row[j], j0 + j);
    float threshold = v[k - 1];
    for (; j < nb; ++j) {
      if (row[j] > threshold) {
        topk_insert(v, idx, count, k, row[j], j0 + j);
        threshold = v[k - 1];
      }
    }
    counts[i] = count;
  }
}

constexpr int64_t kQueryPanelBytes = 256 * 1024;  // query rows kept hot in L2 per block
constexpr int64_t kMinShardRows = 2048;            // smallest bank split worth a thread

int64_t bank_block_rows(const TopkParams& p) {
  const int64_t rows = p.block > 0 ? p.block : 240;
  return std::max<int64_t>(1, std::min(rows, p.n));
}

}  // namespace

bool simd_path_available(SimdPath path) {
  switch (path) {
    case SimdPath::Auto:
    case SimdPath::Scalar:
      return true;
#if defined(PYXFER_X86_KERNELS)
    case SimdPath::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case SimdPath::Avx512:
      return simd_path_available(SimdPath::Avx2) && __builtin_cpu_supports("avx512f");
#endif
    default:
      return false;
  }
}

SimdPath simd_path_best() {
  if (simd_path_available(SimdPath::Avx512)) return SimdPath::Avx512;
  if (simd_path_available(SimdPath::Avx2)) return SimdPath::Avx2;
  return SimdPath::Scalar;
}

const char* simd_path_name(SimdPath path) {
  switch (path) {
    case SimdPath::Auto:
      return simd_path_name(simd_path_best());
    case SimdPath::Avx2:
      return "avx2";
    case SimdPath::Avx512:
      return "avx512";
    default:
      return "scalar";
  }
}

int64_t topk_query_block(const TopkParams& p, int threads) {
  const int64_t panel = std::clamp<int64_t>(kQueryPanelBytes / (4 * std::max<int64_t>(p.d, 1)),
                                            16, 1024);
  const int64_t workers = resolve_threads(threads);
  // At least a few items per thread for balance, but never so few rows that the bank is reread
  // for every handful of queries.
  const int64_t balanced = (p.m + 4 * workers - 1) / (4 * workers);
  return std::max<int64_t>(1, std::min(panel, std::max<int64_t>(balanced, 24)));
}

void cosine_topk_rows_cpu(const float* queries, const void* bank, const TopkParams& p, int64_t q0,
                          int64_t q1, float* values, int64_t* indices) {
  if (q1 <= q0) return;
  if (!simd_path_available(p.simd)) {
    throw std::invalid_argument(std::string("simd path not available on this CPU: ") +
                                simd_path_name(p.simd));
  }
  const KernelChoice kc = choose_kernel(p.simd, p.bank_half);
  const int64_t nb = bank_block_rows(p);
  const int64_t qb = std::clamp<int64_t>(kQueryPanelBytes / (4 * std::max<int64_t>(p.d, 1)), 16,
                                         1024);
  const size_t row_bytes = static_cast<size_t>(p.d) * (p.bank_half ? 2u : 4u);
  const char* bank_bytes = static_cast<const char*>(bank);
  std::vector<float> sim(static_cast<size_t>(std::min(qb, q1 - q0) * nb));
  std::vector<int64_t> counts(static_cast<size_t>(q1 - q0), 0);
  for (int64_t qs = q0; qs < q1; qs += qb) {
    const int64_t qrows = std::min(qb, q1 - qs);
    const int64_t r = qs - q0;
    for (int64_t j0 = 0; j0 < p.n; j0 += nb) {
      const int64_t brows = std::min(nb, p.n - j0);
      const char* rows = bank_bytes + static_cast<size_t>(j0) * row_bytes;
      similarity_block(kc, queries + qs * p.d, qrows, rows, row_bytes, brows, p.d, sim.data(), nb);
      fold_block(sim.data(), nb, qrows, brows, j0, p.k, values + r * p.k, indices + r * p.k,
                 counts.data() + r);
    }
  }
}

int64_t topk_bank_shards(const TopkParams& p, int threads) {
  const int64_t workers = resolve_threads(threads);
  const int64_t qb = topk_query_block(p, threads);
  const int64_t blocks = (p.m + qb - 1) / qb;
  if (blocks == 0 || blocks >= workers) return 1;
  const int64_t wanted = (workers + blocks - 1) / blocks;
  return std::max<int64_t>(1, std::min(wanted, p.n / kMinShardRows));
}

void cosine_topk_cpu(const float* queries, const void* bank, const TopkParams& p, float* values,
                     int64_t* indices, int threads) {
  if (p.m <= 0) return;
  const int64_t qb = topk_query_block(p, threads);
  const int64_t blocks = (p.m + qb - 1) / qb;
  const int64_t shards = topk_bank_shards(p, threads);
  if (shards == 1) {
    parallel_for(blocks, threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        const int64_t q0 = blk * qb, q1 = std::min(p.m, q0 + qb);
        cosine_topk_rows_cpu(queries, bank, p, q0, q1, values + q0 * p.k, indices + q0 * p.k);
      }
    });
    return;
  }
  // Few queries, many threads: split the bank into contiguous shards, take each shard's top-k,
  // then merge by (value descending, index ascending). That order is total, so the merged list is
  // exactly the unsplit result.
  const int64_t shard_rows = (p.n + shards - 1) / shards;
  const size_t row_bytes = static_cast<size_t>(p.d) * (p.bank_half ? 2u : 4u);
  const size_t slot = static_cast<size_t>(qb * p.k);
  std::vector<float> part_v(static_cast<size_t>(blocks * shards) * slot);
  std::vector<int64_t> part_i(part_v.size());
  parallel_for(blocks * shards, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t blk = item / shards, j0 = (item % shards) * shard_rows;
      const int64_t q0 = blk * qb, q1 = std::min(p.m, q0 + qb);
      TopkParams ps = p;
      ps.n = std::min(shard_rows, p.n - j0);
      ps.k = std::min(p.k, ps.n);
      int64_t* idx = part_i.data() + static_cast<size_t>(item) * slot;
      const char* rows = static_cast<const char*>(bank) + static_cast<size_t>(j0) * row_bytes;
      cosine_topk_rows_cpu(queries, rows, ps, q0, q1,
                           part_v.data() + static_cast<size_t>(item) * slot, idx);
      for (int64_t t = 0; t < (q1 - q0) * ps.k; ++t) idx[t] += j0;
    }
  });
  parallel_for(p.m, threads, 16, [&](int64_t b, int64_t e) {
    std::vector<std::pair<float, int64_t>> cand;
    for (int64_t row = b; row < e; ++row) {
      const int64_t blk = row / qb, r = row - blk * qb;
      cand.clear();
      for (int64_t s = 0; s < shards; ++s) {
        const int64_t j0 = s * shard_rows;
        const int64_t ks = std::min(p.k, std::min(shard_rows, p.n - j0));
        const size_t base =
            static_cast<size_t>(blk * shards + s) * slot + static_cast<size_t>(r * ks);
        for (int64_t t = 0; t < ks; ++t) cand.emplace_back(part_v[base + t], part_i[base + t]);
      }
      std::partial_sort(cand.begin(), cand.begin() + p.k, cand.end(),
                        [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& c) {
                          return a.first > c.first || (a.first == c.first && a.second < c.second);
                        });
      for (int64_t t = 0; t < p.k; ++t) {
        values[row * p.k + t] = cand[static_cast<size_t>(t)].first;
        indices[row * p.k + t] = cand[static_cast<size_t>(t)].second;
      }
    }
  });
}

}  // namespace pyxfer
