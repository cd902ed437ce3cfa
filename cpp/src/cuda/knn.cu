#include <cuda_runtime.h>

#include "device.cuh"
#include "pyxfer/knn.h"

namespace pyxfer {
namespace {

// One block per query. Class c belongs to thread c % blockDim.x, which adds its votes in
// neighbour order, so every score is summed in the same order as on the CPU.
__global__ void vote_kernel(const float* __restrict__ values, const int64_t* __restrict__ indices,
                            const int64_t* __restrict__ labels, int64_t k, int64_t num_classes,
                            float temperature, float* __restrict__ scores) {
  const int64_t row = blockIdx.x;
  float* out = scores + row * num_classes;
  for (int64_t c = threadIdx.x; c < num_classes; c += blockDim.x) out[c] = 0.0f;
  const float* v = values + row * k;
  const int64_t* ix = indices + row * k;
  for (int64_t n = 0; n < k; ++n) {
    const int64_t label = labels[ix[n]];
    if (label % blockDim.x == threadIdx.x) out[label] += knn_weight(v[n], temperature);
  }
}

}  // namespace

void knn_classify_cuda(const float* queries, const void* bank, const int64_t* labels,
                       const KnnParams& p, float* scores, void* stream) {
  const TopkParams& t = p.topk;
  if (t.m == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const size_t count = static_cast<size_t>(t.m * t.k);
  cuda::DeviceArray<float> values(s);
  cuda::DeviceArray<int64_t> indices(s);
  PYXFER_CUDA_CHECK(values.allocate(count), "allocating neighbours");
  PYXFER_CUDA_CHECK(indices.allocate(count), "allocating neighbours");
  cosine_topk_cuda(queries, bank, t, values.get(), indices.get(), stream);
  for (int64_t r0 = 0; r0 < t.m; r0 += 65535) {
    const int64_t rows = t.m - r0 < 65535 ? t.m - r0 : 65535;
    vote_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(
        values.get() + r0 * t.k, indices.get() + r0 * t.k, labels, t.k, p.num_classes,
        p.temperature, scores + r0 * p.num_classes);
    PYXFER_CUDA_CHECK(cudaGetLastError(), "vote launch");
  }
  PYXFER_CUDA_CHECK(values.free_now(), "freeing neighbours");
  PYXFER_CUDA_CHECK(indices.free_now(), "freeing neighbours");
}

}  // namespace pyxfer
