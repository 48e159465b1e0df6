#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/norm.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;

template <typename Y>
__global__ void rmsnorm_kernel(const float* x, int64_t n, const float* __restrict__ w, float eps, Y* y) {
  __shared__ double partial[kThreads / 32];
  __shared__ float inv_s;
  const float* xr = x + blockIdx.x * n;
  Y* yr = y + blockIdx.x * n;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) ss += double(xr[i]) * xr[i];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int i = 0; i < kThreads / 32; i++) t += partial[i];
    float var = static_cast<float>(t / static_cast<double>(n));
    inv_s = 1.0f / sqrtf(var + eps);
  }
  __syncthreads();
  const float inv = inv_s;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) yr[i] = from_f<Y>(w[i] * (xr[i] * inv));
}

}  // namespace

void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, void* y, DType yt, cudaStream_t s) {
  if (rows == 0) return;
  SEGPIPE_DISPATCH_FB(yt, Y, rmsnorm_kernel<Y><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(x, n, weight, eps, static_cast<Y*>(y)));
  SEGPIPE_CUDA_LAUNCH_CHECK("rmsnorm_kernel");
}

}  // namespace segpipe::cuda
