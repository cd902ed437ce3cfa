// CUDA preprocess kernel: one thread block per image, same maths as preprocess.cpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <vector>

#include "device.cuh"
#include "pyxfer/preprocess.h"
#include "resample_cuda.cuh"

namespace pyxfer {
namespace {

struct ImageJob {
  const uint8_t* src;
  int64_t h, w;
  int64_t scratch;
};

template <typename T>
__device__ __forceinline__ T to_out(float v);
template <>
__device__ __forceinline__ float to_out<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }

struct Window {
  int64_t ry0, ny, rx0, nx, y0, x0;  // resized region and its place inside the crop
};

__host__ __device__ inline Window window_of(const PreprocessGeometry& g,
                                            const PreprocessParams& p) {
  Window wdw{};
  wdw.ry0 = g.top > 0 ? g.top : 0;
  const int64_t ry1 = g.top + p.crop_h < g.new_h ? g.top + p.crop_h : g.new_h;
  wdw.rx0 = g.left > 0 ? g.left : 0;
  const int64_t rx1 = g.left + p.crop_w < g.new_w ? g.left + p.crop_w : g.new_w;
  wdw.ny = ry1 - wdw.ry0 > 0 ? ry1 - wdw.ry0 : 0;
  wdw.nx = rx1 - wdw.rx0 > 0 ? rx1 - wdw.rx0 : 0;
  wdw.y0 = wdw.ry0 - g.top;
  wdw.x0 = wdw.rx0 - g.left;
  return wdw;
}

template <typename T>
__global__ void preprocess_kernel(const ImageJob* jobs, char* scratch_base, T* out,
                                  PreprocessParams p) {
  const ImageJob& job = jobs[blockIdx.x];
  const PreprocessGeometry g = preprocess_geometry(job.h, job.w, p);
  const Window wdw = window_of(g, p);
  char* scratch = scratch_base + job.scratch;
  const cuda::AxisDev ax = cuda::block_axis(job.w, g.new_w, scratch);
  const cuda::AxisDev ay = cuda::block_axis(job.h, g.new_h, scratch);
  float* tmp = reinterpret_cast<float*>(scratch);
  scratch += cuda::tmp_bytes(job.h, wdw.nx, p.c);
  float* img = reinterpret_cast<float*>(scratch);
  if (wdw.ny > 0 && wdw.nx > 0) {
    cuda::block_resample(job.src, job.w, p.c, 0, 0, ax, ay, wdw.ry0, wdw.ny, wdw.rx0, wdw.nx,
                         false, p.quantize, tmp, img);
  }
  const int64_t c = p.c, oh = p.crop_h, ow = p.crop_w, plane = oh * ow, i = blockIdx.x;
  for (int64_t idx = threadIdx.x; idx < c * plane; idx += blockDim.x) {
    const int64_t k = idx / plane, y = (idx % plane) / ow, x = idx % ow;
    const bool inside = y >= wdw.y0 && y < wdw.y0 + wdw.ny && x >= wdw.x0 && x < wdw.x0 + wdw.nx;
    const float v =
        inside ? img[k * wdw.ny * wdw.nx + (y - wdw.y0) * wdw.nx + (x - wdw.x0)] : 0.f;
    const float o = v * (p.inv_std[k] / 255.0f) + (-p.mean[k] * p.inv_std[k]);
    const int64_t dst =
        p.layout == Layout::NCHW ? (i * c + k) * plane + y * ow + x : (i * plane + y * ow + x) * c + k;
    out[dst] = to_out<T>(o);
  }
}

}  // namespace

void preprocess_cuda(const uint8_t* const* image_ptrs, const int64_t* hs, const int64_t* ws,
                     int64_t n, void* out, const PreprocessParams& p, void* stream) {
  if (n == 0) return;
  std::vector<ImageJob> jobs(static_cast<size_t>(n));
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    ImageJob& j = jobs[static_cast<size_t>(i)];
    j.src = image_ptrs[i], j.h = hs[i], j.w = ws[i], j.scratch = total;
    const PreprocessGeometry g = preprocess_geometry(j.h, j.w, p);
    const Window wdw = window_of(g, p);
    total += cuda::axis_bytes(j.w, g.new_w) + cuda::axis_bytes(j.h, g.new_h) +
             cuda::tmp_bytes(j.h, wdw.nx, p.c) + cuda::align16(p.c * wdw.ny * wdw.nx * 4);
  }
  auto s = static_cast<cudaStream_t>(stream);
  cuda::DeviceArray<char> scratch(s);
  cuda::DeviceArray<ImageJob> dev_jobs(s);
  PYXFER_CUDA_CHECK(scratch.allocate(static_cast<size_t>(total > 0 ? total : 16)), "allocation");
  PYXFER_CUDA_CHECK(dev_jobs.allocate(jobs.size()), "allocation");
  PYXFER_CUDA_CHECK(cudaMemcpyAsync(dev_jobs.get(), jobs.data(), jobs.size() * sizeof(ImageJob),
                                    cudaMemcpyHostToDevice, s),
                    "job upload");
  const ImageJob* dj = dev_jobs.get();
  char* sb = scratch.get();
  const auto blocks = static_cast<unsigned>(n);
  if (p.dtype == OutDType::Float32) {
    preprocess_kernel<float><<<blocks, cuda::kThreads, 0, s>>>(dj, sb, static_cast<float*>(out), p);
  } else {
    preprocess_kernel<__half><<<blocks, cuda::kThreads, 0, s>>>(dj, sb, static_cast<__half*>(out),
                                                                p);
  }
  PYXFER_CUDA_CHECK(cudaGetLastError(), "launch");
  PYXFER_CUDA_CHECK(dev_jobs.free_now(), "free");
  PYXFER_CUDA_CHECK(scratch.free_now(), "free");
}

}  // namespace pyxfer
