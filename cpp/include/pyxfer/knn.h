// knn_classify: weighted k-nearest-neighbour vote over a feature bank, fused with the top-k.
//
// The evaluation protocol of self-supervised learning (Wu et al. 2018, "Unsupervised Feature
// Learning via Non-Parametric Instance Discrimination"; Caron et al. 2021, DINO): each of the k
// most similar bank rows votes for its label with weight exp(similarity / temperature); the
// class score is the sum of its votes. Neighbours are the ones cosine_topk returns (same order and
// tie-breaking), and votes are summed in that order, so scores do not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>

#include "pyxfer/common.h"
#include "pyxfer/topk.h"

namespace pyxfer {

struct KnnParams {
  TopkParams topk;
  int64_t num_classes = 0;
  float temperature = 0.07f;
};

// Vote weight of one neighbour; shared by CPU and CUDA.
PYXFER_HD float knn_weight(float similarity, float temperature) {
  return expf(similarity / temperature);
}

// scores (M, num_classes) float32; labels (N,) int64 in [0, num_classes).
void knn_classify_cpu(const float* queries, const void* bank, const int64_t* labels,
                      const KnnParams& p, float* scores, int threads);

#if defined(PYXFER_WITH_CUDA)
void knn_classify_cuda(const float* queries, const void* bank, const int64_t* labels,
                       const KnnParams& p, float* scores, void* stream);
#endif

}  // namespace pyxfer
