#include <algorithm>

#include "checks.h"
#include "feature_checks.h"
#include "pyxfer/knn.h"

namespace pyxfer::bind {

namespace {

// The labels as a copy owned by the call, range-checked: the kernel indexes the class scores with
// them while it runs with the GIL released, so a label rewritten by another thread after the
// check would write outside the scores.
std::vector<int64_t> labels_copy(const py::array& labels, int64_t n, int64_t num_classes) {
  check_dtype(labels, "bank_labels", labels.dtype().is(py::dtype::of<int64_t>()), "int64");
  check_ndim(labels, "bank_labels", 1, "(N,)");
  check_c_contiguous(labels, "bank_labels");
  if (labels.shape(0) != n) {
    fail("bank_labels: expected one label per bank row (" + std::to_string(n) +
         "), received " + std::to_string(labels.shape(0)));
  }
  const auto* x = static_cast<const int64_t*>(labels.data());
  std::vector<int64_t> out(x, x + n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = out[static_cast<size_t>(i)];
    if (v < 0 || v >= num_classes) {
      fail("bank_labels: expected labels in [0, num_classes = " + std::to_string(num_classes) +
           "), received " + std::to_string(v) + " at index " + std::to_string(i));
    }
  }
  return out;
}

// Queries and bank are read in place (validated finite first): values changed by another thread
// change scores, never which rows are read — top-k only ever holds bank row numbers, and the
// labels they index are the call's own copy. The scores are a new array (no aliasing possible).
py::array_t<float> knn_classify(const py::array& queries, const py::array& bank,
                                const py::array& labels, int64_t k, double temperature,
                                int64_t num_classes, int64_t block, const std::string& simd,
                                int threads) {
  check_features(queries, "queries", 2, "(M, D)", false);
  check_features(bank, "bank", 2, "(N, D)", true);
  check_threads(threads);
  KnnParams p;
  p.topk = topk_params(queries.shape(0), queries.shape(1), bank.shape(0), bank.shape(1), k,
                       is_float16(bank), block);
  p.topk.simd = parse_simd(simd);
  const float t = check_temperature(temperature);
  check_num_classes(num_classes);
  checked_product({std::max<int64_t>(p.topk.m, 1), num_classes, 4}, "num_classes");
  const std::vector<int64_t> l = labels_copy(labels, p.topk.n, num_classes);
  check_finite(queries, "queries");
  check_finite(bank, "bank");
  p.num_classes = num_classes;
  p.temperature = t;
  py::array_t<float> scores(
      {static_cast<py::ssize_t>(p.topk.m), static_cast<py::ssize_t>(num_classes)});
  const auto* q = static_cast<const float*>(queries.data());
  const void* b = bank.data();
  float* s = scores.mutable_data();
  {
    py::gil_scoped_release release;
    knn_classify_cpu(q, b, l.data(), p, s, threads);
  }
  return scores;
}

// Device labels cannot be read here: pyxfer.ops.knn range-checks a copy it owns before this call.
void knn_classify_cuda_ptr(uintptr_t queries, uintptr_t bank, uintptr_t labels, uintptr_t scores,
                           int64_t m, int64_t n, int64_t d, int64_t k, bool half,
                           int64_t num_classes, double temperature, uintptr_t stream) {
  if (queries == 0 || bank == 0 || labels == 0 || scores == 0) {
    fail("queries/bank/bank_labels/scores: expected non-null device pointers");
  }
  KnnParams p;
  p.topk = topk_params(m, d, n, d, k, half, 0);
  check_cuda_topk(p.topk);
  const float t = check_temperature(temperature);
  check_num_classes(num_classes);
  p.num_classes = num_classes;
  p.temperature = t;
  const int64_t bank_bytes = checked_product({n, d, half ? 2 : 4}, "bank");
  check_no_overlap({{"scores", span_at(scores, checked_product({m, num_classes, 4}, "scores"),
                                       "scores")}},
                   {{"queries", span_at(queries, checked_product({m, d, 4}, "queries"),
                                        "queries")},
                    {"bank", span_at(bank, bank_bytes, "bank")},
                    {"bank_labels", span_at(labels, checked_product({n, 8}, "bank_labels"),
                                            "bank_labels")}});
#if defined(PYXFER_WITH_CUDA)
  py::gil_scoped_release release;
  knn_classify_cuda(reinterpret_cast<const float*>(queries), reinterpret_cast<const void*>(bank),
                    reinterpret_cast<const int64_t*>(labels), p, reinterpret_cast<float*>(scores),
                    reinterpret_cast<void*>(stream));
#else
  cuda_unavailable(stream, p);
#endif
}

}  // namespace

void bind_knn(py::module_& m) {
  m.def("knn_classify", &knn_classify, py::arg("queries"), py::arg("bank"),
        py::arg("bank_labels"), py::arg("k"), py::arg("temperature"), py::arg("num_classes"),
        py::arg("block") = 0, py::arg("simd") = "auto", py::arg("threads") = 0,
        "Weighted kNN vote fused with the blocked top-k: scores float32 (M, num_classes), "
        "score[c] = sum over the k nearest bank rows labelled c of exp(similarity / T).");
  m.def("knn_classify_cuda", &knn_classify_cuda_ptr, py::arg("queries"), py::arg("bank"),
        py::arg("bank_labels"), py::arg("scores"), py::arg("m"), py::arg("n"), py::arg("d"),
        py::arg("k"), py::arg("half"), py::arg("num_classes"), py::arg("temperature"),
        py::arg("stream"), "CUDA variant of knn_classify on raw device pointers.");
}

}  // namespace pyxfer::bind
