#include "checks.h"
#include "feature_checks.h"
#include "pyxfer/pool.h"

namespace pyxfer::bind {

namespace {

PoolParams make_params(int64_t n, int64_t c, int64_t hw, const std::string& mode, double p,
                       double eps, bool l2, double l2_eps, bool half) {
  PoolParams pp;
  if (mode == "avg") {
    pp.mode = PoolMode::Avg;
  } else if (mode == "gem") {
    pp.mode = PoolMode::GeM;
  } else {
    fail("mode: expected 'avg' or 'gem', received '" + mode + "'");
  }
  const float pf = positive_float(p, "p");
  const float eps_f = positive_float(eps, "eps");
  const float l2_eps_f = positive_float(l2_eps, "l2_eps");
  if (hw <= 0) fail("x: expected H * W > 0, received an empty spatial extent");
  pp.n = n, pp.c = c, pp.hw = hw;
  pp.p = pf;
  pp.eps = eps_f;
  pp.l2 = l2;
  pp.l2_eps = l2_eps_f;
  pp.half = half;
  return pp;
}

// x is read in place (values only; the output is a new array, so no aliasing is possible).
py::array_t<float> pool_normalize(const py::array& x, const std::string& mode, double p,
                                  double eps, bool l2, double l2_eps, int threads) {
  check_features(x, "x", 4, "(N, C, H, W)", true);
  check_threads(threads);
  const int64_t n = x.shape(0), c = x.shape(1), hw = x.shape(2) * x.shape(3);
  const PoolParams pp = make_params(n, c, hw, mode, p, eps, l2, l2_eps, is_float16(x));
  py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(c)});
  const void* src = x.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    pool_normalize_cpu(src, dst, pp, threads);
  }
  return out;
}

void pool_normalize_cuda_ptr(uintptr_t x, uintptr_t out, int64_t n, int64_t c, int64_t hw,
                             bool half, const std::string& mode, double p, double eps, bool l2,
                             double l2_eps, uintptr_t stream) {
  if (x == 0 || out == 0) fail("x/out: expected non-null device pointers");
  if (n < 0 || c < 0) {
    fail("x: expected a (N, C, H, W) shape with N, C >= 0, received N = " + std::to_string(n) +
         ", C = " + std::to_string(c));
  }
  const PoolParams pp = make_params(n, c, hw, mode, p, eps, l2, l2_eps, half);
  check_no_overlap({{"out", span_at(out, checked_product({n, c, 4}, "out"), "out")}},
                   {{"x", span_at(x, checked_product({n, c, hw, half ? 2 : 4}, "x"), "x")}});
#if defined(PYXFER_WITH_CUDA)
  py::gil_scoped_release release;
  pool_normalize_cuda(reinterpret_cast<const void*>(x), reinterpret_cast<float*>(out), pp,
                      reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, pp);
#endif
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("pool_normalize", &pool_normalize, py::arg("x"), py::arg("mode") = "avg",
        py::arg("p") = 3.0, py::arg("eps") = 1e-6, py::arg("l2") = false,
        py::arg("l2_eps") = 1e-12, py::arg("threads") = 0,
        "float32/float16 (N, C, H, W) -> float32 (N, C): average or GeM pooling over H, W, "
        "optionally L2-normalised rows.");
  m.def("pool_normalize_cuda", &pool_normalize_cuda_ptr, py::arg("x"), py::arg("out"),
        py::arg("n"), py::arg("c"), py::arg("hw"), py::arg("half"), py::arg("mode"), py::arg("p"),
        py::arg("eps"), py::arg("l2"), py::arg("l2_eps"), py::arg("stream"),
        "CUDA variant of pool_normalize on raw device pointers (used by pyxfer.ops.pool).");
}

}  // namespace pyxfer::bind
