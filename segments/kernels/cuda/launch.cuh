// Kernel launches with the programmatic-dependent-launch attribute (see pdl_wait in common.cuh);
// included from .cu files only. Used wherever the device has it (KernelPath::pdl): the decode step
// without it (no overlap of a kernel's weight loads with the previous kernel) was slower
// (docs/benchmarks-cuda.md, "decode, graph, without PDL and L2 prefetch"). Elsewhere the same
// kernels are launched plainly, and their pdl_wait / pdl_trigger do nothing.
#pragma once
#include <cuda_runtime.h>

#include <mutex>
#include <utility>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/gemv.cuh"

namespace segpipe::cuda {

// pdl: KernelPath::pdl of the caller's context; false launches without the attribute.
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(bool pdl, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                       Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Multiprocessors of the current device (queried once per process).
int sm_count();

// Persistent grids for the decode kernels: as many blocks of `kernel` as are resident at once (SM
// count x blocks per SM at this block size and dynamic shared memory, every block that fits), at most
// `want`. The occupancy is queried once per kernel and shared-memory size (a few sizes per kernel).
template <typename K>
unsigned resident_grid(K kernel, int threads, size_t smem, int64_t want) {
  struct Entry {
    const void* k;
    size_t smem;
    int per_sm;
  };
  static Entry cache[8];
  static int used = 0;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  int per_sm = 0;
  for (int i = 0; i < used; i++)
    if (cache[i].k == reinterpret_cast<const void*>(kernel) && cache[i].smem == smem) per_sm = cache[i].per_sm;
  if (per_sm == 0) {
    SEGPIPE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    if (per_sm < 1) per_sm = 1;
    if (used < 8) cache[used++] = {reinterpret_cast<const void*>(kernel), smem, per_sm};
  }
  const int64_t n = int64_t(sm_count()) * per_sm;
  return static_cast<unsigned>(want < n ? (want < 1 ? 1 : want) : n);
}

}  // namespace segpipe::cuda
