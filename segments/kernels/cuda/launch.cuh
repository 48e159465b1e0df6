// Kernel launches with the programmatic-dependent-launch attribute (see pdl_wait in common.cuh);
// included from .cu files only. decode_overlap() (gemv.cuh) switches the attribute off for A/B runs.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "segments/kernels/cuda/gemv.cuh"

namespace segpipe::cuda {

template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                       Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = decode_overlap() ? 1 : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace segpipe::cuda
