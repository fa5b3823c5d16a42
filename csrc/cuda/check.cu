// Turns the sticky CUDA error state into a C++ exception, so a failed launch surfaces at the
// op that caused it instead of at some later, unrelated synchronisation.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "launch.h"

namespace eager_ext::cuda {

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
  }
}

}  // namespace eager_ext::cuda
