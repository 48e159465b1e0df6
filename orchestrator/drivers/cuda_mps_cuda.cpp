// The CUDA queries of cuda_mps.h (kept apart from the process handling, which needs no CUDA).
#include "orchestrator/drivers/cuda_mps.h"

#ifndef SEGPIPE_HAVE_CUDA

namespace segpipe {
bool cuda_context_active(int) { return false; }
bool cuda_mps_enabled(int) { return false; }
}  // namespace segpipe

#else

#include <cuda.h>
#include <cuda_runtime_api.h>

#include "segments/cuda/device.h"

namespace segpipe {

bool cuda_context_active(int device) {
  // Through the runtime's driver entry point: the build links cudart only.
  using Fn = CUresult (*)(CUdevice, unsigned int*, int*);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn, 12000, cudaEnableDefault, &q) !=
          cudaSuccess ||
      q != cudaDriverEntryPointSuccess || !fn) {
    cudaGetLastError();
    return true;  // unknown: assume a context, so MPS is not switched on under it
  }
  unsigned flags = 0;
  int active = 0;
  if (reinterpret_cast<Fn>(fn)(static_cast<CUdevice>(device), &flags, &active) != CUDA_SUCCESS)
    return true;
  return active != 0;
}

bool cuda_mps_enabled(int device) {
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMpsEnabled, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return v != 0;
}

}  // namespace segpipe

#endif
