#include "checks.h"
#include "feature_checks.h"
#include "pyxfer/topk.h"

namespace pyxfer::bind {

namespace {

// Queries and bank are read in place (validated finite first): values changed by another thread
// change the result, never which rows are read. values and indices are new arrays.
py::tuple cosine_topk(const py::array& queries, const py::array& bank, int64_t k, int64_t block,
                      const std::string& simd, int threads) {
  check_features(queries, "queries", 2, "(M, D)", false);
  check_features(bank, "bank", 2, "(N, D)", true);
  check_threads(threads);
  TopkParams p = topk_params(queries.shape(0), queries.shape(1), bank.shape(0), bank.shape(1), k,
                             is_float16(bank), block);
  p.simd = parse_simd(simd);
  check_finite(queries, "queries");
  check_finite(bank, "bank");
  const auto m = static_cast<py::ssize_t>(p.m), kk = static_cast<py::ssize_t>(p.k);
  py::array_t<float> values({m, kk});
  py::array_t<int64_t> indices({m, kk});
  const auto* q = static_cast<const float*>(queries.data());
  const void* b = bank.data();
  float* v = values.mutable_data();
  int64_t* i = indices.mutable_data();
  {
    py::gil_scoped_release release;
    cosine_topk_cpu(q, b, p, v, i, threads);
  }
  return py::make_tuple(values, indices);
}

void cosine_topk_cuda_ptr(uintptr_t queries, uintptr_t bank, uintptr_t values, uintptr_t indices,
                          int64_t m, int64_t n, int64_t d, int64_t k, bool half,
                          uintptr_t stream) {
  if (queries == 0 || bank == 0 || values == 0 || indices == 0) {
    fail("queries/bank/values/indices: expected non-null device pointers");
  }
  const TopkParams p = topk_params(m, d, n, d, k, half, 0);
  check_cuda_topk(p);
  const int64_t bank_bytes = checked_product({n, d, half ? 2 : 4}, "bank");
  check_no_overlap(
      {{"values", span_at(values, checked_product({m, k, 4}, "values"), "values")},
       {"indices", span_at(indices, checked_product({m, k, 8}, "indices"), "indices")}},
      {{"queries", span_at(queries, checked_product({m, d, 4}, "queries"), "queries")},
       {"bank", span_at(bank, bank_bytes, "bank")}});
#if defined(PYXFER_WITH_CUDA)
  py::gil_scoped_release release;
  cosine_topk_cuda(reinterpret_cast<const float*>(queries), reinterpret_cast<const void*>(bank),
                   p, reinterpret_cast<float*>(values), reinterpret_cast<int64_t*>(indices),
                   reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, p);
#endif
}

py::list simd_paths() {
  py::list out;
  for (SimdPath path : {SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512}) {
    if (simd_path_available(path)) out.append(simd_path_name(path));
  }
  return out;
}

}  // namespace

void bind_topk(py::module_& m) {
  m.def("cosine_topk", &cosine_topk, py::arg("queries"), py::arg("bank"), py::arg("k"),
        py::arg("block") = 0, py::arg("simd") = "auto", py::arg("threads") = 0,
        "queries float32 (M, D), bank float32/float16 (N, D) -> (values float32 (M, k), "
        "indices int64 (M, k)): the k largest inner products per query, sorted descending, "
        "ties to the lower index. Blocked; never forms the M x N matrix.");
  m.def("cosine_topk_cuda", &cosine_topk_cuda_ptr, py::arg("queries"), py::arg("bank"),
        py::arg("values"), py::arg("indices"), py::arg("m"), py::arg("n"), py::arg("d"),
        py::arg("k"), py::arg("half"), py::arg("stream"),
        "CUDA variant of cosine_topk on raw device pointers (used by pyxfer.ops.topk).");
  m.def("simd_paths", &simd_paths,
        "Inner-product micro-kernels usable on this CPU, e.g. ['scalar', 'avx2', 'avx512'].");
  m.def("simd_best", []() { return std::string(simd_path_name(simd_path_best())); },
        "The micro-kernel simd='auto' runs on this CPU.");
}

}  // namespace pyxfer::bind
