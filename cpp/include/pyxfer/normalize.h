// normalize: uint8 images (N, H, W, C) -> float (N, C, H, W) or (N, H, W, C),
// out = (x / 255 - mean[c]) / std[c]. The first stage of every preprocessing path.
#pragma once

#include <cstdint>

#include "pyxfer/common.h"

namespace pyxfer {

struct NormalizeParams {
  int64_t n = 0, h = 0, w = 0, c = 0;
  float mean[4] = {0.f, 0.f, 0.f, 0.f};
  float inv_std[4] = {1.f, 1.f, 1.f, 1.f};
  OutDType dtype = OutDType::Float32;
  Layout layout = Layout::NCHW;
};

// Per-channel scale/shift so that out = x * scale[c] + shift[c]; shared by CPU and CUDA.
struct NormalizeAffine {
  float scale[4];
  float shift[4];
};

PYXFER_HD NormalizeAffine normalize_affine(const NormalizeParams& p) {
  NormalizeAffine a{};
  for (int ch = 0; ch < 4; ++ch) {
    a.scale[ch] = p.inv_std[ch] / 255.0f;
    a.shift[ch] = -p.mean[ch] * p.inv_std[ch];
  }
  return a;
}

// CPU kernel. `src` is dense NHWC uint8; `dst` is dense in p.layout with element type p.dtype.
void normalize_cpu(const uint8_t* src, void* dst, const NormalizeParams& p, int threads);

#if defined(PYXFER_WITH_CUDA)
// CUDA kernel on device pointers, enqueued on `stream` (a cudaStream_t cast to void*).
void normalize_cuda(const uint8_t* src, void* dst, const NormalizeParams& p, void* stream);
#endif

}  // namespace pyxfer
