// preprocess: uint8 HWC images of any size -> resize the shorter side (antialiased) -> centre
// crop -> normalize -> float (N, C, h, w) or (N, h, w, C), in one pass per image. Semantics of
// torchvision v2 Resize(size) + CenterCrop(crop) + ToDtype(float32, scale=True) + Normalize.
#pragma once

#include <cmath>
#include <cstdint>

#include "pyxfer/augment.h"
#include "pyxfer/common.h"

namespace pyxfer {

struct PreprocessParams {
  int64_t c = 3;
  int64_t resize = 0;  // target shorter side; 0 = no resize
  int64_t crop_h = 0, crop_w = 0;
  float mean[4] = {0.f, 0.f, 0.f, 0.f};
  float inv_std[4] = {1.f, 1.f, 1.f, 1.f};
  OutDType dtype = OutDType::Float32;
  Layout layout = Layout::NCHW;
  bool quantize = true;  // round the resize to uint8 like torchvision's uint8 path
};

struct PreprocessGeometry {
  int64_t new_h, new_w;  // size after Resize
  int64_t top, left;     // crop offset in the resized image (negative: zero padding)
};

// torchvision: new_short = s, new_long = int(s * long / short); crop offsets
// int(round((H - c) / 2.0)), or -(c - H) // 2 of zero padding when the crop is larger.
PYXFER_HD int64_t center_offset(int64_t size, int64_t crop) {
  if (crop > size) return -((crop - size) / 2);
  return static_cast<int64_t>(rint(static_cast<double>(size - crop) / 2.0));
}

PYXFER_HD PreprocessGeometry preprocess_geometry(int64_t h, int64_t w, const PreprocessParams& p) {
  PreprocessGeometry g{h, w, 0, 0};
  if (p.resize > 0) {
    const int64_t short_side = w <= h ? w : h, long_side = w <= h ? h : w;
    const auto new_long = static_cast<int64_t>(static_cast<double>(p.resize * long_side) /
                                               static_cast<double>(short_side));
    g.new_w = w <= h ? p.resize : new_long;
    g.new_h = w <= h ? new_long : p.resize;
  }
  g.top = center_offset(g.new_h, p.crop_h);
  g.left = center_offset(g.new_w, p.crop_w);
  return g;
}

void preprocess_cpu(const ImageRef* images, int64_t n, void* out, const PreprocessParams& p,
                    int threads);

// Path of the CPU preprocess and normalize kernels: "neon" on AArch64 (unless the environment
// variable PYXFER_SIMD=baseline|scalar asks for the plain loops, read at each call), otherwise
// "baseline" (plain loops the compiler vectorises). Every path gives the same output.
const char* preprocess_simd_path();

#if defined(PYXFER_WITH_CUDA)
// CUDA: image_ptrs / hs / ws on the host (device pointers to HWC uint8 images), out on device.
void preprocess_cuda(const uint8_t* const* image_ptrs, const int64_t* hs, const int64_t* ws,
                     int64_t n, void* out, const PreprocessParams& p, void* stream);
#endif

}  // namespace pyxfer
