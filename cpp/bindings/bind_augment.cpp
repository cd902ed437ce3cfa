#include <cstring>
#include <string>

#include "checks.h"
#include "images.h"
#include "pyxfer/augment.h"
#include "pyxfer/half.h"
#include "pyxfer/philox.h"

namespace pyxfer::bind {

namespace {

// Largest jitter strength and blur sigma: every float32 parameter sampled from them stays finite.
constexpr double kMaxSetting = 1e30;

double cfg_number(const py::dict& d, const char* key, double fallback, double lo, double hi,
                  const std::string& where, bool whole = false) {
  if (!d.contains(key)) return fallback;
  const py::object item = d[key];
  double v = 0.0;
  try {
    v = py::cast<double>(item);
  } catch (const py::cast_error&) {
    fail(where + "['" + key + "']: expected a number, received " +
         py::str(py::type::of(item)).cast<std::string>());
  }
  if (!std::isfinite(v) || v < lo || v > hi || (whole && v != std::floor(v))) {
    std::ostringstream s;
    s << where << "['" << key << "']: expected a finite " << (whole ? "integer" : "value")
      << " in [" << lo << ", " << hi << "], received " << v;
    fail(s.str());
  }
  return v;
}

ViewConfig parse_config(const py::handle& h, size_t i) {
  const std::string where = "configs[" + std::to_string(i) + "]";
  if (!py::isinstance<py::dict>(h)) fail(where + ": expected a dict of view settings");
  const auto d = py::reinterpret_borrow<py::dict>(h);
  static const char* known[] = {"crop_mode", "scale_min", "scale_max", "ratio_min", "ratio_max",
                                "flip_p", "jitter_p", "brightness", "contrast", "saturation",
                                "hue", "gray_p", "blur_p", "sigma_min", "sigma_max",
                                "blur_kernel", "solarize_p", "solarize_threshold", "ra_n",
                                "ra_magnitude", "ra_p", "ra_fill", "cutout_p", "cutout_size",
                                "cutout_fill"};
  for (auto item : d) {
    if (!py::isinstance<py::str>(item.first)) fail(where + ": expected setting names (str)");
    const std::string k = py::cast<std::string>(item.first);
    bool ok = false;
    for (const char* name : known) ok = ok || k == name;
    if (!ok) fail(where + ": unknown setting '" + k + "'");
  }
  ViewConfig c;
  c.crop_mode = static_cast<int>(cfg_number(d, "crop_mode", 0, 0, 1, where, true));
  c.scale_min = cfg_number(d, "scale_min", c.scale_min, 0, 1, where);
  c.scale_max = cfg_number(d, "scale_max", c.scale_max, c.scale_min, 1, where);
  c.ratio_min = cfg_number(d, "ratio_min", c.ratio_min, 1e-6, 1e6, where);
  c.ratio_max = cfg_number(d, "ratio_max", c.ratio_max, c.ratio_min, 1e6, where);
  if (c.scale_max <= 0) fail(where + "['scale_max']: expected a positive value");
  c.flip_p = cfg_number(d, "flip_p", c.flip_p, 0, 1, where);
  c.jitter_p = cfg_number(d, "jitter_p", c.jitter_p, 0, 1, where);
  c.brightness = cfg_number(d, "brightness", c.brightness, 0, kMaxSetting, where);
  c.contrast = cfg_number(d, "contrast", c.contrast, 0, kMaxSetting, where);
  c.saturation = cfg_number(d, "saturation", c.saturation, 0, kMaxSetting, where);
  c.hue = cfg_number(d, "hue", c.hue, 0, 0.5, where);
  c.gray_p = cfg_number(d, "gray_p", c.gray_p, 0, 1, where);
  c.blur_p = cfg_number(d, "blur_p", c.blur_p, 0, 1, where);
  c.sigma_min = cfg_number(d, "sigma_min", c.sigma_min, 1e-6, kMaxSetting, where);
  c.sigma_max = cfg_number(d, "sigma_max", c.sigma_max, c.sigma_min, kMaxSetting, where);
  c.blur_kernel =
      static_cast<int>(cfg_number(d, "blur_kernel", c.blur_kernel, 1, 1001, where, true));
  if (c.blur_kernel % 2 == 0) {
    fail(where + "['blur_kernel']: expected an odd size, received " +
         std::to_string(c.blur_kernel));
  }
  c.solarize_p = cfg_number(d, "solarize_p", c.solarize_p, 0, 1, where);
  c.solarize_threshold = cfg_number(d, "solarize_threshold", c.solarize_threshold, 0, 256, where);
  c.ra_n = static_cast<int>(cfg_number(d, "ra_n", c.ra_n, 0, kRaSlots, where, true));
  if (d.contains("ra_magnitude") && !d["ra_magnitude"].is_none()) {
    c.ra_magnitude = cfg_number(d, "ra_magnitude", c.ra_magnitude, 0, 1, where);
  }
  c.ra_p = cfg_number(d, "ra_p", c.ra_p, 0, 1, where);
  c.ra_fill = cfg_number(d, "ra_fill", c.ra_fill, 0, 255, where, true);
  c.cutout_p = cfg_number(d, "cutout_p", c.cutout_p, 0, 1, where);
  c.cutout_size = cfg_number(d, "cutout_size", c.cutout_size, 0, 1, where);
  c.cutout_fill = cfg_number(d, "cutout_fill", c.cutout_fill, 0, 255, where, true);
  return c;
}

std::vector<int64_t> int_vector(const py::array& a, const char* name, int64_t n) {
  if (a.dtype().kind() != 'i' && a.dtype().kind() != 'u') {
    fail(std::string(name) + ": expected an integer array, received " + dtype_str(a));
  }
  check_ndim(a, name, 1, "(N,)");
  if (a.shape(0) != n) {
    fail(std::string(name) + ": expected " + std::to_string(n) + " values, received " +
         std::to_string(a.shape(0)));
  }
  auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  return std::vector<int64_t>(c.data(), c.data() + n);
}

py::array_t<float> sample(const py::list& configs, const py::array& heights,
                          const py::array& widths, const py::array& indices, uint64_t seed,
                          int64_t epoch, int threads) {
  check_threads(threads);
  if (configs.empty()) fail("configs: expected at least one view configuration, received none");
  std::vector<ViewConfig> cfg;
  for (size_t i = 0; i < configs.size(); ++i) cfg.push_back(parse_config(configs[i], i));
  const int64_t n = heights.ndim() == 1 ? heights.shape(0) : -1;
  const auto hs = int_vector(heights, "heights", n);
  const auto ws = int_vector(widths, "widths", n);
  const auto idx = int_vector(indices, "indices", n);
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    if (hs[k] <= 0 || ws[k] <= 0 || hs[k] > (1 << 24) || ws[k] > (1 << 24)) {
      fail("heights/widths: expected image sizes in [1, 2^24], received " +
           std::to_string(hs[k]) + "x" + std::to_string(ws[k]) + " at " + std::to_string(i));
    }
    if (idx[k] < 0 || idx[k] > 0xffffffffLL) {
      fail("indices: expected sample indices in [0, 2^32), received " + std::to_string(idx[k]));
    }
  }
  if (epoch < 0 || epoch > 0xffffffffLL) {
    fail("epoch: expected a value in [0, 2^32), received " + std::to_string(epoch));
  }
  const auto views = static_cast<int64_t>(cfg.size());
  py::array_t<float> out({n * views, static_cast<int64_t>(kParamCount)});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    sample_params_cpu(cfg.data(), views, hs.data(), ws.data(), idx.data(), n, seed,
                      static_cast<uint32_t>(epoch), dst, threads);
  }
  return out;
}

