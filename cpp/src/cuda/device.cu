#include <cuda_runtime.h>

#include <string>

namespace pyxfer {

int cuda_device_count(std::string* error) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (error != nullptr) *error = cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

}  // namespace pyxfer
