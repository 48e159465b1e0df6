#include "segments/kernels/cuda/device_caps.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>

#include "segments/kernels/cuda/check.h"

namespace segpipe::cuda {

bool device_is_sm90(int dev) {
  static std::atomic<uint64_t> known{0}, yes{0};
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t(1) << dev : 0;
  if (bit && (known.load() & bit)) return (yes.load() & bit) != 0;
  int major = 0, minor = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  const bool is90 = major == 9 && minor == 0;
  if (bit) {
    if (is90) yes.fetch_or(bit);
    known.fetch_or(bit);
  }
  return is90;
}

bool current_device_is_sm90() {
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  return device_is_sm90(dev);
}

}  // namespace segpipe::cuda
