#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/norm.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;

// The block kernel: one block a row. A thread's loads are issued 8 at a time, all in flight
// together (one by one, each waited out a memory latency: a 2048-wide row took 12 us); the sum's
// order is that of the plain loop. y may alias x: each thread reads its elements before it writes
// them.
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

// The warp kernel, for rows of up to kThreads * kUnroll elements (2048, the hidden size of the
// models run): one warp a row, the row held in registers (64 floats a lane, all loads in flight at
// once, no block barrier; the block kernel, at 2 waves of 256-thread blocks that each waited on its
// loads then on two barriers, took 9-11 us for [2048, 2048]). It sums in the block kernel's order,
// so its bits are the block kernel's: lane l plays the block's threads 32 vw + l (vw = 0..7, its
// "virtual warps"), each summing its elements vt, vt + kThreads, ... in order; each virtual warp's
// sums are reduced by the same butterfly (warp_sum), and the 8 results added in order from 0, as
// thread 0 adds the block's partials. y may alias x: the warp reads its whole row before it writes.
constexpr int kRowMax = kThreads * kUnroll;
constexpr int kVirtualWarps = kThreads / 32;
constexpr int kRowWarps = 2;  // rows a block: small blocks spread the rows evenly over the SMs

template <typename Y>
__global__ void __launch_bounds__(kRowWarps * 32)
    rmsnorm_warp_kernel(const float* x, int64_t rows, int n, const float* __restrict__ w, float eps, Y* y) {
  const int64_t r = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  if (r >= rows) return;  // the whole warp
  const int lane = threadIdx.x % 32;
  const float* xr = x + r * n;
  Y* yr = y + r * n;
  float v[kVirtualWarps][kUnroll];  // v[vw][j]: element 32 vw + lane + j * kThreads
#pragma unroll
  for (int vw = 0; vw < kVirtualWarps; vw++)
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int i = 32 * vw + lane + j * kThreads;
      v[vw][j] = i < n ? xr[i] : 0.0f;
    }
  double t = 0;
#pragma unroll
  for (int vw = 0; vw < kVirtualWarps; vw++) {
    double ss = 0;
#pragma unroll
    for (int j = 0; j < kUnroll; j++)
      if (32 * vw + lane + j * kThreads < n) ss += double(v[vw][j]) * v[vw][j];
    t += warp_sum(ss);
  }
  float var = static_cast<float>(t / static_cast<double>(n));
  const float inv = 1.0f / sqrtf(var + eps);
#pragma unroll
  for (int vw = 0; vw < kVirtualWarps; vw++)
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      const int i = 32 * vw + lane + j * kThreads;
      if (i < n) yr[i] = from_f<Y>(w[i] * (v[vw][j] * inv));
    }
}

}  // namespace

void rmsnorm(const float* x, int64_t rows, int64_t n, const float* weight, float eps, void* y, DType yt, cudaStream_t s) {
  if (rows == 0) return;
  if (n <= kRowMax) {
    const auto blocks = static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps);
    SEGPIPE_DISPATCH_FB(yt, Y, rmsnorm_warp_kernel<Y><<<blocks, kRowWarps * 32, 0, s>>>(
                                   x, rows, static_cast<int>(n), weight, eps, static_cast<Y*>(y)));
    SEGPIPE_CUDA_LAUNCH_CHECK("rmsnorm_warp_kernel");
    return;
  }
  SEGPIPE_DISPATCH_FB(yt, Y, rmsnorm_kernel<Y><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(x, n, weight, eps, static_cast<Y*>(y)));
  SEGPIPE_CUDA_LAUNCH_CHECK("rmsnorm_kernel");
}

}  // namespace segpipe::cuda
