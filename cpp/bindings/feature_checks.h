// Validation shared by the feature-kernel bindings (pool, topk, knn).
#pragma once

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "checks.h"
#include "pyxfer/topk.h"

namespace pyxfer::bind {

// A dense float32 (or, with allow_half, float16) array of the given rank.
inline void check_features(const py::array& a, const char* name, py::ssize_t ndim,
                           const char* layout, bool allow_half) {
  check_dtype(a, name, is_float32(a) || (allow_half && is_float16(a)),
              allow_half ? "float32 or float16" : "float32");
  check_ndim(a, name, ndim, layout);
  check_c_contiguous(a, name);
}

// Every element finite (one linear scan; cheap next to the kernels that read it many times).
inline void check_finite(const py::array& a, const char* name) {
  const py::ssize_t count = a.size();
  bool ok = true;
  if (is_float16(a)) {
    const auto* x = static_cast<const uint16_t*>(a.data());
    uint16_t bad = 0;
    for (py::ssize_t i = 0; i < count; ++i) bad |= static_cast<uint16_t>((~x[i] & 0x7c00u) == 0);
    ok = bad == 0;
  } else {
    const auto* x = static_cast<const float*>(a.data());
    uint32_t bad = 0;
    for (py::ssize_t i = 0; i < count; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      bad |= static_cast<uint32_t>((~bits & 0x7f800000u) == 0);
    }
    ok = bad == 0;
  }
  if (!ok) fail(std::string(name) + ": expected finite values, received NaN or inf");
}

inline SimdPath parse_simd(const std::string& simd) {
  SimdPath path;
  if (simd == "auto") {
    path = SimdPath::Auto;
  } else if (simd == "scalar") {
    path = SimdPath::Scalar;
  } else if (simd == "avx2") {
    path = SimdPath::Avx2;
  } else if (simd == "avx512") {
    path = SimdPath::Avx512;
  } else {
    fail("simd: expected 'auto', 'scalar', 'avx2' or 'avx512', received '" + simd + "'");
  }
  if (!simd_path_available(path)) {
    fail("simd: '" + simd + "' is not available on this CPU or build (best is '" +
         simd_path_name(simd_path_best()) + "')");
  }
  return path;
}

// Shapes and k of a (queries, bank, k) problem; fills everything but simd/block.
inline TopkParams topk_params(int64_t m, int64_t qd, int64_t n, int64_t d, int64_t k,
                              bool half, int64_t block) {
  if (qd != d) {
    fail("bank: expected feature dimension D = " + std::to_string(qd) +
         " (the queries' last axis), received " + std::to_string(d));
  }
  if (d <= 0) fail("queries: expected feature dimension D > 0, received " + std::to_string(d));
  if (n <= 0) fail("bank: expected at least one row, received an empty bank (N = 0)");
  if (m < 0) fail("queries: expected M >= 0 rows, received " + std::to_string(m));
  if (k <= 0) fail("k: expected k >= 1, received " + std::to_string(k));
  if (k > n) {
    fail("k: expected k <= N = " + std::to_string(n) + " (bank rows), received " +
         std::to_string(k));
  }
  if (block < 0) {
    fail("block: expected 0 (automatic) or a positive row count, received " +
         std::to_string(block));
  }
  TopkParams p;
  p.m = m, p.n = n, p.d = d, p.k = k;
  p.bank_half = half;
  p.block = block;
  return p;
}

// The CUDA top-k kernels' limits (checked in every build, like all *_cuda arguments).
inline void check_cuda_topk(const TopkParams& p) {
  if (p.k > kCudaMaxK) {
    fail("k: expected k <= " + std::to_string(kCudaMaxK) + " on CUDA, received " +
         std::to_string(p.k));
  }
  if (p.n >= (int64_t{1} << 31)) {
    fail("bank: expected fewer than 2^31 rows on CUDA, received " + std::to_string(p.n));
  }
}

inline float check_temperature(double temperature) {
  return positive_float(temperature, "temperature");
}

inline void check_num_classes(int64_t num_classes) {
  if (num_classes <= 0) {
    fail("num_classes: expected num_classes >= 1, received " + std::to_string(num_classes));
  }
}

}  // namespace pyxfer::bind
