// Host stand-in for the CUDA runtime, used only by tests/test_cuda_emulation.py: it compiles the
// .cu kernels as plain C++ with one thread per block, so their indexing and scratch layout can
// be checked against the CPU kernels on machines without a GPU. Not a real CUDA runtime.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct EmuDim {
  unsigned x = 0;
};
inline EmuDim threadIdx, blockIdx, blockDim{1}, gridDim{1};
inline void __syncthreads() {}
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  const unsigned long long old = *a;
  if (v > old) *a = v;
  return old;
}
inline double atomicAdd(double* a, double v) {
  const double old = *a;
  *a += v;
  return old;
}
inline long long __double_as_longlong(double d) {
  long long r;
  std::memcpy(&r, &d, sizeof r);
  return r;
}
inline double __longlong_as_double(long long l) {
  double r;
  std::memcpy(&r, &l, sizeof r);
  return r;
}

typedef int cudaError_t;
typedef void* cudaStream_t;
constexpr int cudaSuccess = 0;
enum { cudaMemcpyHostToDevice = 1 };
inline const char* cudaGetErrorString(int) { return "emulated"; }
inline int cudaGetLastError() { return 0; }
inline int cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  *p = std::malloc(n);
  std::memset(*p, 0x7f, n);  // garbage, like fresh device memory
  return 0;
}
inline int cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return 0;
}
inline int cudaMemcpyAsync(void* d, const void* s, size_t n, int, cudaStream_t) {
  std::memcpy(d, s, n);
  return 0;
}
