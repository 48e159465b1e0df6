#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/convert.cuh"

namespace segpipe::cuda {

namespace {

template <typename S, typename D>
__global__ void convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f<D>(to_f(src[i]));
}

template <typename S>
void convert_from(const S* src, void* dst, DType dt, int64_t n, cudaStream_t s) {
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(div_up(n, 256), 65535));
  SEGPIPE_DISPATCH_FB(dt, D, convert_kernel<S, D><<<blocks, 256, 0, s>>>(src, static_cast<D*>(dst), n));
  SEGPIPE_CUDA_LAUNCH_CHECK("convert_kernel");
}

}  // namespace

void convert(const void* src, DType st, void* dst, DType dt, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (st) {
    case DType::F32: convert_from(static_cast<const float*>(src), dst, dt, n, s); break;
    case DType::BF16: convert_from(static_cast<const bf16*>(src), dst, dt, n, s); break;
    case DType::F16: convert_from(static_cast<const __half*>(src), dst, dt, n, s); break;
    default: SEGPIPE_ASSERT_MSG(false, "convert: source dtype must be F32, BF16 or F16");
  }
}

}  // namespace segpipe::cuda
