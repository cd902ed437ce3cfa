// Antialiased bilinear resampling weights (separable triangle filter whose support grows with the
// downscale factor, as PIL and torch's `interpolate(..., antialias=True)` compute them), shared by
// host and device code. For uint8 images torch rounds the normalised weights to int16 at the
// largest precision under which the axis' largest weight still fits, accumulates in integers and
// rounds each pass back to uint8; `aa_precision` / `aa_quantize` reproduce that.
#pragma once

#include <cmath>
#include <cstdint>

#include "pyxfer/common.h"

namespace pyxfer {

// Support (in input pixels) of the filter for input/output sizes; align_corners=False scale.
PYXFER_HD double aa_support(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  return scale >= 1.0 ? scale : 1.0;  // interp_size 2 * 0.5 * scale
}

// Largest number of taps any output index uses.
PYXFER_HD int aa_max_taps(int64_t in, int64_t out) {
  return static_cast<int>(ceil(aa_support(in, out))) * 2 + 1;
}

// Weights of output index i (normalised to sum 1) into w[0..max_taps), first input index and tap
// count. Returns the largest weight.
PYXFER_HD double aa_weights_at(int64_t i, int64_t in, int64_t out, double* w, int64_t* xmin_out,
                               int* xsize_out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = aa_support(in, out);
  const int max_taps = aa_max_taps(in, out);
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  const double center = scale * (static_cast<double>(i) + 0.5);
  int64_t xmin = static_cast<int64_t>(center - support + 0.5);
  if (xmin < 0) xmin = 0;
  int64_t xmax = static_cast<int64_t>(center + support + 0.5);
  if (xmax > in) xmax = in;
  int64_t xsize = xmax - xmin;
  if (xsize < 0) xsize = 0;
  if (xsize > max_taps) xsize = max_taps;
  double total = 0.0;
  for (int64_t j = 0; j < xsize; ++j) {
    double x = (static_cast<double>(j + xmin) - center + 0.5) * invscale;
    x = x < 0 ? -x : x;
    const double v = x < 1.0 ? 1.0 - x : 0.0;
    w[j] = v;
    total += v;
  }
  double wmax = 0.0;
  if (total != 0.0) {
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] /= total;
      wmax = w[j] > wmax ? w[j] : wmax;
    }
  }
  for (int64_t j = xsize; j < max_taps; ++j) w[j] = 0.0;
  *xmin_out = xmin;
  *xsize_out = static_cast<int>(xsize);
  return wmax;
}

// Fixed-point precision (bits) for an axis whose largest weight is wmax.
PYXFER_HD unsigned aa_precision(double wmax) {
  unsigned p = 0;
  for (p = 0; p < 22; ++p) {
    const int next = static_cast<int>(0.5 + wmax * static_cast<double>(1 << (p + 1)));
    if (next >= (1 << 15)) break;
  }
  return p;
}

PYXFER_HD int16_t aa_quantize(double w, unsigned precision) {
  const double v = w * static_cast<double>(1 << precision);
  return static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
}

// Integer accumulator -> uint8 level, as torch's uint8 loops do.
PYXFER_HD int aa_finish(int32_t acc, unsigned precision) {
  const int v = acc >> precision;
  return v < 0 ? 0 : (v > 255 ? 255 : v);
}

}  // namespace pyxfer
