#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/norm.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;

// A thread's loads are issued 8 at a time, all in flight together (one by one, each waited out a
// memory latency: a 2048-wide row took 12 us); the sum's order is that of the plain loop.
constexpr int kUnroll = 8;

// Rows of up to kThreads * kUnroll elements (2048: the hidden size of the models run) are read once:
// a thread's x elements are kept in registers for the output (re-reading x after the reduction left
// DRAM idle while each block waited on L2 again); w, the same for every row, comes from L1. 32
// registers: 8 blocks of 256 threads an SM. Longer rows take the two-pass loop. Both sum a thread's elements tid, tid + kThreads, ... in that
// order, then the same warp and block reductions: the same bits either way. y may alias x: every
// read of x comes before the barrier that precedes the first write (held rows), or a thread reads
// its own elements before it writes them (two-pass rows).
template <typename Y>
__global__ void __launch_bounds__(kThreads, min_blocks_per_sm(kThreads, 8))
    rmsnorm_kernel(const float* x, int64_t n, const float* __restrict__ w, float eps, Y* y) {
  __shared__ double partial[kThreads / 32];
  __shared__ float inv_s;
  const float* xr = x + blockIdx.x * n;
  Y* yr = y + blockIdx.x * n;
  const bool held = n <= int64_t(kThreads) * kUnroll;  // the same for the whole block
  float v[kUnroll];
  double ss = 0;
  if (held) {
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int i = int(threadIdx.x) + j * kThreads;
      v[j] = i < n ? xr[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; j++)
      if (int(threadIdx.x) + j * kThreads < n) ss += double(v[j]) * v[j];
  } else {
#pragma unroll kUnroll
    for (int64_t i = threadIdx.x; i < n; i += kThreads) ss += double(xr[i]) * xr[i];
  }
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
  if (held) {
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int i = int(threadIdx.x) + j * kThreads;
      if (i < n) yr[i] = from_f<Y>(w[i] * (v[j] * inv));
    }
    return;
  }
  for (int64_t i0 = threadIdx.x; i0 < n; i0 += int64_t(kUnroll) * kThreads) {
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
