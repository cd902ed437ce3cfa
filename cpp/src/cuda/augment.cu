// CUDA apply kernel: one thread block per view, the same maths as augment.cpp (shared headers).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <vector>

#include "device.cuh"
#include "pyxfer/augment.h"
#include "resample_cuda.cuh"

namespace pyxfer {
namespace {

struct ViewJob {
  const uint8_t* src;
  int64_t h, w;
  int64_t scratch;  // byte offset of this view's scratch
  float prm[kParamCount];
};

__device__ void block_sum(double v, double* out) {
  __shared__ double total;
  if (threadIdx.x == 0) total = 0.0;
  __syncthreads();
  atomicAdd(&total, v);
  __syncthreads();
  *out = total;
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ T cast_out(float v);
template <>
__device__ __forceinline__ float cast_out<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half cast_out<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void augment_kernel(const ViewJob* jobs, char* scratch_base, T* out, ApplyParams p) {
  const ViewJob& job = jobs[blockIdx.x];
  const float* prm = job.prm;
  const int64_t c = p.c, oh = p.out_h, ow = p.out_w, n = oh * ow;
  const bool q = p.quantize;
  const auto top = static_cast<int64_t>(prm[kTop]), left = static_cast<int64_t>(prm[kLeft]);
  const auto ch = static_cast<int64_t>(prm[kCropH]), cw = static_cast<int64_t>(prm[kCropW]);
  char* scratch = scratch_base + job.scratch;
  const cuda::AxisDev ax = cuda::block_axis(cw, ow, scratch);
  const cuda::AxisDev ay = cuda::block_axis(ch, oh, scratch);
  float* tmp = reinterpret_cast<float*>(scratch);
  scratch += cuda::tmp_bytes(ch > oh ? ch : oh, ow, c);  // also the blur's buffer
  float* img = reinterpret_cast<float*>(scratch);
  scratch += cuda::align16(c * n * 4);
  float* kw = reinterpret_cast<float*>(scratch);  // blur kernel (<= 1001 taps)
  cuda::block_resample(job.src, job.w, c, top, left, ax, ay, 0, oh, 0, ow, prm[kFlip] != 0.f, q,
                       tmp, img);
  if (prm[kJitter] != 0.f) {
    for (int pos = 0; pos < 4; ++pos) {
      const int op = static_cast<int>(prm[kOrder0 + pos]);
      if (op == 0 && prm[kBrightness] != 1.f) {
        const float f = prm[kBrightness];
        for (int64_t i = threadIdx.x; i < c * n; i += blockDim.x) {
          img[i] = quant_trunc(clamp255(img[i] * f), q);
        }
      } else if (op == 1 && prm[kContrast] != 1.f) {
        const float f = prm[kContrast];
        double part = 0.0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
          if (c == 3) {
            const float g = gray_of(img[i], img[n + i], img[2 * n + i]);
            part += q ? floor_pos(g) : g;
          } else {
            part += img[i];
          }
        }
        double sum = 0.0;
        block_sum(part, &sum);
        const float mean = static_cast<float>(sum / static_cast<double>(n));
        const float omf = static_cast<float>(1.0 - static_cast<double>(f));
        for (int64_t i = threadIdx.x; i < c * n; i += blockDim.x) {
          img[i] = blend(img[i], mean, f, omf, q);
        }
      } else if (op == 2 && c == 3 && prm[kSaturation] != 1.f) {
        const float f = prm[kSaturation];
        const float omf = static_cast<float>(1.0 - static_cast<double>(f));
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
          float g = gray_of(img[i], img[n + i], img[2 * n + i]);
          if (q) g = floor_pos(g);
          img[i] = blend(img[i], g, f, omf, q);
          img[n + i] = blend(img[n + i], g, f, omf, q);
          img[2 * n + i] = blend(img[2 * n + i], g, f, omf, q);
        }
      } else if (op == 3 && c == 3 && prm[kHue] != 0.f) {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
          hue_shift(img[i], img[n + i], img[2 * n + i], prm[kHue], q);
        }
      }
      __syncthreads();
    }
  }
  if (prm[kGray] != 0.f && c == 3) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float g = quant_trunc(gray_of(img[i], img[n + i], img[2 * n + i]), q);
      img[i] = g, img[n + i] = g, img[2 * n + i] = g;
    }
    __syncthreads();
  }
  if (prm[kBlur] != 0.f) {
    const int k = static_cast<int>(prm[kBlurKernel]), half = k / 2;
    if (threadIdx.x == 0) gaussian_kernel1d(k, prm[kBlurSigma], kw);
    __syncthreads();
    const int j0 = gaussian_trim(k, kw);
    for (int64_t ch_i = 0; ch_i < c; ++ch_i) {
      float* plane = img + ch_i * n;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {  // horizontal into tmp
        const int64_t y = i / ow, x = i % ow;
        const float* r = plane + y * ow;
        float acc = kw[half] * r[x];
        for (int d = 1; d <= half - j0; ++d) {
          acc += kw[half - d] * (r[reflect_index(x - d, ow)] + r[reflect_index(x + d, ow)]);
        }
        tmp[i] = acc;
      }
      __syncthreads();
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {  // vertical back
        const int64_t y = i / ow, x = i % ow;
        float acc = kw[half] * tmp[y * ow + x];
        for (int d = 1; d <= half - j0; ++d) {
          acc += kw[half - d] *
                 (tmp[reflect_index(y - d, oh) * ow + x] + tmp[reflect_index(y + d, oh) * ow + x]);
        }
        plane[i] = q ? round_even(clamp255(acc)) : acc;
      }
      __syncthreads();
    }
  }
  const bool sol = prm[kSolarize] != 0.f;
  const float thr = prm[kSolarizeThreshold];
  const int64_t row = blockIdx.x;
  for (int64_t idx = threadIdx.x; idx < c * n; idx += blockDim.x) {
    const int64_t k = idx / n, i = idx % n;
    float v = img[idx];
    if (sol && v >= thr) v = 255.f - v;
    const float o = v * (p.inv_std[k] / 255.0f) + (-p.mean[k] * p.inv_std[k]);
    const int64_t dst = p.layout == Layout::NCHW ? (row * c + k) * n + i : (row * n + i) * c + k;
    out[dst] = cast_out<T>(o);
  }
}

}  // namespace

