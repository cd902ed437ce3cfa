#include "pyxfer/augment.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "augment_cpu.h"
#include "pyxfer/half.h"
#include "pyxfer/parallel.h"
#include "resample_cpu.h"
#include "simd_env.h"

// The quantized kernel for the baseline instruction set of this build.
#define PYXFER_AUG_NS baseline
#include "augment_kernel.h"
#undef PYXFER_AUG_NS

namespace pyxfer {
namespace {

// Colour pipeline on one view held as planar float (c, n) on the 0..255 scale.
struct ViewBuffers {
  std::vector<float> img, tmp, acc, blur;
  cpu::Axis ax, ay;
};

void adjust_brightness(float* img, int64_t total, float f, bool q) {
  for (int64_t i = 0; i < total; ++i) img[i] = quant_trunc(clamp255(img[i] * f), q);
}

void adjust_contrast(float* img, int64_t c, int64_t n, float f, bool q) {
  double sum = 0.0;
  if (c == 3) {
    const float *r = img, *g = img + n, *b = img + 2 * n;
    for (int64_t i = 0; i < n; ++i) {
      const float gr = gray_of(r[i], g[i], b[i]);
      sum += q ? floor_pos(gr) : gr;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) sum += img[i];
  }
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float omf = static_cast<float>(1.0 - static_cast<double>(f));
  for (int64_t i = 0; i < c * n; ++i) img[i] = blend(img[i], mean, f, omf, q);
}

template <bool q>
void saturation_loop(float* img, int64_t n, float f) {
  float *r = img, *g = img + n, *b = img + 2 * n;
  const float omf = static_cast<float>(1.0 - static_cast<double>(f));
  for (int64_t i = 0; i < n; ++i) {
    float gr = gray_of(r[i], g[i], b[i]);
    if (q) gr = floor_pos(gr);
    r[i] = blend(r[i], gr, f, omf, q);
    g[i] = blend(g[i], gr, f, omf, q);
    b[i] = blend(b[i], gr, f, omf, q);
  }
}

void adjust_saturation(float* img, int64_t n, float f, bool q) {
  q ? saturation_loop<true>(img, n, f) : saturation_loop<false>(img, n, f);
}

template <bool q>
void hue_loop(float* __restrict r, float* __restrict g, float* __restrict b, int64_t n, float h) {
  for (int64_t i = 0; i < n; ++i) {
    float rr = r[i], gg = g[i], bb = b[i];
    hue_shift(rr, gg, bb, h, q);
    r[i] = rr, g[i] = gg, b[i] = bb;
  }
}

void adjust_hue(float* img, int64_t n, float h, bool q) {
  q ? hue_loop<true>(img, img + n, img + 2 * n, n, h)
    : hue_loop<false>(img, img + n, img + 2 * n, n, h);
}

void to_grayscale(float* img, int64_t n, bool q) {
  float *r = img, *g = img + n, *b = img + 2 * n;
  for (int64_t i = 0; i < n; ++i) {
    const float gr = quant_trunc(gray_of(r[i], g[i], b[i]), q);
    r[i] = gr, g[i] = gr, b[i] = gr;
  }
}

// Separable gaussian blur with reflect padding, per channel plane (h, w).
void gaussian_blur(float* img, int64_t c, int64_t h, int64_t w, int k, float sigma, bool q,
                   std::vector<float>& tmp) {
  std::vector<float> kw(static_cast<size_t>(k));
  gaussian_kernel1d(k, sigma, kw.data());
  const int half = k / 2;
  const int j0 = gaussian_trim(k, kw.data());
  const int64_t n = h * w;
  tmp.resize(static_cast<size_t>(n));
  std::vector<int64_t> xi(static_cast<size_t>(w + 2 * half)), yi(static_cast<size_t>(h + 2 * half));
  for (int64_t i = 0; i < w + 2 * half; ++i) xi[static_cast<size_t>(i)] = reflect_index(i - half, w);
  for (int64_t i = 0; i < h + 2 * half; ++i) yi[static_cast<size_t>(i)] = reflect_index(i - half, h);
  std::vector<float> row(static_cast<size_t>(w + 2 * half));
  for (int64_t ch = 0; ch < c; ++ch) {
    float* p = img + ch * n;
    for (int64_t y = 0; y < h; ++y) {  // horizontal into tmp
      const float* src = p + y * w;
      for (int64_t i = 0; i < w + 2 * half; ++i) row[static_cast<size_t>(i)] = src[xi[static_cast<size_t>(i)]];
      float* t = tmp.data() + y * w;
      const float* rc = row.data() + half;
      const float wc = kw[static_cast<size_t>(half)];
      for (int64_t x = 0; x < w; ++x) t[x] = wc * rc[x];
      for (int d = 1; d <= half - j0; ++d) {
        const float wd = kw[static_cast<size_t>(half - d)];
        for (int64_t x = 0; x < w; ++x) t[x] += wd * (rc[x - d] + rc[x + d]);
      }
    }
    for (int64_t y = 0; y < h; ++y) {  // vertical back into p
      float* o = p + y * w;
      const float* tc = tmp.data() + y * w;
      const float wc = kw[static_cast<size_t>(half)];
      for (int64_t x = 0; x < w; ++x) o[x] = wc * tc[x];
      for (int d = 1; d <= half - j0; ++d) {
        const float wd = kw[static_cast<size_t>(half - d)];
        const float* ta = tmp.data() + yi[static_cast<size_t>(y + half - d)] * w;
        const float* tb = tmp.data() + yi[static_cast<size_t>(y + half + d)] * w;
        for (int64_t x = 0; x < w; ++x) o[x] += wd * (ta[x] + tb[x]);
      }
      if (q) {
        for (int64_t x = 0; x < w; ++x) o[x] = round_even(clamp255(o[x]));
      }
    }
  }
}

template <typename T, typename Cast>
void store_view(const float* img, const ApplyParams& p, int64_t row, T* out, Cast cast) {
  const int64_t n = p.out_h * p.out_w, c = p.c;
  for (int64_t ch = 0; ch < c; ++ch) {
    const float scale = p.inv_std[ch] / 255.0f;
    const float shift = -p.mean[ch] * p.inv_std[ch];
    const float* src = img + ch * n;
    if (p.layout == Layout::NCHW) {
      T* dst = out + (row * c + ch) * n;
      for (int64_t i = 0; i < n; ++i) dst[i] = cast(src[i] * scale + shift);
    } else {
      T* dst = out + row * n * c + ch;
      for (int64_t i = 0; i < n; ++i) dst[i * c] = cast(src[i] * scale + shift);
    }
  }
}

void apply_view(const ImageRef& im, const float* prm, const ApplyParams& p, int64_t row,
                void* out, ViewBuffers& b) {
  const int64_t c = p.c, oh = p.out_h, ow = p.out_w, n = oh * ow;
  const bool q = p.quantize;
  const auto top = static_cast<int64_t>(prm[kTop]), left = static_cast<int64_t>(prm[kLeft]);
  const auto ch = static_cast<int64_t>(prm[kCropH]), cw = static_cast<int64_t>(prm[kCropW]);
  cpu::build_axis(cw, ow, b.ax);
  cpu::build_axis(ch, oh, b.ay);
  b.img.resize(static_cast<size_t>(c * n));
  float* img = b.img.data();
  cpu::resample_crop(im.data, im.w, c, top, left, ch, cw, b.ax, b.ay, 0, oh, 0, ow,
                     prm[kFlip] != 0.f, q, false, img, b.tmp, b.acc);
  if (prm[kJitter] != 0.f) {
    for (int pos = 0; pos < 4; ++pos) {
      switch (static_cast<int>(prm[kOrder0 + pos])) {
        case 0:
          if (prm[kBrightness] != 1.f) adjust_brightness(img, c * n, prm[kBrightness], q);
          break;
        case 1:
          if (prm[kContrast] != 1.f) adjust_contrast(img, c, n, prm[kContrast], q);
          break;
        case 2:
          if (c == 3 && prm[kSaturation] != 1.f) adjust_saturation(img, n, prm[kSaturation], q);
          break;
        default:
          if (c == 3 && prm[kHue] != 0.f) adjust_hue(img, n, prm[kHue], q);
          break;
      }
    }
  }
  if (prm[kGray] != 0.f && c == 3) to_grayscale(img, n, q);
  if (prm[kBlur] != 0.f) {
    gaussian_blur(img, c, oh, ow, static_cast<int>(prm[kBlurKernel]), prm[kBlurSigma], q, b.blur);
  }
  if (prm[kSolarize] != 0.f) {
    const float thr = prm[kSolarizeThreshold];
    for (int64_t i = 0; i < c * n; ++i) img[i] = img[i] >= thr ? 255.f - img[i] : img[i];
  }
  if (p.dtype == OutDType::Float32) {
    store_view(img, p, row, static_cast<float*>(out), [](float v) { return v; });
  } else {
    store_view(img, p, row, static_cast<uint16_t*>(out),
               [](float v) { return float_to_half_bits_branchless(v); });
  }
}

}  // namespace

void sample_params_cpu(const ViewConfig* configs, int64_t views, const int64_t* hs,
                       const int64_t* ws, const int64_t* idx, int64_t n, uint64_t seed,
                       uint32_t epoch, float* out, int threads) {
  parallel_for(n * views, threads, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = r / views, v = r % views;
      sample_view(configs[v], hs[i], ws[i], seed, epoch, static_cast<uint32_t>(idx[i]),
                  static_cast<uint32_t>(v), out + r * kParamCount);
    }
  });
}

