#include "checks.h"
#include "pyxfer/normalize.h"

namespace pyxfer::bind {

namespace {

NormalizeParams make_params(int64_t n, int64_t h, int64_t w, int64_t c,
                            const std::vector<double>& mean, const std::vector<double>& std,
                            bool half, bool channels_last) {
  check_channels(c, "images");
  NormalizeParams p;
  p.n = n, p.h = h, p.w = w, p.c = c;
  set_normalization(p, mean, std, c);
  p.dtype = half ? OutDType::Float16 : OutDType::Float32;
  p.layout = channels_last ? Layout::NHWC : Layout::NCHW;
  return p;
}

// The images are read in place: pixel values changed by another thread change output values,
// never where the kernel reads or writes (the shape is fixed by the checks).
void normalize(const py::array& images, py::array out, const std::vector<double>& mean,
               const std::vector<double>& std, bool channels_last, int threads) {
  check_uint8(images, "images");
  check_ndim(images, "images", 4, "(N, H, W, C)");
  check_c_contiguous(images, "images");
  check_threads(threads);
  const int64_t n = images.shape(0), h = images.shape(1), w = images.shape(2), c = images.shape(3);
  check_dtype(out, "out", is_float32(out) || is_float16(out), "float32 or float16");
  check_c_contiguous(out, "out");
  check_writeable(out, "out");
  if (channels_last) {
    check_shape(out, "out", {n, h, w, c});
  } else {
    check_shape(out, "out", {n, c, h, w});
  }
  check_no_overlap({{"out", span_of(out)}}, {{"images", span_of(images)}});
  const NormalizeParams p = make_params(n, h, w, c, mean, std, is_float16(out), channels_last);
  const auto* src = static_cast<const uint8_t*>(images.data());
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  normalize_cpu(src, dst, p, threads);
}

void normalize_cuda_ptr(uintptr_t src, uintptr_t dst, int64_t n, int64_t h, int64_t w, int64_t c,
                        const std::vector<double>& mean, const std::vector<double>& std,
                        bool half, bool channels_last, uintptr_t stream) {
  if (src == 0 || dst == 0) fail("images/out: expected non-null device pointers");
  if (n < 0 || h <= 0 || w <= 0) {
    fail("images: expected a non-empty (N, H, W, C) shape, received (" + std::to_string(n) +
         ", " + std::to_string(h) + ", " + std::to_string(w) + ", " + std::to_string(c) + ")");
  }
  const NormalizeParams p = make_params(n, h, w, c, mean, std, half, channels_last);
  const int64_t count = checked_product({n, h, w, c}, "images");
  check_no_overlap({{"out", span_at(dst, checked_product({count, half ? 2 : 4}, "out"), "out")}},
                   {{"images", span_at(src, count, "images")}});
#if defined(PYXFER_WITH_CUDA)
  py::gil_scoped_release release;
  normalize_cuda(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<void*>(dst), p,
                 reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, p);
#endif
}

}  // namespace

void bind_normalize(py::module_& m) {
  m.def("normalize", &normalize, py::arg("images"), py::arg("out"), py::arg("mean"),
        py::arg("std"), py::arg("channels_last") = false, py::arg("threads") = 0,
        "uint8 (N, H, W, C) -> out float32/float16 (N, C, H, W) or (N, H, W, C): "
        "(x / 255 - mean) / std. Writes into `out`.");
  m.def("normalize_cuda", &normalize_cuda_ptr, py::arg("src"), py::arg("dst"), py::arg("n"),
        py::arg("h"), py::arg("w"), py::arg("c"), py::arg("mean"), py::arg("std"),
        py::arg("half"), py::arg("channels_last"), py::arg("stream"),
        "CUDA variant of normalize on raw device pointers (used by pyxfer.ops.normalize).");
}

}  // namespace pyxfer::bind