// Column k of a parameter row as an integer: a whole float in [lo, hi], or -1 when it is not one.
// Bounds are then compared in int64 (a float32 sum rounds above 2^24 pixels).
int64_t whole_column(const float* row, int k, int64_t lo, int64_t hi) {
  const double v = row[k];
  if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) || v != std::floor(v)) {
    return -1;
  }
  return static_cast<int64_t>(v);
}

// The RandAugment and cutout columns of one row: op codes, and the values the kernel converts
// to integers (posterize bits, fill levels, cutout box) in range.
void check_randaugment(const float* p, const std::string& where) {
  for (int s = 0; s < kRaSlots; ++s) {
    const int64_t op = whole_column(p, kRaOp0 + 2 * s, 0, kRaOpCount - 1);
    if (op < 0) {
      fail(where + ": expected a RandAugment op in 0.." + std::to_string(kRaOpCount - 1) +
           " in column " + std::to_string(kRaOp0 + 2 * s) + ", received " +
           std::to_string(p[kRaOp0 + 2 * s]));
    }
    const float v = p[kRaMag0 + 2 * s];
    const bool factor = op == kRaColor || op == kRaContrast || op == kRaBrightness ||
                        op == kRaSharpness;
    const bool translate = op == kRaTranslateX || op == kRaTranslateY;
    if ((op == kRaPosterize && whole_column(p, kRaMag0 + 2 * s, 0, 8) < 0) ||
        (factor && v < 0.f) || (translate && (v < -1.f || v > 1.f))) {
      fail(where + ": expected posterize bits in 0..8, factors >= 0 and translations in "
                   "[-1, 1] in column " + std::to_string(kRaMag0 + 2 * s) + ", received " +
           std::to_string(v) + " for op " + std::to_string(op));
    }
  }
  if (whole_column(p, kRaFill, 0, 255) < 0 || whole_column(p, kCutoutFill, 0, 255) < 0) {
    fail(where + ": expected fill levels as integers in [0, 255]");
  }
  if (p[kCutout] != 0.f && p[kCutout] != 1.f) {
    fail(where + ": expected 0 or 1 in flag column " + std::to_string(kCutout) + ", received " +
         std::to_string(p[kCutout]));
  }
  for (int k : {kCutoutY, kCutoutX, kCutoutSize}) {
    if (!(p[k] >= 0.f && p[k] <= 1.f)) {
      fail(where + ": expected a fraction in [0, 1] in cutout column " + std::to_string(k) +
           ", received " + std::to_string(p[k]));
    }
  }
}

