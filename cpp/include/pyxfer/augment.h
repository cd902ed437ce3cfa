// Fused augmentation: parameter sampling (Philox, torchvision.transforms.v2 semantics) and the
// per-view pipeline random resized crop -> flip -> RandAugment ops -> colour jitter (random
// order) -> grayscale -> gaussian blur -> solarize -> cutout -> normalize. The maths here is shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "pyxfer/common.h"
#include "pyxfer/philox.h"

namespace pyxfer {

// Columns of one row of sampled parameters (float32). Keep in sync with
// pyxfer.ops.augment.PARAM_COLUMNS.
enum ParamColumn : int {
  kTop = 0,         // crop box, integer pixels
  kLeft = 1,
  kCropH = 2,
  kCropW = 3,
  kFlip = 4,        // 0 / 1
  kJitter = 5,      // colour jitter applied (0 / 1)
  kBrightness = 6,  // factors; identity (1, 1, 1, 0) when the op is off
  kContrast = 7,
  kSaturation = 8,
  kHue = 9,
  kOrder0 = 10,     // 10..13: jitter op at each position (0 b, 1 c, 2 s, 3 h)
  kGray = 14,       // 0 / 1
  kBlur = 15,       // 0 / 1
  kBlurSigma = 16,
  kBlurKernel = 17,  // odd kernel size
  kSolarize = 18,    // 0 / 1
  kSolarizeThreshold = 19,  // on the 0..255 scale
  kRaOp0 = 20,       // RandAugment op of slot 0 (RandAugOp; 0 identity)
  kRaMag0 = 21,      // its value (factor, degrees, bits, threshold, shear, translate fraction)
  kRaOp1 = 22,       // slot 1
  kRaMag1 = 23,
  kRaFill = 24,      // grey level of the pixels an affine op brings in from outside
  kCutout = 25,      // 0 / 1
  kCutoutY = 26,     // centre of the square, fraction of the height in [0, 1)
  kCutoutX = 27,     // ... of the width
  kCutoutSize = 28,  // side as a fraction of the output height / width
  kCutoutFill = 29,  // grey level of the square
  kParamCount = 30
};

// RandAugment slots per view (FixMatch and torchvision use N = 2).
constexpr int kRaSlots = 2;

// RandAugment operations (FixMatch's pool; the values of column kRaMag*: see sample_ra_op).
enum RandAugOp : int {
  kRaIdentity = 0,
  kRaAutoContrast = 1,
  kRaEqualize = 2,
  kRaRotate = 3,     // degrees, counter-clockwise, about the centre
  kRaSolarize = 4,   // threshold on the 0..255 scale
  kRaColor = 5,      // saturation factor
  kRaPosterize = 6,  // bits kept (0..8)
  kRaContrast = 7,   // factor
  kRaBrightness = 8,  // factor
  kRaSharpness = 9,   // factor
  kRaShearX = 10,     // shear coefficient (tan of the shear angle), about the top-left corner
  kRaShearY = 11,
  kRaTranslateX = 12,  // fraction of the width (int(fraction * width) pixels)
  kRaTranslateY = 13,  // fraction of the height
  kRaOpCount = 14
};

// Sampling configuration of one view (torchvision transform arguments).
struct ViewConfig {
  int crop_mode = 0;  // 0 random resized crop, 1 whole image
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double flip_p = 0.5;
  double jitter_p = 0.8;
  double brightness = 0.4, contrast = 0.4, saturation = 0.4, hue = 0.1;
  double gray_p = 0.2;
  double blur_p = 0.0;
  double sigma_min = 0.1, sigma_max = 2.0;
  int blur_kernel = 23;
  double solarize_p = 0.0;
  double solarize_threshold = 128.0;
  int ra_n = 0;               // RandAugment ops per view (0..kRaSlots)
  double ra_magnitude = -1.0;  // in [0, 1]; < 0: uniform per op (FixMatch)
  double ra_p = 1.0;           // probability of applying each chosen op
  double ra_fill = 128.0;      // affine fill level
  double cutout_p = 0.0;
  double cutout_size = 0.5;    // side fraction
  double cutout_fill = 127.0;
};

// The value of RandAugment op `op` at magnitude m in [0, 1] (FixMatch, Sohn et al. 2020,
// Table 12: m is the position in the op's range; signed ops take `negative`'s sign).
PYXFER_HD float ra_value(int op, double m, bool negative) {
  const double sign = negative ? -1.0 : 1.0;
  switch (op) {
    case kRaRotate:
      return static_cast<float>(sign * 30.0 * m);
    case kRaSolarize:
      return static_cast<float>(256.0 * (1.0 - m));
    case kRaColor:
    case kRaContrast:
    case kRaBrightness:
    case kRaSharpness:
      return static_cast<float>(0.05 + 0.9 * m);
    case kRaPosterize: {
      const int drop = static_cast<int>(5.0 * m);
      return static_cast<float>(8 - (drop < 4 ? drop : 4));
    }
    case kRaShearX:
    case kRaShearY:
    case kRaTranslateX:
    case kRaTranslateY:
      return static_cast<float>(sign * 0.3 * m);
    default:
      return 0.f;
  }
}

// Python's round() (half to even), as torchvision's int(round(x)).
PYXFER_HD int64_t round_half_even(double x) { return static_cast<int64_t>(rint(x)); }

// RandomResizedCrop.get_params: 10 tries (one Philox block each: scale, log-ratio, top, left),
// then the central crop with the ratio clamped.
PYXFER_HD void sample_crop(const ViewConfig& c, const ViewRng& rng, int64_t H, int64_t W,
                           float* row) {
  if (c.crop_mode == 1) {
    row[kTop] = 0.f, row[kLeft] = 0.f;
    row[kCropH] = static_cast<float>(H), row[kCropW] = static_cast<float>(W);
    return;
  }
  const double area = static_cast<double>(H) * static_cast<double>(W);
  const double lr0 = log(c.ratio_min), lr1 = log(c.ratio_max);
  for (uint32_t t = 0; t < 10; ++t) {
    uint32_t u[4];
    rng.block(t, u);
    const double target = area * (c.scale_min + (c.scale_max - c.scale_min) * philox_unit(u[0]));
    const double ar = exp(lr0 + (lr1 - lr0) * philox_unit(u[1]));
    const int64_t w = round_half_even(sqrt(target * ar));
    const int64_t h = round_half_even(sqrt(target / ar));
    if (0 < w && w <= W && 0 < h && h <= H) {
      row[kTop] = static_cast<float>(philox_below(u[2], H - h + 1));
      row[kLeft] = static_cast<float>(philox_below(u[3], W - w + 1));
      row[kCropH] = static_cast<float>(h), row[kCropW] = static_cast<float>(w);
      return;
    }
  }
  const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
  int64_t w = W, h = H;
  if (in_ratio < c.ratio_min) {
    h = round_half_even(static_cast<double>(w) / c.ratio_min);
  } else if (in_ratio > c.ratio_max) {
    w = round_half_even(static_cast<double>(h) * c.ratio_max);
  }
  row[kTop] = static_cast<float>((H - h) / 2);
  row[kLeft] = static_cast<float>((W - w) / 2);
  row[kCropH] = static_cast<float>(h), row[kCropW] = static_cast<float>(w);
}

// uniform in [max(0, 1 - x), 1 + x] (ColorJitter's factor range), identity when x == 0.
PYXFER_HD float jitter_factor(double x, uint32_t bits) {
  if (x <= 0.0) return 1.f;
  const double lo = 1.0 - x > 0.0 ? 1.0 - x : 0.0;
  return static_cast<float>(lo + (1.0 + x - lo) * philox_unit(bits));
}

// All parameters of one view. Blocks: 0..9 crop tries, 10 coin flips, 11 jitter factors,
// 12 permutation + sigma, 13 solarize, 14 + s RandAugment slot s (op, magnitude, sign, coin),
// 16 cutout (coin, centre); fixed so one op's settings never shift another's draws.
PYXFER_HD void sample_view(const ViewConfig& c, int64_t H, int64_t W, uint64_t seed,
                           uint32_t epoch, uint32_t sample, uint32_t view, float* row) {
  const ViewRng rng = make_view_rng(seed, epoch, sample, view);
  for (int k = 0; k < kParamCount; ++k) row[k] = 0.f;
  sample_crop(c, rng, H, W, row);
  uint32_t coins[4], fac[4], perm[4], sol[4];
  rng.block(10, coins);
  rng.block(11, fac);
  rng.block(12, perm);
  rng.block(13, sol);
  row[kFlip] = philox_unit(coins[0]) < c.flip_p ? 1.f : 0.f;
  const bool jitter = philox_unit(coins[1]) < c.jitter_p &&
                      (c.brightness > 0 || c.contrast > 0 || c.saturation > 0 || c.hue > 0);
  row[kJitter] = jitter ? 1.f : 0.f;
  row[kBrightness] = jitter ? jitter_factor(c.brightness, fac[0]) : 1.f;
  row[kContrast] = jitter ? jitter_factor(c.contrast, fac[1]) : 1.f;
  row[kSaturation] = jitter ? jitter_factor(c.saturation, fac[2]) : 1.f;
  row[kHue] = jitter && c.hue > 0
                  ? static_cast<float>(-c.hue + 2.0 * c.hue * philox_unit(fac[3]))
                  : 0.f;
  int order[4] = {0, 1, 2, 3};
  for (int i = 3; i >= 1; --i) {  // Fisher-Yates: uniform over the 24 orders
    const int j = static_cast<int>(philox_below(perm[3 - i], i + 1));
    const int tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (int i = 0; i < 4; ++i) row[kOrder0 + i] = static_cast<float>(order[i]);
  row[kGray] = philox_unit(coins[2]) < c.gray_p ? 1.f : 0.f;
  const bool blur = philox_unit(coins[3]) < c.blur_p;
  row[kBlur] = blur ? 1.f : 0.f;
  row[kBlurSigma] =
      static_cast<float>(c.sigma_min + (c.sigma_max - c.sigma_min) * philox_unit(perm[3]));
  row[kBlurKernel] = static_cast<float>(c.blur_kernel);
  row[kSolarize] = philox_unit(sol[0]) < c.solarize_p ? 1.f : 0.f;
  row[kSolarizeThreshold] = static_cast<float>(c.solarize_threshold);
  for (int s = 0; s < kRaSlots && s < c.ra_n; ++s) {
    uint32_t u[4];
    rng.block(14u + static_cast<uint32_t>(s), u);
    if (!(philox_unit(u[3]) < c.ra_p)) continue;
    const int op = static_cast<int>(philox_below(u[0], kRaOpCount));
    const double m = c.ra_magnitude < 0.0 ? philox_unit(u[1]) : c.ra_magnitude;
    row[kRaOp0 + 2 * s] = static_cast<float>(op);
    row[kRaMag0 + 2 * s] = ra_value(op, m, philox_unit(u[2]) < 0.5);
  }
  row[kRaFill] = static_cast<float>(c.ra_fill);
  uint32_t cut[4];
  rng.block(16, cut);
  row[kCutout] = philox_unit(cut[0]) < c.cutout_p ? 1.f : 0.f;
  row[kCutoutY] = static_cast<float>(philox_unit(cut[1]));
  row[kCutoutX] = static_cast<float>(philox_unit(cut[2]));
  row[kCutoutSize] = static_cast<float>(c.cutout_size);
  row[kCutoutFill] = static_cast<float>(c.cutout_fill);
}

// Does a parameter row use the RandAugment or cutout stage?
PYXFER_HD bool uses_randaugment(const float* row) {
  for (int s = 0; s < kRaSlots; ++s) {
    if (row[kRaOp0 + 2 * s] != 0.f) return true;
  }
  return row[kCutout] != 0.f;
}

// The inverse affine map (output -> input pixel, centred coordinates) of torchvision's
// _get_inverse_affine_matrix with scale 1, in double: m = (a, b, c, d, e, f) maps (x, y) to
// (a x + b y + c, d x + e y + f). `cx`, `cy` centre, angle and shears in degrees.
PYXFER_HD void inverse_affine(double cx, double cy, double angle, double tx, double ty,
                              double shx, double shy, double* m) {
  const double deg = 3.14159265358979323846 / 180.0;  // CPython's math.radians factor
  const double rot = angle * deg, sx = shx * deg, sy = shy * deg;
  const double cos_sy = cos(sy), tan_sx = tan(sx), rms = rot - sy;
  const double cxt = cx + tx, cyt = cy + ty;
  const double a = cos(rms) / cos_sy;
  const double b = -(a * tan_sx + sin(rot));
  const double c = sin(rms) / cos_sy;
  const double d = cos(rot) - c * tan_sx;
  m[0] = d, m[1] = -b, m[2] = 0.0, m[3] = -c, m[4] = a, m[5] = 0.0;
  m[2] += cx - m[0] * cxt - m[1] * cyt;
  m[5] += cy - m[3] * cxt - m[4] * cyt;
}

// The inverse affine map of RandAugment op `op` with value `v` on an h x w image, as the
// arguments torchvision's RandAugment passes to F.rotate / F.affine. False for non-affine ops.
PYXFER_HD bool ra_affine(int op, float v, int64_t h, int64_t w, double* m) {
  const double rad = 180.0 / 3.14159265358979323846;  // CPython's math.degrees factor
  const double hw = static_cast<double>(w) * 0.5, hh = static_cast<double>(h) * 0.5;
  switch (op) {
    case kRaRotate: {  // F.rotate(angle): angle % 360, then the inverse of -angle
      double a = fmod(static_cast<double>(v), 360.0);
      if (a < 0.0) a += 360.0;
      inverse_affine(0.0, 0.0, -a, 0.0, 0.0, 0.0, 0.0, m);
      return true;
    }
    case kRaShearX:  // F.affine(shear=[degrees(atan(v)), 0], center=[0, 0])
      inverse_affine(-hw, -hh, 0.0, 0.0, 0.0, atan(static_cast<double>(v)) * rad, 0.0, m);
      return true;
    case kRaShearY:
      inverse_affine(-hw, -hh, 0.0, 0.0, 0.0, 0.0, atan(static_cast<double>(v)) * rad, m);
      return true;
    case kRaTranslateX:  // F.affine(translate=[int(v * w), 0])
      inverse_affine(0.0, 0.0, 0.0, trunc(static_cast<double>(v) * static_cast<double>(w)), 0.0,
                     0.0, 0.0, m);
      return true;
    case kRaTranslateY:
      inverse_affine(0.0, 0.0, 0.0, 0.0, trunc(static_cast<double>(v) * static_cast<double>(h)),
                     0.0, 0.0, m);
      return true;
    default:
      return false;
  }
}

// torchvision's grid for the inverse map m on an h x w image (float32 theta divided by the
// half sizes, as _affine_grid) and grid_sample's unnormalisation (align_corners=False):
// g = (a', b', c', d', e', f', sx, sy) with input x = (a' bx + b' by + c' + 1) * sx - 0.5 for
// bx = x - (w - 1) / 2, by = y - (h - 1) / 2.
PYXFER_HD void affine_grid_coeffs(const double* m, int64_t h, int64_t w, float* g) {
  const float hw = static_cast<float>(0.5 * static_cast<double>(w));
  const float hh = static_cast<float>(0.5 * static_cast<double>(h));
  for (int k = 0; k < 3; ++k) {
    g[k] = static_cast<float>(m[k]) / hw;
    g[3 + k] = static_cast<float>(m[3 + k]) / hh;
  }
  g[6] = static_cast<float>(static_cast<double>(w) / 2.0);
  g[7] = static_cast<float>(static_cast<double>(h) / 2.0);
}

// ---- per-pixel colour maths on the 0..255 scale (torchvision v2 formulas) -------------------
// `q` (quantize) reproduces torchvision's casts back to uint8 between ops: truncation after the
// blend-based ops and hue, rounding after blur and resize.

PYXFER_HD float max_f(float a, float b) { return a > b ? a : b; }
PYXFER_HD float min_f(float a, float b) { return a < b ? a : b; }
PYXFER_HD float clamp255(float v) { return min_f(max_f(v, 0.f), 255.f); }

// floor for values >= 0 (truncation toward zero); plain conversions keep loops vectorisable.
PYXFER_HD float floor_pos(float v) { return static_cast<float>(static_cast<int32_t>(v)); }

// floor for any |v| < 2^31.
PYXFER_HD float floor_any(float v) {
  const float t = static_cast<float>(static_cast<int32_t>(v));
  return t > v ? t - 1.f : t;
}

// Round half to even for |v| < 2^22 (torch.round), without libm.
PYXFER_HD float round_even(float v) {
  const float magic = 12582912.f;  // 1.5 * 2^23
  return (v + magic) - magic;
}

PYXFER_HD float quant_trunc(float v, bool q) { return q ? floor_pos(v) : v; }

// a * b + c with one rounding. torchvision writes its weighted sums as `x.add_(y, alpha=a)`,
// which torch's vectorised CPU kernels (AVX2, AVX-512, NEON) and CUDA compute as a fused
// multiply-add; the kernels here do the same, so grey levels land on the same side of every
// truncation (separately rounded, a grey pixel's saturation blend loses a level in ~1 of 2 cases).
PYXFER_HD float fused_mul_add(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114), as torchvision's rgb_to_grayscale.
PYXFER_HD float gray_of(float r, float g, float b) {
  return fused_mul_add(b, 0.114f, fused_mul_add(g, 0.587f, r * 0.2989f));
}

// torchvision's _blend: x.mul(ratio).add_(other, alpha=1 - ratio), clamped (and truncated).
PYXFER_HD float blend(float x, float other, float ratio, float one_minus_ratio, bool q) {
  return quant_trunc(clamp255(fused_mul_add(other, one_minus_ratio, x * ratio)), q);
}

// Hue shift of one RGB pixel (values 0..255) through HSV, as torchvision's _rgb_to_hsv /
// _hsv_to_rgb on to_dtype(x, float32, scale=True) = x * (1 / 255) (same float32 operations;
// written branch-free so CPU loops vectorise).
PYXFER_HD void hue_shift(float& r8, float& g8, float& b8, float hue, bool q) {
  const float r = r8 * (1.f / 255.f), g = g8 * (1.f / 255.f), b = b8 * (1.f / 255.f);
  const float maxc = max_f(r, max_f(g, b));
  const float minc = min_f(r, min_f(g, b));
  const bool eqc = maxc == minc;
  const float cr = maxc - minc;
  const float s = cr / (eqc ? 1.f : maxc);
  const float div = eqc ? 1.f : cr;
  const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
  const float hr = bc - gc, hg = (rc + 2.f) - bc, hb = (gc + 4.f) - rc;
  const float mr = maxc == r ? 1.f : 0.f;
  const float mg = maxc == g ? 1.f - mr : 0.f;
  float h = hr * mr + hg * mg + hb * (1.f - mr - mg);
  h = h * (1.f / 6.f) + 1.f;         // in [5/6, 11/6]
  h = h - floor_pos(h);              // fmod(., 1.0), exact for positive values
  h = h + hue;
  h = h - floor_any(h);              // remainder(., 1.0)
  const float v = maxc;
  const float h6 = h * 6.f;
  const float fi = floor_pos(h6);
  const float f = h6 - fi;
  const float i = fi >= 6.f ? fi - 6.f : fi;  // remainder(i, 6); h6 <= 6
  const float sxf = s * f;
  const float oms = 1.f - s;
  const float pq = min_f(max_f((1.f - sxf) * v, 0.f), 1.f);
  const float pt = min_f(max_f((sxf + oms) * v, 0.f), 1.f);
  const float pp = min_f(max_f(oms * v, 0.f), 1.f);
  // i: 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
  const float m0 = i == 0.f ? 1.f : 0.f, m1 = i == 1.f ? 1.f : 0.f, m2 = i == 2.f ? 1.f : 0.f;
  const float m3 = i == 3.f ? 1.f : 0.f, m4 = i == 4.f ? 1.f : 0.f, m5 = i == 5.f ? 1.f : 0.f;
  const float ro = v * (m0 + m5) + pq * m1 + pp * (m2 + m3) + pt * m4;
  const float go = pt * m0 + v * (m1 + m2) + pq * m3 + pp * (m4 + m5);
  const float bo = pp * (m0 + m1) + pt * m2 + v * (m3 + m4) + pq * m5;
  if (q) {
    r8 = floor_pos(ro * 255.999f), g8 = floor_pos(go * 255.999f), b8 = floor_pos(bo * 255.999f);
  } else {
    r8 = ro * 255.f, g8 = go * 255.f, b8 = bo * 255.f;
  }
}

// Gaussian kernel of odd size k (torchvision: softmax of -(x / sigma)^2 over
// x = linspace(-(k-1)/(2 sqrt 2), +(k-1)/(2 sqrt 2), k)). Writes k weights.
// The weights are exactly symmetric (like torch's linspace, computed from the left half), and the
// blur kernels sum each output as w[h] * v[0] + w[h - d] * (v[-d] + v[+d]) for d = 1, 2, ... in
// that order (h = k / 2): the same float operations on CPU and CUDA.
PYXFER_HD void gaussian_kernel1d(int k, float sigma, float* w) {
  const double lim = (k - 1) / (2.0 * sqrt(2.0));
  double total = 0.0;
  for (int i = 0; i < k; ++i) {
    const int m = i < k - 1 - i ? i : k - 1 - i;
    const double x = k == 1 ? 0.0 : -lim + 2.0 * lim * m / (k - 1);
    const double z = x / sigma;
    w[i] = static_cast<float>(exp(-z * z));
    total += w[i];
  }
  for (int i = 0; i < k; ++i) w[i] = static_cast<float>(w[i] / total);
}

// Taps dropped at each end of a kernel from gaussian_kernel1d: the outermost pairs whose total
// weight stays below 4e-7, so together they move an output by less than 1e-4 grey levels (below
// the float rounding noise of torchvision's own convolution). Small sigmas keep few of the k taps.
PYXFER_HD int gaussian_trim(int k, const float* w) {
  double dropped = 0.0;
  int t = 0;
  while (t < k / 2) {
    dropped += static_cast<double>(w[t]) + static_cast<double>(w[k - 1 - t]);
    if (dropped * 255.0 >= 1e-4) break;
    ++t;
  }
  return t;
}

// Reflect index (no edge repeat) into [0, n); works for any offset.
PYXFER_HD int64_t reflect_index(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// ---- kernels ----------------------------------------------------------------------------------

// One input image, HWC uint8 with `c` channels (shared by the batch).
struct ImageRef {
  const uint8_t* data;
  int64_t h, w;
};

struct ApplyParams {
  int64_t c = 3;
  int64_t views = 1;        // rows of params per image: row r belongs to image r / views
  int64_t out_h = 0, out_w = 0;
  float mean[4] = {0.f, 0.f, 0.f, 0.f};
  float inv_std[4] = {1.f, 1.f, 1.f, 1.f};
  OutDType dtype = OutDType::Float32;
  Layout layout = Layout::NCHW;
  bool quantize = true;     // round to uint8 levels between ops, as torchvision does
};

// Sample `rows` = n * views parameter rows (row n * views + v) for images of sizes (hs[n], ws[n])
// with sample indices idx[n]; `configs` has one entry per view.
void sample_params_cpu(const ViewConfig* configs, int64_t views, const int64_t* hs,
                       const int64_t* ws, const int64_t* idx, int64_t n, uint64_t seed,
                       uint32_t epoch, float* out, int threads);

// Apply parameter rows to images; out is (rows, C, out_h, out_w) or (rows, out_h, out_w, C).
void augment_apply_cpu(const ImageRef* images, int64_t n_images, const float* params,
                       int64_t rows, void* out, const ApplyParams& p, int threads);

// Instruction-set path the CPU kernel runs for quantize=True ("avx512", "avx2", "baseline-sse2",
// ...): the best one this CPU supports, lowered by the environment variable
// PYXFER_SIMD=baseline|avx2 (read at each call). Every path gives the same output.
const char* augment_simd_path();

#if defined(PYXFER_WITH_CUDA)
// CUDA: image_ptrs / hs / ws / params on the host (device pointers to HWC uint8 images), out on
// the device; enqueued on `stream` (a cudaStream_t cast to void*).
void augment_apply_cuda(const uint8_t* const* image_ptrs, const int64_t* hs, const int64_t* ws,
                        int64_t n_images, const float* params_host, int64_t rows, void* out,
                        const ApplyParams& p, void* stream);
#endif

}  // namespace pyxfer
