// Host-side error handling shared by the .cu files: the one CUDA error check and an owner of
// stream-ordered device memory, so that a failed call frees what was allocated before it.
//
//   cuda::DeviceArray<float> buf(stream);
//   PYXFER_CUDA_CHECK(buf.allocate(count), "allocating the buffer");
//   kernel<<<grid, block, 0, stream>>>(buf.get());
//   PYXFER_CUDA_CHECK(cudaGetLastError(), "launch");   // throws: buf is freed as it unwinds
//   PYXFER_CUDA_CHECK(buf.free_now(), "freeing the buffer");
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace pyxfer::cuda {

// Throws std::runtime_error("<op>: <what>: <CUDA's message>") unless `status` is cudaSuccess.
inline void check(cudaError_t status, const char* op, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(op) + ": " + what + ": " + cudaGetErrorString(status));
  }
}

// Device memory for `count` T, allocated and freed in the order of `stream` (cudaMallocAsync,
// cudaFreeAsync). The destructor frees what the owner still holds, so every return and every
// exception after allocate() frees it; free_now() frees it early and returns the status to check.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(cudaStream_t stream) : stream_(stream) {}
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { (void)free_now(); }  // unwinding: the error being reported is the first one

  // Replaces what the owner holds (freed first) by `count` new elements.
  cudaError_t allocate(size_t count) {
    const cudaError_t freed = free_now();
    if (freed != cudaSuccess) return freed;
    void* p = nullptr;
    const cudaError_t status = cudaMallocAsync(&p, count * sizeof(T), stream_);
    if (status == cudaSuccess) ptr_ = static_cast<T*>(p);
    return status;
  }

  cudaError_t free_now() {
    T* p = ptr_;
    ptr_ = nullptr;
    return p == nullptr ? cudaSuccess : cudaFreeAsync(p, stream_);
  }

  T* get() const { return ptr_; }

 private:
  cudaStream_t stream_;
  T* ptr_ = nullptr;
};

}  // namespace pyxfer::cuda

// Checks the cudaError_t of a CUDA runtime call; the exception names the calling function and
// `what` it was doing.
#define PYXFER_CUDA_CHECK(call, what) ::pyxfer::cuda::check((call), __func__, (what))