void augment_apply_cuda(const uint8_t* const* image_ptrs, const int64_t* hs, const int64_t* ws,
                        int64_t n_images, const float* params_host, int64_t rows, void* out,
                        const ApplyParams& p, void* stream) {
  (void)n_images;
  if (rows == 0) return;
  std::vector<ViewJob> jobs(static_cast<size_t>(rows));
  int64_t total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    ViewJob& j = jobs[static_cast<size_t>(r)];
    const int64_t im = r / p.views;
    j.src = image_ptrs[im];
    j.h = hs[im], j.w = ws[im];
    for (int k = 0; k < kParamCount; ++k) j.prm[k] = params_host[r * kParamCount + k];
    const auto ch = static_cast<int64_t>(j.prm[kCropH]), cw = static_cast<int64_t>(j.prm[kCropW]);
    j.scratch = total;
    total += cuda::axis_bytes(cw, p.out_w) + cuda::axis_bytes(ch, p.out_h) +
             cuda::tmp_bytes(ch > p.out_h ? ch : p.out_h, p.out_w, p.c) + cuda::align16(p.c * p.out_h * p.out_w * 4) +
             cuda::align16(1001 * 4);
  }
  auto s = static_cast<cudaStream_t>(stream);
  cuda::DeviceArray<char> scratch(s);
  cuda::DeviceArray<ViewJob> dev_jobs(s);
  PYXFER_CUDA_CHECK(scratch.allocate(static_cast<size_t>(total)), "scratch allocation");
  PYXFER_CUDA_CHECK(dev_jobs.allocate(jobs.size()), "job allocation");
  PYXFER_CUDA_CHECK(cudaMemcpyAsync(dev_jobs.get(), jobs.data(), jobs.size() * sizeof(ViewJob),
                                    cudaMemcpyHostToDevice, s),
                    "job upload");
  const ViewJob* dj = dev_jobs.get();
  char* sb = scratch.get();
  const auto blocks = static_cast<unsigned>(rows);
  if (p.dtype == OutDType::Float32) {
    augment_kernel<float><<<blocks, cuda::kThreads, 0, s>>>(dj, sb, static_cast<float*>(out), p);
  } else {
    augment_kernel<__half><<<blocks, cuda::kThreads, 0, s>>>(dj, sb, static_cast<__half*>(out), p);
  }
  PYXFER_CUDA_CHECK(cudaGetLastError(), "launch");
  PYXFER_CUDA_CHECK(dev_jobs.free_now(), "free");
  PYXFER_CUDA_CHECK(scratch.free_now(), "free");
}

}  // namespace pyxfer
