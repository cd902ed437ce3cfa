// Augmentation kernel stage (see augment_kernel.h): RandAugment's operations and Cutout on the
// planar uint8 view, as torchvision.transforms.v2.functional computes them on uint8 tensors.
//
// Scalar code, compiled in every instruction-set copy with floating-point contraction off: the
// few float expressions round the same way on every path (the fused multiply-add of sharpness is
// explicit, as torch's vectorised add_(alpha) computes it). The colour ops shared with the
// jitter stage (brightness, contrast, saturation, solarize) reuse augment_kernel_colour.h.
#ifndef PYXFER_AUG_NS
#error "define PYXFER_AUG_NS before including augment_kernel_randaugment.h"
#endif

namespace pyxfer::cpu::PYXFER_AUG_NS {
namespace {

// F.autocontrast: per channel (x - min) / ((max - min) * (1 / 255)), clamped and truncated.
inline void autocontrast_u8(uint8_t* img, int64_t c, int64_t n) {
  for (int64_t ch = 0; ch < c; ++ch) {
    uint8_t* p = img + ch * n;
    int lo = 255, hi = 0;
    for (int64_t i = 0; i < n; ++i) lo = p[i] < lo ? p[i] : lo, hi = p[i] > hi ? p[i] : hi;
    if (lo == hi) continue;  // torchvision: minimum 0, scale 1 -> unchanged
    const float mn = static_cast<float>(lo);
    const float inv_scale = (static_cast<float>(hi) - mn) * static_cast<float>(1.0 / 255.0);
    uint8_t lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = to_u8(clamp255((static_cast<float>(v) - mn) / inv_scale));
    for (int64_t i = 0; i < n; ++i) p[i] = lut[p[i]];
  }
}

// F.equalize: per channel, PIL's lookup table lut[k] = (cum[k - 1] + step / 2) / step with
// step = (pixels not at the largest level) / 255; unchanged when step == 0.
inline void equalize_u8(uint8_t* img, int64_t c, int64_t n) {
  for (int64_t ch = 0; ch < c; ++ch) {
    uint8_t* p = img + ch * n;
    int64_t hist[256] = {0};
    for (int64_t i = 0; i < n; ++i) ++hist[p[i]];
    int top = 255;
    while (top > 0 && hist[top] == 0) --top;
    const int64_t step = (n - hist[top]) / 255;
    if (step == 0) continue;
    uint8_t lut[256];
    lut[0] = 0;
    int64_t cum = 0;
    for (int k = 1; k < 256; ++k) {
      cum += hist[k - 1];
      const int64_t v = (cum + step / 2) / step;
      lut[k] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
    for (int64_t i = 0; i < n; ++i) p[i] = lut[p[i]];
  }
}

// F.posterize: keep the `bits` high bits.
inline void posterize_u8(uint8_t* img, int64_t total, int bits) {
  const auto mask = static_cast<uint8_t>(((1 << bits) - 1) << (8 - bits));
  for (int64_t i = 0; i < total; ++i) img[i] &= mask;
}

// F.adjust_sharpness: the interior blends with round(3x3 smooth (1 1 1 / 1 5 1 / 1 1 1) / 13)
// as view + (1 - f) * (blurred - view) (one fused multiply-add), clamped and truncated; the
// one-pixel border is kept. `tmp` holds one plane.
inline void sharpness_u8(uint8_t* img, int64_t c, int64_t h, int64_t w, float f, uint8_t* tmp) {
  if (h <= 2 || w <= 2) return;
  const auto alpha = static_cast<float>(1.0 - static_cast<double>(f));
  const int64_t n = h * w;
  for (int64_t ch = 0; ch < c; ++ch) {
    uint8_t* p = img + ch * n;
    for (int64_t i = 0; i < n; ++i) tmp[i] = p[i];
    for (int64_t y = 1; y < h - 1; ++y) {
      const uint8_t *a = tmp + (y - 1) * w, *m = tmp + y * w, *b = tmp + (y + 1) * w;
      for (int64_t x = 1; x < w - 1; ++x) {
        const int s = a[x - 1] + a[x] + a[x + 1] + m[x - 1] + 5 * m[x] + m[x + 1] + b[x - 1] +
                      b[x] + b[x + 1];
        const int blurred = (2 * s + 13) / 26;  // round(s / 13): never a tie
        const auto v = static_cast<float>(m[x]);
        const float out = fused_mul_add(static_cast<float>(blurred) - v, alpha, v);
        p[y * w + x] = to_u8(clamp255(out));
      }
    }
  }
}

// F.affine / F.rotate with nearest interpolation and a fill level: every output pixel takes
// the input pixel at torchvision's rounded grid position (half to even), or `fill` outside.
inline void affine_u8(uint8_t* img, int64_t c, int64_t h, int64_t w, const double* m,
                      uint8_t fill, uint8_t* tmp) {
  float g[8];
  affine_grid_coeffs(m, h, w, g);
  const int64_t n = h * w;
  for (int64_t i = 0; i < c * n; ++i) tmp[i] = img[i];
  const float x0 = (1.f - static_cast<float>(w)) * 0.5f, y0 = (1.f - static_cast<float>(h)) * 0.5f;
  for (int64_t y = 0; y < h; ++y) {
    const float by = y0 + static_cast<float>(y);
    for (int64_t x = 0; x < w; ++x) {
      const float bx = x0 + static_cast<float>(x);
      const float gx = (bx * g[0] + by * g[1]) + g[2];
      const float gy = (bx * g[3] + by * g[4]) + g[5];
      const float ux = (gx + 1.f) * g[6] - 0.5f, uy = (gy + 1.f) * g[7] - 0.5f;
      // far positions (and NaN) are outside before rounding: round_even needs |v| < 2^22
      const bool near = ux > -1.f && ux < static_cast<float>(w) + 1.f && uy > -1.f &&
                        uy < static_cast<float>(h) + 1.f;
      const float fx = near ? round_even(ux) : -1.f, fy = near ? round_even(uy) : -1.f;
      const bool inside = fx >= 0.f && fx < static_cast<float>(w) && fy >= 0.f &&
                          fy < static_cast<float>(h);
      const int64_t src = inside ? static_cast<int64_t>(fy) * w + static_cast<int64_t>(fx) : 0;
      for (int64_t ch = 0; ch < c; ++ch) {
        img[ch * n + y * w + x] = inside ? tmp[ch * n + src] : fill;
      }
    }
  }
}

// One RandAugment op on the (c, h, w) uint8 view. `tmp` holds c * h * w levels.
inline void randaugment_op(uint8_t* img, int64_t c, int64_t h, int64_t w, int op, float v,
                           uint8_t fill, uint8_t* tmp) {
  const int64_t n = h * w;
  double m[6];
  if (ra_affine(op, v, h, w, m)) {
    affine_u8(img, c, h, w, m, fill, tmp);
    return;
  }
  switch (op) {
    case kRaAutoContrast:
      autocontrast_u8(img, c, n);
      break;
    case kRaEqualize:
      equalize_u8(img, c, n);
      break;
    case kRaSolarize:
      solarize_u8(img, c * n, v);
      break;
    case kRaColor:
      if (c == 3 && v != 1.f) saturation_u8(img, n, v);
      break;
    case kRaPosterize:
      posterize_u8(img, c * n, static_cast<int>(v));
      break;
    case kRaContrast:
      if (v != 1.f) contrast_u8(img, c, n, v);
      break;
    case kRaBrightness:
      if (v != 1.f) brightness_u8(img, c * n, v);
      break;
    case kRaSharpness:
      if (v != 1.f) sharpness_u8(img, c, h, w, v, tmp);
      break;
    default:  // identity
      break;
  }
}

// Cutout (FixMatch's CutoutAbs): a square of side int(size * h) x int(size * w) around the centre
// (cy * h, cx * w), its top-left corner clamped to the image, its far side clipped, set to `fill`.
inline void cutout_u8(uint8_t* img, int64_t c, int64_t h, int64_t w, const float* prm) {
  const auto vh = static_cast<int64_t>(static_cast<double>(prm[kCutoutSize]) * static_cast<double>(h));
  const auto vw = static_cast<int64_t>(static_cast<double>(prm[kCutoutSize]) * static_cast<double>(w));
  const double cy = static_cast<double>(prm[kCutoutY]) * static_cast<double>(h);
  const double cx = static_cast<double>(prm[kCutoutX]) * static_cast<double>(w);
  const auto y0 = static_cast<int64_t>(cy - static_cast<double>(vh) / 2.0 > 0.0 ? cy - static_cast<double>(vh) / 2.0 : 0.0);
  const auto x0 = static_cast<int64_t>(cx - static_cast<double>(vw) / 2.0 > 0.0 ? cx - static_cast<double>(vw) / 2.0 : 0.0);
  const int64_t y1 = imin(h, y0 + vh), x1 = imin(w, x0 + vw);
  const auto fill = static_cast<uint8_t>(prm[kCutoutFill]);
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = x0; x < x1; ++x) img[(ch * h + y) * w + x] = fill;
    }
  }
}

}  // namespace
}  // namespace pyxfer::cpu::PYXFER_AUG_NS