// ---- quantized path: scratch and instruction-set dispatch -------------------------------------

namespace {

// Axis weights of one view in torch's int16 fixed point (see cpu::ResampleAxis).
struct AxisStore {
  std::vector<int32_t> xmin;
  std::vector<int> xsize;
  std::vector<int16_t> w, wv;
  std::vector<double> wd;
};

void build_resample_axis(int64_t in, int64_t out, int64_t c, AxisStore& st,
                         cpu::ResampleAxis& a) {
  a.identity = in == out;
  a.wv = nullptr, a.groups = 0;
  if (a.identity) return;
  const int max_taps = aa_max_taps(in, out);
  st.wd.resize(static_cast<size_t>(out * max_taps));
  st.xmin.resize(static_cast<size_t>(out));
  st.xsize.resize(static_cast<size_t>(out));
  // Precision from the largest weight of the axis (as torch); taps = the longest row actually
  // used (often one less than the bound), then the clamped, zero-padded rows.
  double wmax = 0.0;
  int longest = 1;
  for (int64_t i = 0; i < out; ++i) {
    int64_t xmin = 0;
    int xsize = 0;
    wmax = std::max(wmax, aa_weights_at(i, in, out, st.wd.data() + i * max_taps, &xmin, &xsize));
    st.xmin[static_cast<size_t>(i)] = static_cast<int32_t>(xmin);
    st.xsize[static_cast<size_t>(i)] = xsize;
    longest = std::max(longest, xsize);
  }
  const int taps = static_cast<int>(std::min<int64_t>(longest, in));
  st.w.assign(static_cast<size_t>(out * taps), 0);
  a.precision = aa_precision(wmax);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t xmin = st.xmin[static_cast<size_t>(i)];
    const int64_t start = std::min<int64_t>(xmin, in - taps);
    st.xmin[static_cast<size_t>(i)] = static_cast<int32_t>(start);
    int16_t* w = st.w.data() + i * taps + (xmin - start);
    const double* wd = st.wd.data() + i * max_taps;
    for (int j = 0; j < st.xsize[static_cast<size_t>(i)]; ++j) {
      w[j] = aa_quantize(wd[j], a.precision);
    }
  }
  a.taps = taps;
  a.bias = static_cast<int32_t>(1u << (a.precision - 1));
  a.xmin = st.xmin.data();
  a.w = st.w.data();
  if (c == 3) {
    a.groups = (taps + 3) / 4;
    st.wv.assign(static_cast<size_t>(out * a.groups * 16), 0);
    for (int64_t i = 0; i < out; ++i) {
      for (int j = 0; j < taps; ++j) {
        const int16_t wj = st.w[static_cast<size_t>(i * taps + j)];
        int16_t* lane = st.wv.data() + (i * a.groups + j / 4) * 16 + ((j / 2) % 2) * 8;
        for (int k = 0; k < 3; ++k) lane[2 * k + j % 2] = wj;
      }
    }
    a.wv = st.wv.data();
  }
}

