#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/norm.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;

// A thread's loads are issued 8 at a time, all in flight together (one by one, each waited out a
// memory latency: a 2048-wide row took 12 us); the sum's order is that of the plain loop. y may
// alias x: each thread reads its elements before it writes them.
constexpr int kUnroll = 8;

template <typename Y>
__global__ void rmsnorm_kernel(const float* x, int64_t n, const float* __restrict__ w, float eps, Y* y) {
  __shared__ double partial[kThreads / 32];
  __shared__ float inv_s;
  const float* xr = x + blockIdx.x * n;
  Y* yr = y + blockIdx.x * n;
  double ss = 0;
#pragma unroll kUnroll
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
  for (int64_t i0 = threadIdx.x; i0 < n; i0 += int64_t(kUnroll) * kThreads) {
    float v[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int64_t i = i0 + int64_t(j) * kThreads;
      v[j] = i < n ? xr[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int64_t i = i0 + int64_t(j) * kThreads;
      if (i < n) yr[i] = from_f<Y>(w[i] * (v[j] * inv));
    }
  }
}

}  // namespace

void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, void* y, DType yt, cudaStream_t s) {
  if (rows == 0) return;
  SEGPIPE_DISPATCH_FB(yt, Y, rmsnorm_kernel<Y><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(x, n, weight, eps, static_cast<Y*>(y)));
  SEGPIPE_CUDA_LAUNCH_CHECK("rmsnorm_kernel");
}

}  // namespace segpipe::cuda
