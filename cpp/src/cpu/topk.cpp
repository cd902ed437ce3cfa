#include "pyxfer/topk.h"

#include <algorithm>
#include <cmath>
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
// Tile kernels. A tile is G queries x NR bank rows. Queries are packed for the panel as
// qp[x * G + l] = query l, dimension x (zero rows past the end); bank rows are float32 rows.
// Every similarity is one fused multiply-add chain over the dimensions in order,
//   s = fma(q[D-1], b[D-1], ... fma(q[1], b[1], fma(q[0], b[0], 0))),
// on every path (a vector lane per query), so a value depends neither on its slot in the tile nor
// on the path, the block or the thread count. A kernel compares the tile with the queries'
// thresholds thr[l] (a score passes when it is not <= thr, so a NaN threshold lets everything
// through); only when some score passes does it write the scores, tile[j * G + l], and the
// passing lanes of each bank row, bit l of pass[j], and return true.
// ---------------------------------------------------------------------------------------------
using TileKernel = bool (*)(const float* qp, const float* const* b, int64_t d, const float* thr,
                            float* tile, uint32_t* pass);

// Portable path: scalar fused multiply-adds (std::fma rounds once, like the vector paths).
constexpr int kScalarG = 4, kScalarNR = 4;

bool tile_scalar(const float* qp, const float* const* b, int64_t d, const float* thr, float* tile,
                 uint32_t* pass) {
  float acc[kScalarNR][kScalarG] = {};
  for (int64_t x = 0; x < d; ++x) {
    const float* q = qp + x * kScalarG;
    for (int j = 0; j < kScalarNR; ++j) {
      const float bv = b[j][x];
      for (int l = 0; l < kScalarG; ++l) acc[j][l] = std::fma(q[l], bv, acc[j][l]);
    }
  }
  uint32_t any = 0;
  uint32_t bits[kScalarNR] = {};
  for (int j = 0; j < kScalarNR; ++j) {
    for (int l = 0; l < kScalarG; ++l) bits[j] |= static_cast<uint32_t>(!(acc[j][l] <= thr[l])) << l;
    any |= bits[j];
  }
  if (any == 0) return false;
  std::memcpy(tile, acc, sizeof acc);
  std::memcpy(pass, bits, sizeof bits);
  return true;
}

#if defined(PYXFER_X86_KERNELS)
#define PYXFER_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PYXFER_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

// AVX2 + FMA: 16 queries (2 vectors) x 6 bank rows = 12 accumulators, 2 query vectors and a
// broadcast bank value: 15 of the 16 ymm registers. Named accumulators, not an array: GCC keeps
// an array's elements in registers but also stores them back on every iteration.
constexpr int kAvx2G = 16, kAvx2NR = 6;

// V query vectors per bank row: 2 (16 queries), or 1 (8) for panels of at most 8 queries.
template <int V>
PYXFER_TARGET_AVX2 bool tile_avx2(const float* qp, const float* const* b, int64_t d,
                                  const float* thr, float* tile, uint32_t* pass) {
  constexpr int G = 8 * V;
  const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3], *b4 = b[4], *b5 = b[5];
#define PYXFER_ZERO(j) __m256 a##j##0 = _mm256_setzero_ps(), a##j##1 = _mm256_setzero_ps();
  PYXFER_ZERO(0) PYXFER_ZERO(1) PYXFER_ZERO(2) PYXFER_ZERO(3) PYXFER_ZERO(4) PYXFER_ZERO(5)