// Axes of recent views, keyed by (input size, output size, channels): building one costs about as
// much as the whole colour pipeline of a 32 px view, and small views repeat their few crop sizes.
// Direct-mapped by the input size for small outputs; a larger output keeps only the last axis.
struct AxisCache {
  static constexpr int64_t kSlots = 64, kSmallOut = 128;
  struct Slot {
    int64_t in = -1, out = -1, c = -1;
    AxisStore st;
    cpu::ResampleAxis a;
  };
  Slot slots[kSlots];

  const cpu::ResampleAxis& get(int64_t in, int64_t out, int64_t c) {
    Slot& e = slots[out <= kSmallOut ? in % kSlots : 0];
    if (e.in != in || e.out != out || e.c != c) {
      build_resample_axis(in, out, c, e.st, e.a);
      e.in = in, e.out = out, e.c = c;
    }
    return e.a;
  }
};

struct QuantBuffers {
  AxisCache cx, cy;
  std::vector<uint8_t> u8;
  std::vector<int32_t> i32;
  std::vector<uint32_t> u32;
  std::vector<float> f32;
  std::vector<const float*> rowp;
};

void prepare_quantized(const float* prm, const ApplyParams& p, QuantBuffers& b,
                       cpu::QuantScratch& s) {
  const int64_t c = p.c, oh = p.out_h, ow = p.out_w, n = oh * ow;
  const auto ch = static_cast<int64_t>(prm[kCropH]), cw = static_cast<int64_t>(prm[kCropW]);
  s.ax = b.cx.get(cw, ow, c);
  s.ay = b.cy.get(ch, oh, 1);
  if (s.ay.identity) {
    s.r0 = 0, s.r1 = oh;
  } else {
    s.r0 = s.ay.xmin[0], s.r1 = 0;
    for (int64_t y = 0; y < oh; ++y) {
      s.r0 = std::min<int64_t>(s.r0, s.ay.xmin[y]);
      s.r1 = std::max<int64_t>(s.r1, s.ay.xmin[y] + s.ay.taps);
    }
  }
  const int64_t nrows = s.r1 - s.r0;
  b.u8.resize(static_cast<size_t>(c * nrows * ow + 2 * c * n));
  s.tmp8 = b.u8.data();
  s.img = b.u8.data() + c * nrows * ow;
  s.img2 = s.img + c * n;
  const bool blur = prm[kBlur] != 0.f;
  const int k = blur ? static_cast<int>(prm[kBlurKernel]) : 0, half = k / 2;
  const int64_t wp = ow + 2 * half, hp = oh + 2 * half;
  b.i32.resize(static_cast<size_t>(ow + (blur ? wp + hp : 0)));
  s.iacc = b.i32.data();
  b.u32.resize(static_cast<size_t>(ow));
  s.packed = b.u32.data();
  s.blur_k = k;
  if (blur) {
    // the padded rows and the ring of horizontal sums start on cache lines: with row widths
    // of whole lines (e.g. 224 floats) no vector load of the vertical pass straddles two
    b.f32.resize(static_cast<size_t>(k + 2 * wp + n + ow + 32));
    float* f = b.f32.data();
    auto line = [](float* q) {
      return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(q) + 63) & ~uintptr_t{63});
    };
    gaussian_kernel1d(k, prm[kBlurSigma], f);
    int32_t* xi = b.i32.data() + ow;
    int32_t* yi = xi + wp;
    auto reflect = [half](int64_t i, int64_t len) {  // the division only at the borders
      const int64_t j = i - half;
      return static_cast<int32_t>(j >= 0 && j < len ? j : reflect_index(j, len));
    };
    for (int64_t i = 0; i < wp; ++i) xi[i] = reflect(i, ow);
    for (int64_t i = 0; i < hp; ++i) yi[i] = reflect(i, oh);
    s.blur_w = f, s.blur_xi = xi, s.blur_yi = yi;
    s.frow = line(f + k), s.ftmp = line(s.frow + 2 * wp), s.facc = s.ftmp + n;
    b.rowp.resize(static_cast<size_t>(k + 1));
    s.blur_rows = b.rowp.data();
  }
}

