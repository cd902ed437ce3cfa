#include "pyxfer/knn.h"

#include <algorithm>
#include <vector>

#include "pyxfer/parallel.h"

namespace pyxfer {

void knn_classify_cpu(const float* queries, const void* bank, const int64_t* labels,
                      const KnnParams& p, float* scores, int threads) {
  const TopkParams& t = p.topk;
  const int64_t qb = topk_query_block(t, threads);
  const int64_t blocks = (t.m + qb - 1) / qb;
  auto vote = [&](int64_t row, const float* values, const int64_t* indices) {
    float* out = scores + row * p.num_classes;
    std::fill(out, out + p.num_classes, 0.0f);
    for (int64_t n = 0; n < t.k; ++n) {
      out[labels[indices[n]]] += knn_weight(values[n], p.temperature);
    }
  };
  if (topk_bank_shards(t, threads) > 1) {
    // Few queries: let the top-k split the bank across threads, then vote.
    std::vector<float> values(static_cast<size_t>(t.m * t.k));
    std::vector<int64_t> indices(values.size());
    cosine_topk_cpu(queries, bank, t, values.data(), indices.data(), threads);
    parallel_for(t.m, threads, 64, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        vote(row, values.data() + row * t.k, indices.data() + row * t.k);
      }
    });
    return;
  }
  parallel_for(blocks, threads, 1, [&](int64_t b, int64_t e) {
    // Per work item: the block's neighbours only (qb x k), then straight into the class scores.
    std::vector<float> values(static_cast<size_t>(qb * t.k));
    std::vector<int64_t> indices(static_cast<size_t>(qb * t.k));
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t q0 = blk * qb, q1 = std::min(t.m, q0 + qb);
      cosine_topk_rows_cpu(queries, bank, t, q0, q1, values.data(), indices.data());
      for (int64_t r = 0; r < q1 - q0; ++r) {
        vote(q0 + r, values.data() + r * t.k, indices.data() + r * t.k);
      }
    }
  });
}

}  // namespace pyxfer
