// pool_normalize: feature maps (N, C, H, W) -> pooled (N, C) float32, optionally L2-normalised.
//
// Average pooling: mean over H*W. GeM pooling (Radenovic et al., "Fine-tuning CNN Image
// Retrieval with No Human Annotation", TPAMI 2018): (mean(clamp(x, eps)^p))^(1/p).
// L2 normalisation divides each row by max(||row||_2, l2_eps).
#pragma once

#include <cmath>
#include <cstdint>

#include "pyxfer/common.h"

namespace pyxfer {

enum class PoolMode : int { Avg = 0, GeM = 1 };

struct PoolParams {
  int64_t n = 0, c = 0, hw = 0;  // hw = H * W, the reduced extent
  PoolMode mode = PoolMode::Avg;
  float p = 3.0f;         // GeM exponent (> 0)
  float eps = 1e-6f;      // GeM clamp floor (> 0)
  bool l2 = false;        // L2-normalise each output row
  float l2_eps = 1e-12f;  // norm floor
  bool half = false;      // input elements are binary16 (else float32)
};

// One element's contribution to the sum: x for average pooling, clamp(x, eps)^p for GeM.
PYXFER_HD float pool_term(float x, const PoolParams& p) {
  if (p.mode == PoolMode::Avg) return x;
  const float c = x > p.eps ? x : p.eps;
  return p.p == 1.0f ? c : (p.p == 2.0f ? c * c : (p.p == 3.0f ? c * c * c : powf(c, p.p)));
}

// Sum of terms -> pooled value.
PYXFER_HD float pool_finish(double sum, const PoolParams& p) {
  const float mean = static_cast<float>(sum / static_cast<double>(p.hw));
  if (p.mode == PoolMode::Avg) return mean;
  return p.p == 1.0f ? mean : powf(mean, 1.0f / p.p);
}

// Scale that L2-normalises a row of squared norm `sq`.
PYXFER_HD float pool_l2_scale(double sq, const PoolParams& p) {
  const float norm = static_cast<float>(sqrt(sq));
  return 1.0f / (norm > p.l2_eps ? norm : p.l2_eps);
}

// CPU kernel. `x` is dense (N, C, H, W) float32 or float16 bits; `out` is dense (N, C) float32.
void pool_normalize_cpu(const void* x, float* out, const PoolParams& p, int threads);

#if defined(PYXFER_WITH_CUDA)
// CUDA kernel on device pointers, enqueued on `stream` (a cudaStream_t cast to void*).
void pool_normalize_cuda(const void* x, float* out, const PoolParams& p, void* stream);
#endif

}  // namespace pyxfer