// Validates every parameter row against its image: what the kernel indexes with (crop box, blur
// kernel, jitter order) is checked in int64. `randaugment`: the kernel that runs has the
// RandAugment / cutout stage (the CPU kernel with quantize=True).
void check_params(const float* prm, int64_t rows, const std::vector<ImageRef>& ims,
                  int64_t views, bool randaugment) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = prm + r * kParamCount;
    const ImageRef& im = ims[static_cast<size_t>(r / views)];
    const std::string where = "params[" + std::to_string(r) + "]";
    for (int k = 0; k < kParamCount; ++k) {
      if (!std::isfinite(p[k])) {
        fail(where + ": expected finite values, received " + std::to_string(p[k]) +
             " in column " + std::to_string(k));
      }
    }
    const int64_t top = whole_column(p, kTop, 0, im.h - 1);
    const int64_t left = whole_column(p, kLeft, 0, im.w - 1);
    const int64_t h = whole_column(p, kCropH, 1, im.h);
    const int64_t w = whole_column(p, kCropW, 1, im.w);
    if (top < 0 || left < 0 || h < 0 || w < 0 || top + h > im.h || left + w > im.w) {
      fail(where + ": expected an integer crop box inside the " + std::to_string(im.h) + "x" +
           std::to_string(im.w) + " image, received top=" + std::to_string(p[kTop]) + " left=" +
           std::to_string(p[kLeft]) + " h=" + std::to_string(p[kCropH]) + " w=" +
           std::to_string(p[kCropW]));
    }
    for (int k : {kFlip, kJitter, kGray, kBlur, kSolarize}) {
      if (p[k] != 0.f && p[k] != 1.f) {
        fail(where + ": expected 0 or 1 in flag column " + std::to_string(k) + ", received " +
             std::to_string(p[k]));
      }
    }
    if (p[kBrightness] < 0 || p[kContrast] < 0 || p[kSaturation] < 0 || p[kHue] < -0.5f ||
        p[kHue] > 0.5f) {
      fail(where + ": expected jitter factors >= 0 and hue in [-0.5, 0.5]");
    }
    int seen = 0;
    for (int i = 0; i < 4; ++i) {
      const int64_t o = whole_column(p, kOrder0 + i, 0, 3);
      if (o < 0) fail(where + ": expected an order of 0..3");
      seen |= 1 << o;
    }
    if (seen != 15) fail(where + ": expected the jitter order to be a permutation of 0..3");
    if (p[kBlur] != 0.f) {
      const int64_t k = whole_column(p, kBlurKernel, 1, 1001);
      if (k < 0 || k % 2 == 0 || p[kBlurSigma] <= 0) {
        fail(where + ": expected an odd blur kernel in [1, 1001] and a positive sigma");
      }
    }
    check_randaugment(p, where);
    if (!randaugment && uses_randaugment(p)) {
      fail(where + ": RandAugment ops and cutout run in the CPU kernel with quantize=True "
                   "(uint8 levels, as torchvision); received them for the float or CUDA path");
    }
  }
}

