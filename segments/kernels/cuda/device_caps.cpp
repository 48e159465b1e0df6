#include "segments/kernels/cuda/device_caps.h"

#include <cuda_runtime_api.h>

#include "segments/core/segment_types.h"

#include "segments/kernels/cuda/check.h"

namespace segpipe::cuda {

KernelPath select_kernel_path(int device, GpuKernels choice) {
  if (choice == GpuKernels::portable) return {};
  int major = 0, minor = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  KernelPath p;
  p.wgmma = major == 9 && minor == 0;
  p.pdl = major >= 9;
  p.l2_prefetch = major >= 9;
  return p;
}

}  // namespace segpipe::cuda
