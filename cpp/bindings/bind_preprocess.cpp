#include "checks.h"
#include "images.h"
#include "pyxfer/preprocess.h"

namespace pyxfer::bind {

namespace {

void preprocess(const py::object& images, py::array out, int64_t resize,
                const std::vector<double>& mean, const std::vector<double>& std,
                bool channels_last, bool quantize, int threads) {
  check_threads(threads);
  if (resize < 0) fail("resize: expected 0 (no resize) or a positive size, received " +
                       std::to_string(resize));
  int64_t c = 3;
  std::vector<py::array> keep;
  const std::vector<ImageRef> ims = image_refs(images, c, keep);
  const auto n = static_cast<int64_t>(ims.size());
  check_dtype(out, "out", is_float32(out) || is_float16(out), "float32 or float16");
  check_c_contiguous(out, "out");
  check_writeable(out, "out");
  check_ndim(out, "out", 4, channels_last ? "(N, h, w, C)" : "(N, C, h, w)");
  const int64_t oh = channels_last ? out.shape(1) : out.shape(2);
  const int64_t ow = channels_last ? out.shape(2) : out.shape(3);
  if (oh <= 0 || ow <= 0) fail("out: expected a positive crop size, received " + shape_str(out));
  if (channels_last) {
    check_shape(out, "out", {n, oh, ow, c});
  } else {
    check_shape(out, "out", {n, c, oh, ow});
  }
  PreprocessParams p;
  p.c = c, p.resize = resize, p.crop_h = oh, p.crop_w = ow;
  for (const ImageRef& im : ims) {
    const PreprocessGeometry g = preprocess_geometry(im.h, im.w, p);
    if (g.new_h <= 0 || g.new_w <= 0 || g.new_h > (1 << 20) || g.new_w > (1 << 20)) {
      fail("resize: a " + std::to_string(im.h) + "x" + std::to_string(im.w) +
           " image would resize to " + std::to_string(g.new_h) + "x" + std::to_string(g.new_w));
    }
  }
  const auto m = channel_vector(mean, c, "mean", false);
  const auto s = channel_vector(std, c, "std", true);
  for (int64_t i = 0; i < c; ++i) {
    p.mean[i] = m[static_cast<size_t>(i)];
    p.inv_std[i] = 1.0f / s[static_cast<size_t>(i)];
  }
  p.dtype = is_float16(out) ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  preprocess_cpu(ims.data(), n, dst, p, threads);
}

void preprocess_cuda_ptr(const std::vector<uintptr_t>& ptrs, const std::vector<int64_t>& hs,
                         const std::vector<int64_t>& ws, int64_t c, uintptr_t out, int64_t resize,
                         int64_t crop_h, int64_t crop_w, const std::vector<double>& mean,
                         const std::vector<double>& std, bool half, bool channels_last,
                         bool quantize, uintptr_t stream) {
  check_channels(c, "images");
  if (resize < 0) fail("resize: expected 0 (no resize) or a positive size");
  if (crop_h <= 0 || crop_w <= 0) fail("crop: expected a positive crop size");
  if (ptrs.size() != hs.size() || ptrs.size() != ws.size()) {
    fail("images: expected one height and width per image pointer");
  }
  PreprocessParams p;
  p.c = c, p.resize = resize, p.crop_h = crop_h, p.crop_w = crop_w;
  for (size_t i = 0; i < ptrs.size(); ++i) {
    if (ptrs[i] == 0 || hs[i] <= 0 || ws[i] <= 0) {
      fail("images[" + std::to_string(i) + "]: expected a non-empty image on the device");
    }
    const PreprocessGeometry g = preprocess_geometry(hs[i], ws[i], p);
    if (g.new_h <= 0 || g.new_w <= 0 || g.new_h > (1 << 20) || g.new_w > (1 << 20)) {
      fail("resize: image " + std::to_string(i) + " would resize to " + std::to_string(g.new_h) +
           "x" + std::to_string(g.new_w));
    }
  }
  if (out == 0 && !ptrs.empty()) fail("out: expected a device pointer");
  const auto m = channel_vector(mean, c, "mean", false);
  const auto s = channel_vector(std, c, "std", true);
  for (int64_t i = 0; i < c; ++i) {
    p.mean[i] = m[static_cast<size_t>(i)];
    p.inv_std[i] = 1.0f / s[static_cast<size_t>(i)];
  }
  p.dtype = half ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
#if defined(PYXFER_WITH_CUDA)
  std::vector<const uint8_t*> dev(ptrs.size());
  for (size_t i = 0; i < ptrs.size(); ++i) dev[i] = reinterpret_cast<const uint8_t*>(ptrs[i]);
  py::gil_scoped_release release;
  preprocess_cuda(dev.data(), hs.data(), ws.data(), static_cast<int64_t>(ptrs.size()),
                  reinterpret_cast<void*>(out), p, reinterpret_cast<void*>(stream));
#else
  (void)stream;
  throw std::runtime_error("pyxfer._C was built without CUDA: rebuild with PYXFER_WITH_CUDA=ON");
#endif
}

}  // namespace

void bind_preprocess(py::module_& m) {
  m.def("preprocess", &preprocess, py::arg("images"), py::arg("out"), py::arg("resize"),
        py::arg("mean"), py::arg("std"), py::arg("channels_last") = false,
        py::arg("quantize") = true, py::arg("threads") = 0,
        "uint8 images (dense (N, H, W, C) or a list of (H, W, C)) -> resize shorter side to "
        "`resize` -> centre crop to out's size -> normalize, written into `out`.");
  m.def("preprocess_cuda", &preprocess_cuda_ptr, py::arg("ptrs"), py::arg("heights"),
        py::arg("widths"), py::arg("channels"), py::arg("out"), py::arg("resize"),
        py::arg("crop_h"), py::arg("crop_w"), py::arg("mean"), py::arg("std"), py::arg("half"),
        py::arg("channels_last"), py::arg("quantize"), py::arg("stream"),
        "CUDA variant of preprocess on raw device pointers (used by pyxfer.ops.preprocess).");
}

}  // namespace pyxfer::bind