using QuantFn = void (*)(const ImageRef&, const float*, const ApplyParams&, int64_t, void*,
                         const cpu::QuantScratch&);

struct SimdPath {
  const char* name;
  QuantFn fn;
};

const char* baseline_name() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__SSE2__) || defined(_M_X64)
  return "baseline-sse2";
#elif defined(__aarch64__)
  return "baseline-armv8";  // plain C++ for the base instruction set (the compiler may vectorise)
#else
  return "baseline-scalar";
#endif
}

// The best path this CPU runs, lowered by PYXFER_SIMD=baseline|scalar|avx2 if set.
SimdPath select_path() {
  const bool force_base = cpu::simd_forced_baseline();
#if defined(PYXFER_X86_DISPATCH)
  const char* want = std::getenv("PYXFER_SIMD");
  __builtin_cpu_init();
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  const bool only2 = want != nullptr && std::strcmp(want, "avx2") == 0;
  if (has512 && !force_base && !only2) return {"avx512", &cpu::avx512::apply_view_quantized};
  if (has2 && !force_base) return {"avx2", &cpu::avx2::apply_view_quantized};
#endif
#if defined(PYXFER_ARM_NEON)
  if (!force_base) return {"neon", &cpu::neon::apply_view_quantized};
#endif
  (void)force_base;
  return {baseline_name(), &cpu::baseline::apply_view_quantized};
}

}  // namespace

const char* augment_simd_path() { return select_path().name; }

void augment_apply_cpu(const ImageRef* images, int64_t n_images, const float* params,
                       int64_t rows, void* out, const ApplyParams& p, int threads) {
  (void)n_images;
  // The float path has no RandAugment / cutout stage (the bindings refuse such rows there).
  if (p.quantize) {
    const QuantFn fn = select_path().fn;
    parallel_for(rows, threads, 1, [&](int64_t begin, int64_t end) {
      thread_local QuantBuffers b;  // reused across views and calls
      cpu::QuantScratch s;
      for (int64_t r = begin; r < end; ++r) {
        const float* prm = params + r * kParamCount;
        prepare_quantized(prm, p, b, s);
        fn(images[r / p.views], prm, p, r, out, s);
      }
    });
    return;
  }
  parallel_for(rows, threads, 1, [&](int64_t begin, int64_t end) {
    thread_local ViewBuffers b;  // reused across views and calls: no per-view allocation
    for (int64_t r = begin; r < end; ++r) {
      apply_view(images[r / p.views], params + r * kParamCount, p, r, out, b);
    }
  });
}

}  // namespace pyxfer
