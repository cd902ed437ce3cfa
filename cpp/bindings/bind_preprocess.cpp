#include "checks.h"
#include "images.h"
#include "pyxfer/preprocess.h"

namespace pyxfer::bind {

namespace {

// Output geometry of every image, checked before any kernel runs: the shorter side resized to
// `resize` (at most 2^20) keeps both resized sides in [1, 2^20].
void check_geometry(const std::vector<ImageRef>& ims, const PreprocessParams& p) {
  for (size_t i = 0; i < ims.size(); ++i) {
    const PreprocessGeometry g = preprocess_geometry(ims[i].h, ims[i].w, p);
    if (g.new_h <= 0 || g.new_w <= 0 || g.new_h > (1 << 20) || g.new_w > (1 << 20)) {
      fail("resize: expected resized sides in [1, 2^20], received " + std::to_string(g.new_h) +
           "x" + std::to_string(g.new_w) + " for the " + std::to_string(ims[i].h) + "x" +
           std::to_string(ims[i].w) + " images[" + std::to_string(i) + "]");
    }
  }
}

void check_resize(int64_t resize) {
  if (resize < 0 || resize > (1 << 20)) {
    fail("resize: expected 0 (no resize) or a size in [1, 2^20], received " +
         std::to_string(resize));
  }
}

void preprocess(const py::object& images, py::array out, int64_t resize,
                const std::vector<double>& mean, const std::vector<double>& std,
                bool channels_last, bool quantize, int threads) {
  check_threads(threads);
  check_resize(resize);
  const ImageBatch ims = image_batch(images);
  const int64_t n = ims.size(), c = ims.c;
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
  check_no_overlap({{"out", span_of(out)}}, ims.spans);
  PreprocessParams p;
  p.c = c, p.resize = resize, p.crop_h = oh, p.crop_w = ow;
  check_geometry(ims.refs, p);
  set_normalization(p, mean, std, c);
  p.dtype = is_float16(out) ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  preprocess_cpu(ims.refs.data(), n, dst, p, threads);
}

void preprocess_cuda_ptr(const std::vector<uintptr_t>& ptrs, const std::vector<int64_t>& hs,
                         const std::vector<int64_t>& ws, int64_t c, uintptr_t out, int64_t resize,
                         int64_t crop_h, int64_t crop_w, const std::vector<double>& mean,
                         const std::vector<double>& std, bool half, bool channels_last,
                         bool quantize, uintptr_t stream) {
  check_resize(resize);
  if (crop_h <= 0 || crop_w <= 0) {
    fail("crop_h/crop_w: expected a positive crop size, received " + std::to_string(crop_h) +
         "x" + std::to_string(crop_w));
  }
  std::vector<Buffer> inputs;
  const std::vector<ImageRef> ims = device_images(ptrs, hs, ws, c, inputs);
  const auto n = static_cast<int64_t>(ims.size());
  PreprocessParams p;
  p.c = c, p.resize = resize, p.crop_h = crop_h, p.crop_w = crop_w;
  check_geometry(ims, p);
  if (out == 0 && n > 0) fail("out: expected a device pointer, received 0");
  const int64_t out_bytes = checked_product({n, c, crop_h, crop_w, half ? 2 : 4}, "out");
  check_no_overlap({{"out", span_at(out, out_bytes, "out")}}, inputs);
  set_normalization(p, mean, std, c);
  p.dtype = half ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  p.quantize = quantize;
#if defined(PYXFER_WITH_CUDA)
  std::vector<const uint8_t*> dev(ptrs.size());
  for (size_t i = 0; i < ptrs.size(); ++i) dev[i] = reinterpret_cast<const uint8_t*>(ptrs[i]);
  py::gil_scoped_release release;
  preprocess_cuda(dev.data(), hs.data(), ws.data(), n, reinterpret_cast<void*>(out), p,
                  reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, p);
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
