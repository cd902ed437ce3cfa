// Host stand-in for the CUDA runtime, used only by tests/test_cuda_emulation.py: it compiles the
// .cu kernels as plain C++ and runs each block on EMU_THREADS std::threads (blocks one after
// another) with a real barrier for __syncthreads, so the kernels' indexing, scratch layout and
// synchronisation can be checked against the CPU kernels without a GPU. Not a CUDA runtime.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#ifndef EMU_THREADS
#define EMU_THREADS 3
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct EmuDim {
  unsigned x = 0;
};
inline thread_local EmuDim threadIdx;
inline EmuDim blockIdx, blockDim{1}, gridDim{1};

struct EmuBarrier {
  std::mutex m;
  std::condition_variable cv;
  unsigned count = 0, generation = 0, n = 1;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const unsigned g = generation;
    if (++count == n) {
      count = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return g != generation; });
    }
  }
};
inline EmuBarrier emu_barrier;
inline std::mutex emu_atomic;

inline void __syncthreads() { emu_barrier.wait(); }
inline unsigned long long atomicMax(unsigned long long* a, unsigned long long v) {
  std::lock_guard<std::mutex> lock(emu_atomic);
  const unsigned long long old = *a;
  if (v > old) *a = v;
  return old;
}
inline double atomicAdd(double* a, double v) {
  std::lock_guard<std::mutex> lock(emu_atomic);
  const double old = *a;
  *a += v;
  return old;
}

// kernel<<<blocks, threads, 0, stream>>>(args...) becomes emu_launch(blocks, kernel, args...).
template <class F, class... Args>
void emu_launch(unsigned blocks, F fn, Args... args) {
  blockDim.x = EMU_THREADS;
  emu_barrier.n = EMU_THREADS;
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx.x = b;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < EMU_THREADS; ++t) {
      pool.emplace_back([=] {
        threadIdx.x = t;
        fn(args...);
      });
    }
    for (auto& th : pool) th.join();
  }
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
constexpr int cudaErrorEmulated = 999;
enum { cudaMemcpyHostToDevice = 1 };
inline const char* cudaGetErrorString(int) { return "emulated"; }

// Fault injection: with emu_fail_at = N > 0 the N-th failable call (allocation, copy or
// cudaGetLastError, counted in emu_calls) returns cudaErrorEmulated. emu_live counts the
// allocations not yet freed.
inline int emu_fail_at = 0, emu_calls = 0;
inline long emu_live = 0;
inline bool emu_fails() { return ++emu_calls == emu_fail_at; }

inline int cudaGetLastError() { return emu_fails() ? cudaErrorEmulated : 0; }
inline int cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  if (emu_fails()) return cudaErrorEmulated;
  *p = std::malloc(n);
  std::memset(*p, 0x7f, n);  // garbage, like fresh device memory
  ++emu_live;
  return 0;
}
inline int cudaFreeAsync(void* p, cudaStream_t) {
  if (p == nullptr) return cudaErrorEmulated;
  std::free(p);
  --emu_live;
  return 0;
}
inline int cudaMemcpyAsync(void* d, const void* s, size_t n, int, cudaStream_t) {
  if (emu_fails()) return cudaErrorEmulated;
  std::memcpy(d, s, n);
  return 0;
}
