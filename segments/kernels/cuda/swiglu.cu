#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/swiglu.cuh"

namespace segpipe::cuda {

namespace {

template <typename G, typename A>
__global__ void swiglu_kernel(const G* __restrict__ gu, int64_t rows, int64_t I, A* __restrict__ act) {
  const int64_t n = rows * I;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = idx / I, i = idx % I;
    float g = to_f(gu[r * 2 * I + i]), u = to_f(gu[r * 2 * I + I + i]);
    act[idx] = from_f<A>(__fmul_rn(g / (1.0f + expf(-g)), u));
  }
}

}  // namespace

void swiglu_rows(const void* gu, DType gt, int64_t rows, int64_t I, void* act, DType at, cudaStream_t s) {
  if (rows == 0) return;
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(div_up(rows * I, 256), 65535));
  SEGPIPE_DISPATCH_FB(gt, G,
                      SEGPIPE_DISPATCH_FB(at, A,
                                          swiglu_kernel<G, A><<<blocks, 256, 0, s>>>(static_cast<const G*>(gu), rows,
                                                                                     I, static_cast<A*>(act))));
  SEGPIPE_CUDA_LAUNCH_CHECK("swiglu_kernel");
}

}  // namespace segpipe::cuda
