#include "pyxfer/preprocess.h"

#include <algorithm>
#include <vector>

#include "neon_ops.h"
#include "pyxfer/half.h"
#include "pyxfer/parallel.h"
#include "resample_cpu.h"
#include "simd_env.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#define PYXFER_PREPROCESS_NEON 1
#endif

namespace pyxfer {
namespace {

struct Buffers {
  std::vector<float> img, tmp, acc;
  cpu::Axis ax, ay;
};

template <typename T, typename Cast>
void store(const float* img, int64_t y0, int64_t ny, int64_t x0, int64_t nx,
           const PreprocessParams& p, int64_t i, T* out, Cast cast) {
  // img holds rows [y0, y0 + ny) x cols [x0, x0 + nx) of the crop; the rest is zero padding.
  const int64_t oh = p.crop_h, ow = p.crop_w, c = p.c, plane = oh * ow;
  for (int64_t ch = 0; ch < c; ++ch) {
    const float scale = p.inv_std[ch] / 255.0f;
    const float shift = -p.mean[ch] * p.inv_std[ch];
    for (int64_t y = 0; y < oh; ++y) {
      for (int64_t x = 0; x < ow; ++x) {
        const bool inside = y >= y0 && y < y0 + ny && x >= x0 && x < x0 + nx;
        const float v = inside ? img[ch * ny * nx + (y - y0) * nx + (x - x0)] : 0.f;
        const int64_t o = p.layout == Layout::NCHW ? (i * c + ch) * plane + y * ow + x
                                                   : (i * plane + y * ow + x) * c + ch;
        out[o] = cast(v * scale + shift);
      }
    }
  }
}

#if defined(PYXFER_PREPROCESS_NEON)
inline void store16(float* d, const float32x4_t v[4]) {
  for (int k = 0; k < 4; ++k) vst1q_f32(d + 4 * k, v[k]);
}
inline void store16(uint16_t* d, const float32x4_t v[4]) {
  vst1q_u16(d, cpu::neon_ops::half8(v[0], v[1]));
  vst1q_u16(d + 8, cpu::neon_ops::half8(v[2], v[3]));
}

// store() for NCHW with NEON: per output row the padding, then the crop's values 16 per step
// (the same product and sum, each rounded; float16 by FCVTN, equal to the cast for the finite
// values that arise here).
template <typename T, typename Cast>
void store_nchw_neon(const float* img, int64_t y0, int64_t ny, int64_t x0, int64_t nx,
                     const PreprocessParams& p, int64_t i, T* out, Cast cast) {
  const int64_t oh = p.crop_h, ow = p.crop_w, c = p.c, plane = oh * ow;
  for (int64_t ch = 0; ch < c; ++ch) {
    const float scale = p.inv_std[ch] / 255.0f;
    const float shift = -p.mean[ch] * p.inv_std[ch];
    const T pad = cast(0.f * scale + shift);
    for (int64_t y = 0; y < oh; ++y) {
      T* dst = out + (i * c + ch) * plane + y * ow;
      if (y < y0 || y >= y0 + ny) {
        for (int64_t x = 0; x < ow; ++x) dst[x] = pad;
        continue;
      }
      for (int64_t x = 0; x < x0; ++x) dst[x] = pad;
      for (int64_t x = x0 + nx; x < ow; ++x) dst[x] = pad;
      const float* src = img + ch * ny * nx + (y - y0) * nx;
      T* d = dst + x0;
      int64_t x = 0;
      for (; x + 16 <= nx; x += 16) {
        float32x4_t v[4];
        for (int k = 0; k < 4; ++k) {
          v[k] = cpu::neon_ops::affine4(vld1q_f32(src + x + 4 * k), scale, shift);
        }
        store16(d + x, v);
      }
      for (; x < nx; ++x) d[x] = cast(src[x] * scale + shift);
    }
  }
}
#endif

// `vec`: the NEON paths on AArch64 (the same values as the plain loops).
void one_image(const ImageRef& im, const PreprocessParams& p, int64_t i, void* out, Buffers& b,
               bool vec) {
  const PreprocessGeometry g = preprocess_geometry(im.h, im.w, p);
  cpu::build_axis(im.w, g.new_w, b.ax);
  cpu::build_axis(im.h, g.new_h, b.ay);
  // Part of the crop window that lies inside the resized image.
  const int64_t ry0 = std::max<int64_t>(g.top, 0), ry1 = std::min(g.top + p.crop_h, g.new_h);
  const int64_t rx0 = std::max<int64_t>(g.left, 0), rx1 = std::min(g.left + p.crop_w, g.new_w);
  const int64_t ny = std::max<int64_t>(ry1 - ry0, 0), nx = std::max<int64_t>(rx1 - rx0, 0);
  b.img.resize(static_cast<size_t>(p.c * ny * nx));
  if (ny > 0 && nx > 0) {
    cpu::resample_crop(im.data, im.w, p.c, 0, 0, im.h, im.w, b.ax, b.ay, ry0, ny, rx0, nx, false,
                       p.quantize, vec, b.img.data(), b.tmp, b.acc);
  }
  const int64_t y0 = ry0 - g.top, x0 = rx0 - g.left;  // position inside the crop
#if defined(PYXFER_PREPROCESS_NEON)
  if (vec && p.layout == Layout::NCHW) {
    if (p.dtype == OutDType::Float32) {
      store_nchw_neon(b.img.data(), y0, ny, x0, nx, p, i, static_cast<float*>(out),
                      [](float v) { return v; });
    } else {
      store_nchw_neon(b.img.data(), y0, ny, x0, nx, p, i, static_cast<uint16_t*>(out),
                      [](float v) { return float_to_half_bits_branchless(v); });
    }
    return;
  }
#endif
  if (p.dtype == OutDType::Float32) {
    store(b.img.data(), y0, ny, x0, nx, p, i, static_cast<float*>(out), [](float v) { return v; });
  } else {
    store(b.img.data(), y0, ny, x0, nx, p, i, static_cast<uint16_t*>(out),
          [](float v) { return float_to_half_bits_branchless(v); });
  }
}

}  // namespace

const char* preprocess_simd_path() {
#if defined(PYXFER_PREPROCESS_NEON)
  if (!cpu::simd_forced_baseline()) return "neon";
#endif
  return "baseline";
}

void preprocess_cpu(const ImageRef* images, int64_t n, void* out, const PreprocessParams& p,
                    int threads) {
  const bool vec = !cpu::simd_forced_baseline();  // PYXFER_SIMD=baseline|scalar: plain loops
  parallel_for(n, threads, 1, [&](int64_t begin, int64_t end) {
    thread_local Buffers b;  // reused across images and calls
    for (int64_t i = begin; i < end; ++i) one_image(images[i], p, i, out, b, vec);
  });
}

}  // namespace pyxfer