// The parameter rows as a copy owned by the call, validated: the kernel reads rows while it runs
// with the GIL released, and a row changed by another thread after the checks could move a crop
// box outside its image.
std::vector<float> params_copy(const py::array& params, int64_t rows,
                               const std::vector<ImageRef>& ims, int64_t views, bool randaugment) {
  check_dtype(params, "params", is_float32(params), "float32");
  check_c_contiguous(params, "params");
  check_shape(params, "params", {rows, static_cast<py::ssize_t>(kParamCount)});
  std::vector<float> prm(static_cast<size_t>(rows * kParamCount));
  if (!prm.empty()) std::memcpy(prm.data(), params.data(), prm.size() * sizeof(float));
  check_params(prm.data(), rows, ims, views, randaugment);
  return prm;
}

void apply(const py::object& images, const py::array& params, py::array out, int64_t views,
           const std::vector<double>& mean, const std::vector<double>& std, bool channels_last,
           bool quantize, int threads) {
  check_threads(threads);
  if (views <= 0) fail("views: expected a positive count, received " + std::to_string(views));
  const ImageBatch ims = image_batch(images);
  const int64_t n = ims.size(), c = ims.c;
  const int64_t rows = checked_product({n, views}, "views");
  check_dtype(out, "out", is_float32(out) || is_float16(out), "float32 or float16");
  check_c_contiguous(out, "out");
  check_writeable(out, "out");
  check_ndim(out, "out", 4, channels_last ? "(N*V, h, w, C)" : "(N*V, C, h, w)");
  const int64_t oh = channels_last ? out.shape(1) : out.shape(2);
  const int64_t ow = channels_last ? out.shape(2) : out.shape(3);
  if (oh <= 0 || ow <= 0) fail("out: expected a positive output size, received " + shape_str(out));
  if (channels_last) {
    check_shape(out, "out", {rows, oh, ow, c});
  } else {
    check_shape(out, "out", {rows, c, oh, ow});
  }
  std::vector<Buffer> inputs = ims.spans;
  inputs.push_back({"params", span_of(params)});
  check_no_overlap({{"out", span_of(out)}}, inputs);
  const std::vector<float> prm = params_copy(params, rows, ims.refs, views, quantize);
  ApplyParams p;
  p.c = c, p.views = views, p.out_h = oh, p.out_w = ow;
  set_normalization(p, mean, std, c);
  p.dtype = is_float16(out) ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  augment_apply_cpu(ims.refs.data(), n, prm.data(), rows, dst, p, threads);
}

