// pyxfer._C: the compiled core. Each op has its own bind_<op>.cpp; this file only wires them up.
#include <pybind11/pybind11.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "pyxfer/build_info.h"
#include "pyxfer/parallel.h"
#include "pyxfer/topk.h"

namespace py = pybind11;

namespace {
// The instruction set onnxruntime's x86 int8 GEMM kernels (MLAS) pick on this CPU, from CPUID:
// VNNI adds u8 x s8 products in 32-bit sums; without it they go through saturating 16-bit sums.
const char* int8_isa() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (avx512 && __builtin_cpu_supports("avx512vnni")) return "avx512-vnni";
  if (__builtin_cpu_supports("avxvnni")) return "avx-vnni";
  if (avx512) return "avx512";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  return "sse";
#else
  return "";  // not x86 (or a compiler without the builtins): the caller names the machine
#endif
}
}  // namespace

namespace pyxfer::bind {
void bind_normalize(py::module_& m);
void bind_augment(py::module_& m);
void bind_preprocess(py::module_& m);
void bind_pool(py::module_& m);
void bind_topk(py::module_& m);
void bind_knn(py::module_& m);
}  // namespace pyxfer::bind

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyxfer compiled kernels (C++17, optional CUDA). Use pyxfer.ops for the public API.";

  m.def(
      "build_info",
      []() {
        const pyxfer::BuildInfo info = pyxfer::build_info();
        py::dict d;
        d["version"] = info.version;
        d["compiler"] = PYXFER_COMPILER;
        d["cxx_standard"] = __cplusplus;
        d["simd"] = info.simd;  // instruction set the kernels were compiled for (baseline)
        // run-time dispatched paths of the feature kernels (PYXFER_SIMD overrides "auto")
        d["simd_runtime"] = pyxfer::simd_path_name(pyxfer::simd_path_best());
        py::list paths;
        for (auto path : {pyxfer::SimdPath::Scalar, pyxfer::SimdPath::Avx2,
                          pyxfer::SimdPath::Avx512}) {
          if (pyxfer::simd_path_available(path)) paths.append(pyxfer::simd_path_name(path));
        }
        d["simd_paths"] = paths;
        d["augment_simd"] = info.augment_simd;  // fused augmentation path in use
        d["preprocess_simd"] = info.preprocess_simd;  // preprocess and normalize path in use
        d["int8_isa"] = int8_isa();  // x86 int8 kernels onnxruntime uses here (CPUID)
        d["threading"] = "persistent std::thread pool parallel-for";
        d["hardware_threads"] = info.hardware_threads;
        d["cuda_compiled"] = info.cuda_compiled;
        d["cuda_version"] = info.cuda_version;
        d["cuda_devices"] = info.cuda_devices;
        d["cuda_error"] = info.cuda_error;
        d["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                                std::to_string(PYBIND11_VERSION_MINOR) + "." +
                                std::to_string(PYBIND11_VERSION_PATCH);
        return d;
      },
      "What was compiled in: version, compiler, SIMD level, threading, CUDA (compiled / devices).");
  m.def("hardware_threads", &pyxfer::hardware_threads, "Number of hardware threads.");
  m.def(
      "_parallel_check",
      [](int64_t n, int threads, int64_t grain, int64_t fail_at, bool nested) {
        if (n < 0 || n > (int64_t{1} << 24)) {
          throw py::value_error("n: expected 0 <= n <= 2^24, received " + std::to_string(n));
        }
        std::vector<int64_t> out(static_cast<size_t>(n), -1);
        {
          py::gil_scoped_release release;
          pyxfer::parallel_for(n, threads, grain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              if (i == fail_at) throw std::runtime_error("parallel_check failure at item " +
                                                         std::to_string(i));
              int64_t v = i * i;
              if (nested) {
                // Inside a pool job the inner call runs inline; when the outer call ran as one
                // chunk on the caller, the inner one may use the pool: the sum is atomic.
                std::atomic<int64_t> inner{0};
                pyxfer::parallel_for(8, threads, 1, [&](int64_t ib, int64_t ie) {
                  for (int64_t j = ib; j < ie; ++j) inner.fetch_add(j);
                });
                v += inner.load();
              }
              out[static_cast<size_t>(i)] = v;
            }
          });
        }
        py::list result;
        for (const int64_t v : out) result.append(v);
        return result;
      },
      "Test hook of the thread pool: [i * i (+ 28 from a nested parallel_for)] for i < n; "
      "raises RuntimeError from item fail_at.",
      py::arg("n"), py::arg("threads"), py::arg("grain") = 1, py::arg("fail_at") = -1,
      py::arg("nested") = false);

  pyxfer::bind::bind_normalize(m);
  pyxfer::bind::bind_augment(m);
  pyxfer::bind::bind_preprocess(m);
  pyxfer::bind::bind_pool(m);
  pyxfer::bind::bind_topk(m);
  pyxfer::bind::bind_knn(m);
}
