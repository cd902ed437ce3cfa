// cosine_topk: for each query row, the k bank rows with the largest inner product.
//
// Queries (M, D) float32, bank (N, D) float32 or float16. The similarity is computed block by
// block (a cache-blocked inner-product micro-kernel) and folded into a running top-k per query, so
// memory is O(M * k + block), never the M x N similarity matrix. Inputs are expected to be
// L2-normalised by the caller (then the inner product is the cosine similarity).
//
// Order and ties: results are sorted by value descending; equal values are ordered by bank index
// ascending (the lower index wins a tie at the k-th place). Every similarity is one chain of
// fused multiply-adds over the dimensions in order, on every SIMD path and wherever it falls in a
// block, so results depend neither on the thread count, the block size nor the path. On the CPU
// the bank has at most 2^32 - 1 rows.
#pragma once

#include <cstdint>

#include "pyxfer/common.h"

namespace pyxfer {

// Which inner-product micro-kernel runs. Auto picks the best the CPU supports at run time.
enum class SimdPath : int { Auto = 0, Scalar = 1, Avx2 = 2, Avx512 = 3 };

struct TopkParams {
  int64_t m = 0, n = 0, d = 0, k = 0;
  bool bank_half = false;  // bank elements are binary16 (else float32)
  int64_t block = 0;       // bank rows per block (0 = automatic); never changes the result
  SimdPath simd = SimdPath::Auto;
};

// Is a path usable on this CPU (compiled in and supported at run time)?
bool simd_path_available(SimdPath path);
// The path Auto resolves to on this CPU.
SimdPath simd_path_best();
// "scalar" | "avx2" | "avx512".
const char* simd_path_name(SimdPath path);

// values (M, k) float32 and indices (M, k) int64, rows sorted descending.
void cosine_topk_cpu(const float* queries, const void* bank, const TopkParams& p, float* values,
                     int64_t* indices, int threads);

// Lower-level entry used by fused consumers (knn): the running top-k of queries [q0, q1) on the
// calling thread, written to rows 0..q1-q0 of `values`/`indices` (row stride k).
void cosine_topk_rows_cpu(const float* queries, const void* bank, const TopkParams& p, int64_t q0,
                          int64_t q1, float* values, int64_t* indices);

// Queries per parallel work item for `threads` threads (independent of the result).
int64_t topk_query_block(const TopkParams& p, int threads);
// Bank shards cosine_topk_cpu splits into when there are fewer query blocks than threads (1 = no
// split; a split never changes the result).
int64_t topk_bank_shards(const TopkParams& p, int threads);

// Largest k of the CUDA variants (which also need n < 2^31).
constexpr int64_t kCudaMaxK = 2048;

#if defined(PYXFER_WITH_CUDA)
// CUDA variants on device pointers, enqueued on `stream` (a cudaStream_t cast to void*).
void cosine_topk_cuda(const float* queries, const void* bank, const TopkParams& p, float* values,
                      int64_t* indices, void* stream);
#endif

}  // namespace pyxfer