#undef PYXFER_ZERO
  for (int64_t x = 0; x < d; ++x) {
    const __m256 q0 = _mm256_loadu_ps(qp + x * G);
    const __m256 q1 = V == 2 ? _mm256_loadu_ps(qp + x * G + 8) : q0;
#define PYXFER_STEP(j)                                                 \
  {                                                                    \
    const __m256 bv = _mm256_broadcast_ss(b##j + x);                   \
    a##j##0 = _mm256_fmadd_ps(q0, bv, a##j##0);                        \
    if constexpr (V == 2) a##j##1 = _mm256_fmadd_ps(q1, bv, a##j##1); \
  }
    PYXFER_STEP(0) PYXFER_STEP(1) PYXFER_STEP(2) PYXFER_STEP(3) PYXFER_STEP(4) PYXFER_STEP(5)
#undef PYXFER_STEP
  }
  const __m256 t0 = _mm256_loadu_ps(thr), t1 = V == 2 ? _mm256_loadu_ps(thr + 8) : t0;
  uint32_t bits[kAvx2NR];
#define PYXFER_PASS(j)                                                                          \
  bits[j] = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a##j##0, t0, _CMP_NLE_UQ))); \
  if constexpr (V == 2) {                                                                       \
    bits[j] |= static_cast<uint32_t>(                                                           \
                   _mm256_movemask_ps(_mm256_cmp_ps(a##j##1, t1, _CMP_NLE_UQ)))                 \
               << 8;                                                                            \
  }
  PYXFER_PASS(0) PYXFER_PASS(1) PYXFER_PASS(2) PYXFER_PASS(3) PYXFER_PASS(4) PYXFER_PASS(5)
#undef PYXFER_PASS
  if ((bits[0] | bits[1] | bits[2] | bits[3] | bits[4] | bits[5]) == 0) return false;
#define PYXFER_STORE(j)                                                 \
  _mm256_storeu_ps(tile + j * G, a##j##0);                              \
  if constexpr (V == 2) _mm256_storeu_ps(tile + j * G + 8, a##j##1);
  PYXFER_STORE(0) PYXFER_STORE(1) PYXFER_STORE(2) PYXFER_STORE(3) PYXFER_STORE(4) PYXFER_STORE(5)
#undef PYXFER_STORE
  std::memcpy(pass, bits, sizeof bits);
  return true;
}

// AVX-512: 32 queries (2 vectors) x 12 bank rows = 24 accumulators; the bank value is a
// broadcast memory operand of the multiply-add.
constexpr int kAvx512G = 32, kAvx512NR = 12;

// V query vectors per bank row: 2 (32 queries), or 1 (16) for panels of at most 16 queries.
template <int V>
PYXFER_TARGET_AVX512 bool tile_avx512(const float* qp, const float* const* b, int64_t d,
                                      const float* thr, float* tile, uint32_t* pass) {
  constexpr int G = 16 * V;
  __m512 acc[kAvx512NR][V];
  for (int j = 0; j < kAvx512NR; ++j)
    for (int v = 0; v < V; ++v) acc[j][v] = _mm512_setzero_ps();
  const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3], *b4 = b[4], *b5 = b[5];
  const float *b6 = b[6], *b7 = b[7], *b8 = b[8], *b9 = b[9], *b10 = b[10], *b11 = b[11];
  for (int64_t x = 0; x < d; ++x) {
    __m512 q[V];
    for (int v = 0; v < V; ++v) q[v] = _mm512_loadu_ps(qp + x * G + 16 * v);
#define PYXFER_STEP(j)                                                          \
  {                                                                             \
    const __m512 bv = _mm512_set1_ps(b##j[x]);                                  \
    for (int v = 0; v < V; ++v) acc[j][v] = _mm512_fmadd_ps(q[v], bv, acc[j][v]); \
  }
    PYXFER_STEP(0) PYXFER_STEP(1) PYXFER_STEP(2) PYXFER_STEP(3) PYXFER_STEP(4) PYXFER_STEP(5)
    PYXFER_STEP(6) PYXFER_STEP(7) PYXFER_STEP(8) PYXFER_STEP(9) PYXFER_STEP(10) PYXFER_STEP(11)
#undef PYXFER_STEP
  }
  __m512 t[V];
  for (int v = 0; v < V; ++v) t[v] = _mm512_loadu_ps(thr + 16 * v);
  uint32_t bits[kAvx512NR];
  uint32_t any = 0;
  for (int j = 0; j < kAvx512NR; ++j) {
    bits[j] = 0;
    for (int v = 0; v < V; ++v) {
      bits[j] |= static_cast<uint32_t>(_mm512_cmp_ps_mask(acc[j][v], t[v], _CMP_NLE_UQ))
                 << (16 * v);
    }
    any |= bits[j];
  }
  if (any == 0) return false;
  for (int j = 0; j < kAvx512NR; ++j)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(tile + j * G + 16 * v, acc[j][v]);
  std::memcpy(pass, bits, sizeof bits);
  return true;
}

// Bank rows of float16 are widened to float32 (exactly) before the tile kernel reads them.
PYXFER_TARGET_AVX2 void widen_half_f16c(const uint16_t* h, int64_t count, float* out) {
  int64_t x = 0;
  for (; x + 8 <= count; x += 8) {
    _mm256_storeu_ps(out + x,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + x))));
  }
  for (; x < count; ++x) out[x] = half_bits_to_float(h[x]);
}
#endif  // PYXFER_X86_KERNELS

constexpr int kMaxNR = 12;  // bank rows of the widest tile

struct KernelChoice {
  TileKernel fn;
  int g, nr;  // queries and bank rows per tile
  bool f16c;  // widen float16 rows with F16C
};

// The path's tile; `rows` (queries in the panel) at most half a tile takes the half-width form,
// which computes the same lanes (a lane's chain does not depend on the tile width).
KernelChoice choose_kernel(SimdPath path, int64_t rows) {
  if (path == SimdPath::Auto) path = simd_path_best();
#if defined(PYXFER_X86_KERNELS)
  if (path == SimdPath::Avx512) {
    if (rows <= kAvx512G / 2) return {&tile_avx512<1>, kAvx512G / 2, kAvx512NR, true};
    return {&tile_avx512<2>, kAvx512G, kAvx512NR, true};
  }
  if (path == SimdPath::Avx2) {
    if (rows <= kAvx2G / 2) return {&tile_avx2<1>, kAvx2G / 2, kAvx2NR, true};
    return {&tile_avx2<2>, kAvx2G, kAvx2NR, true};
  }
#endif
  (void)rows;
  return {&tile_scalar, kScalarG, kScalarNR, false};
}

void widen_half(const KernelChoice& kc, const uint16_t* h, int64_t count, float* out) {
#if defined(PYXFER_X86_KERNELS)
  if (kc.f16c) {
    widen_half_f16c(h, count, out);
    return;
  }
#else
  (void)kc;  // one widening off x86
#endif
  for (int64_t x = 0; x < count; ++x) out[x] = half_bits_to_float(h[x]);
}

// ---------------------------------------------------------------------------------------------
// Running top-k of one query: a min-heap of at most k keys whose root is the worst kept one. A key
// is the score mapped to an order-preserving unsigned integer in the high half and the complement
// of the bank index in the low half, so one integer comparison is the result's order: higher
// score first, and of equal scores the lower index. (Scores are sums that start at +0, so they
// are never -0; the key order of the other values is the float order.)
// ---------------------------------------------------------------------------------------------
inline uint64_t topk_key(float s, int64_t j) {
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | (0xffffffffu - static_cast<uint32_t>(j));
}

inline void topk_unkey(uint64_t key, float* s, int64_t* j) {
  uint32_t u = static_cast<uint32_t>(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  std::memcpy(s, &u, sizeof u);
  *j = static_cast<int64_t>(0xffffffffu - static_cast<uint32_t>(key));
}

inline float key_score(uint64_t key) {
  float s;
  int64_t j;
  topk_unkey(key, &s, &j);
  return s;
}

// Replace the root of a full heap of n keys by `key` (which is larger) and restore the order.
inline void heap_replace_root(uint64_t* h, int64_t n, uint64_t key) {
  int64_t pos = 0;
  for (;;) {
    int64_t c = 2 * pos + 1;
    if (c >= n) break;
    if (c + 1 < n) c += static_cast<int64_t>(h[c + 1] < h[c]);
    if (h[c] >= key) break;
    h[pos] = h[c];
    pos = c;
  }
  h[pos] = key;
}

inline void heap_push(uint64_t* h, int64_t n, uint64_t key) {
  int64_t pos = n;
  while (pos > 0) {
    const int64_t parent = (pos - 1) / 2;
    if (h[parent] <= key) break;
    h[pos] = h[parent];
    pos = parent;
  }
  h[pos] = key;
}

inline int lowest_bit(uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(v);
#else
  int i = 0;
  for (; (v & 1u) == 0; v >>= 1) ++i;
  return i;
#endif
}

// Fold a tile (bank rows j0 .. j0 + nj) into the heaps of the tile's nq queries: the passing
// scores only, by bank row, so each query meets its rows in increasing index order.
void fold_tile(const float* tile, const uint32_t* pass, int g, int64_t nq, int64_t nj,
               int64_t j0, int64_t k, uint64_t* heaps, int64_t* counts, float* thr) {
  const uint32_t lanes = nq >= 32 ? 0xffffffffu : (1u << nq) - 1u;
  for (int64_t j = 0; j < nj; ++j) {
    for (uint32_t bits = pass[j] & lanes; bits != 0; bits &= bits - 1) {
      const int l = lowest_bit(bits);
      const uint64_t key = topk_key(tile[j * g + l], j0 + j);
      uint64_t* h = heaps + l * k;
      if (counts[l] < k) {
        heap_push(h, counts[l]++, key);
        if (counts[l] == k) thr[l] = key_score(h[0]);
      } else if (key > h[0]) {
        heap_replace_root(h, k, key);
        thr[l] = key_score(h[0]);
      }
    }
  }
}

constexpr int64_t kQueryPanelBytes = 256 * 1024;  // query rows kept hot in L2 per block
constexpr int64_t kMinShardRows = 2048;            // smallest bank split worth a thread

int64_t bank_block_rows(const TopkParams& p) {
  const int64_t rows = p.block > 0 ? p.block : 1200;
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
  if (p.n > int64_t{0xffffffff}) {
    throw std::invalid_argument("bank: expected at most 2^32 - 1 rows on the CPU, received " +
                                std::to_string(p.n));
  }
  const int64_t d = p.d, k = p.k;
  const int64_t nb = bank_block_rows(p);
  const int64_t panel = std::clamp<int64_t>(kQueryPanelBytes / (4 * std::max<int64_t>(d, 1)), 16,
                                            1024);
  const int64_t qb = std::min(panel, q1 - q0);
  const KernelChoice kc = choose_kernel(p.simd, qb);
  const int64_t g = kc.g, nr = kc.nr;
  const int64_t qb_pad = (qb + g - 1) / g * g;
  const size_t row_bytes = static_cast<size_t>(d) * (p.bank_half ? 2u : 4u);
  const char* bank_bytes = static_cast<const char*>(bank);
  std::vector<float> qpack(static_cast<size_t>(qb_pad * d));
  std::vector<float> thr(static_cast<size_t>(qb_pad));
  std::vector<int64_t> counts(static_cast<size_t>(qb_pad));
  std::vector<uint64_t> heaps(static_cast<size_t>(qb_pad * k));
  std::vector<float> tile(static_cast<size_t>(g * nr));
  uint32_t pass[kMaxNR];
  std::vector<float> widened(p.bank_half ? static_cast<size_t>(nr * d) : 0u);
  const float* bp[kMaxNR];
  for (int64_t qs = q0; qs < q1; qs += qb) {
    const int64_t qrows = std::min(qb, q1 - qs);
    const int64_t groups = (qrows + g - 1) / g;
    // Pack: group-major, then dimension, then the group's queries; padding rows are zero and
    // never pass (threshold +inf). A NaN threshold lets every score in until a heap is full.
    std::fill(qpack.begin(), qpack.begin() + groups * g * d, 0.0f);
    for (int64_t r = 0; r < qrows; ++r) {
      const float* src = queries + (qs + r) * d;
      float* dst = qpack.data() + (r / g) * g * d + r % g;
      for (int64_t x = 0; x < d; ++x) dst[x * g] = src[x];
    }
    std::fill(thr.begin(), thr.begin() + qrows, std::numeric_limits<float>::quiet_NaN());
    std::fill(thr.begin() + qrows, thr.end(), std::numeric_limits<float>::infinity());
    std::fill(counts.begin(), counts.end(), 0);
    for (int64_t b0 = 0; b0 < p.n; b0 += nb) {
      const int64_t bn = std::min(nb, p.n - b0);
      for (int64_t t0 = 0; t0 < bn; t0 += nr) {
        const int64_t j0 = b0 + t0, nj = std::min(nr, bn - t0);
        const char* rows = bank_bytes + static_cast<size_t>(j0) * row_bytes;
        const float* base = reinterpret_cast<const float*>(rows);
        if (p.bank_half) {
          widen_half(kc, reinterpret_cast<const uint16_t*>(rows), nj * d, widened.data());
          base = widened.data();
        }
        // Rows past the block repeat its last row; their scores are never folded.
        for (int64_t j = 0; j < nr; ++j) bp[j] = base + std::min(j, nj - 1) * d;
        // The next tile's rows, fetched while this one is scored.
        const char* next = rows + static_cast<size_t>(nj) * row_bytes;
        const int64_t next_lines =
            j0 + nj < p.n ? static_cast<int64_t>(static_cast<size_t>(std::min(nr, p.n - j0 - nj)) *
                                                 row_bytes / 64)
                          : 0;
        const int64_t per_group = (next_lines + groups - 1) / groups;
        for (int64_t grp = 0; grp < groups; ++grp) {
#if defined(__GNUC__) || defined(__clang__)
          for (int64_t line = grp * per_group; line < std::min(next_lines, (grp + 1) * per_group);
               ++line) {
            __builtin_prefetch(next + line * 64);
          }
#endif
          const int64_t r = grp * g;
          if (kc.fn(qpack.data() + r * d, bp, d, thr.data() + r, tile.data(), pass)) {
            fold_tile(tile.data(), pass, static_cast<int>(g), std::min(g, qrows - r), nj, j0, k,
                      heaps.data() + r * k, counts.data() + r, thr.data() + r);
          }
        }
      }
    }
    // Heaps -> rows sorted best first.
    for (int64_t r = 0; r < qrows; ++r) {
      uint64_t* h = heaps.data() + r * k;
      std::sort(h, h + counts[r], [](uint64_t a, uint64_t c) { return a > c; });
      float* v = values + (qs - q0 + r) * k;
      int64_t* id = indices + (qs - q0 + r) * k;
      for (int64_t t = 0; t < counts[r]; ++t) topk_unkey(h[t], v + t, id + t);
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