// CUDA variant: device pointers of the images (HWC uint8), params validated on the host.
void apply_cuda(const std::vector<uintptr_t>& ptrs, const std::vector<int64_t>& hs,
                const std::vector<int64_t>& ws, int64_t c, const py::array& params, uintptr_t out,
                int64_t views, int64_t out_h, int64_t out_w, const std::vector<double>& mean,
                const std::vector<double>& std, bool half, bool channels_last, bool quantize,
                uintptr_t stream) {
  if (views <= 0) fail("views: expected a positive count, received " + std::to_string(views));
  std::vector<Buffer> inputs;
  const std::vector<ImageRef> ims = device_images(ptrs, hs, ws, c, inputs);
  const auto n = static_cast<int64_t>(ims.size());
  const int64_t rows = checked_product({n, views}, "views");
  if (out == 0 && n > 0) fail("out: expected a device pointer, received 0");
  if (out_h <= 0 || out_w <= 0) {
    fail("out_h/out_w: expected a positive output size, received " + std::to_string(out_h) +
         "x" + std::to_string(out_w));
  }
  const int64_t out_bytes = checked_product({rows, c, out_h, out_w, half ? 2 : 4}, "out");
  check_no_overlap({{"out", span_at(out, out_bytes, "out")}}, inputs);
  const std::vector<float> prm = params_copy(params, rows, ims, views, false);
  ApplyParams p;
  p.c = c, p.views = views, p.out_h = out_h, p.out_w = out_w;
  set_normalization(p, mean, std, c);
  p.dtype = half ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
#if defined(PYXFER_WITH_CUDA)
  std::vector<const uint8_t*> dev(ptrs.size());
  for (size_t i = 0; i < ptrs.size(); ++i) dev[i] = reinterpret_cast<const uint8_t*>(ptrs[i]);
  py::gil_scoped_release release;
  augment_apply_cuda(dev.data(), hs.data(), ws.data(), n, prm.data(), rows,
                     reinterpret_cast<void*>(out), p, reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, p);
#endif
}

py::array_t<uint32_t> philox(const py::array& counters, uint64_t key0, uint64_t key1) {
  if (counters.dtype().kind() != 'u' || counters.itemsize() != 4) {
    fail("counters: expected dtype uint32, received " + dtype_str(counters));
  }
  check_ndim(counters, "counters", 2, "(N, 4)");
  if (counters.shape(1) != 4) fail("counters: expected shape (N, 4), received " + shape_str(counters));
  if (key0 > 0xffffffffULL || key1 > 0xffffffffULL) fail("key: expected two 32-bit words");
  auto c = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>::ensure(counters);
  const int64_t n = c.shape(0);
  py::array_t<uint32_t> out({n, static_cast<int64_t>(4)});
  const uint32_t key[2] = {static_cast<uint32_t>(key0), static_cast<uint32_t>(key1)};
  for (int64_t i = 0; i < n; ++i) philox4x32_10(c.data() + 4 * i, key, out.mutable_data() + 4 * i);
  return out;
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::array_t<uint16_t> half_bits(const FloatArray& x) {
  py::array_t<uint16_t> out(x.size());
  for (py::ssize_t i = 0; i < x.size(); ++i) {
    out.mutable_data()[i] = float_to_half_bits_branchless(x.data()[i]);
  }
  return out;
}

}  // namespace

void bind_augment(py::module_& m) {
  m.attr("AUGMENT_PARAM_COUNT") = static_cast<int>(kParamCount);
  m.def("philox4x32_10", &philox, py::arg("counters"), py::arg("key0"), py::arg("key1"),
        "Philox4x32-10 of each uint32 counter row (N, 4) under key (key0, key1) -> (N, 4).");
  m.def("half_bits", &half_bits, py::arg("values"),
        "float32 values -> IEEE binary16 bit patterns (the kernels' float16 store).");
  m.def("augment_sample", &sample, py::arg("configs"), py::arg("heights"), py::arg("widths"),
        py::arg("indices"), py::arg("seed"), py::arg("epoch"), py::arg("threads") = 0,
        "Sample float32 (N * V, P) view parameters; row n * V + v is view v of image n.");
  m.def("augment_apply", &apply, py::arg("images"), py::arg("params"), py::arg("out"),
        py::arg("views"), py::arg("mean"), py::arg("std"), py::arg("channels_last") = false,
        py::arg("quantize") = true, py::arg("threads") = 0,
        "Apply parameter rows to uint8 images (dense (N, H, W, C) or a list of (H, W, C)), "
        "writing float32/float16 views into `out`.");
  m.def("augment_apply_cuda", &apply_cuda, py::arg("ptrs"), py::arg("heights"),
        py::arg("widths"), py::arg("channels"), py::arg("params"), py::arg("out"),
        py::arg("views"), py::arg("out_h"), py::arg("out_w"), py::arg("mean"), py::arg("std"),
        py::arg("half"), py::arg("channels_last"), py::arg("quantize"), py::arg("stream"),
        "CUDA variant of augment_apply on raw device pointers (used by pyxfer.ops.augment).");
}

}  // namespace pyxfer::bind
