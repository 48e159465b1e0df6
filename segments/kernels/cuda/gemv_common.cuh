// Pieces shared by the decode GEMV kernels (gemv.cu, router.cu, moe.cu); included from .cu files only.
#pragma once
#include "segments/kernels/cuda/common.cuh"

namespace segpipe::cuda {

constexpr int kGemvWarps = 8;
constexpr int kGemvThreads = kGemvWarps * 32;

// Blocks for a grid-stride GEMV over `rows` rows (one warp a row): at most 8 blocks per multiprocessor.
unsigned gemv_grid(int64_t rows);

// Lane `lane`'s share of W_row · xs (xs float32 in shared memory, n a multiple of 8): elements
// lane*8 + 256 j, four 16-byte loads in flight before the first multiply.
template <typename W>
__device__ __forceinline__ float row_dot(const W* __restrict__ wr, const float* xs, int64_t n, int lane) {
  float a = 0.f;
  int64_t c = int64_t(lane) * 8;
  for (; c + 3 * 256 < n; c += 4 * 256) {
    float v0[8], v1[8], v2[8], v3[8];
    load8_stream(wr + c, v0);
    load8_stream(wr + c + 256, v1);
    load8_stream(wr + c + 512, v2);
    load8_stream(wr + c + 768, v3);
#pragma unroll
    for (int q = 0; q < 8; q++) a += v0[q] * xs[c + q];
#pragma unroll
    for (int q = 0; q < 8; q++) a += v1[q] * xs[c + 256 + q];
#pragma unroll
    for (int q = 0; q < 8; q++) a += v2[q] * xs[c + 512 + q];
#pragma unroll
    for (int q = 0; q < 8; q++) a += v3[q] * xs[c + 768 + q];
  }
  for (; c < n; c += 256) {
    float v[8];
    load8_stream(wr + c, v);
#pragma unroll
    for (int q = 0; q < 8; q++) a += v[q] * xs[c + q];
  }
  return a;
}

// The same with x read from memory (16-byte loads, L1-cached across the block's warps) rather than
// staged: the weight loads need not wait for a staging pass.
template <typename W, typename X>
__device__ __forceinline__ float row_dot_mem(const W* __restrict__ wr, const X* __restrict__ x, int64_t n, int lane) {
  float a = 0.f;
  int64_t c = int64_t(lane) * 8;
  for (; c + 256 < n; c += 2 * 256) {
    float v0[8], v1[8], x0[8], x1[8];
    load8_stream(wr + c, v0);
    load8_stream(wr + c + 256, v1);
    load8(x + c, x0);
    load8(x + c + 256, x1);
#pragma unroll
    for (int q = 0; q < 8; q++) a += v0[q] * x0[q];
#pragma unroll
    for (int q = 0; q < 8; q++) a += v1[q] * x1[q];
  }
  for (; c < n; c += 256) {
    float v[8], xv[8];
    load8_stream(wr + c, v);
    load8(x + c, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += v[q] * xv[q];
  }
  return a;
}

// xs[i] = float(round_W(nw[i] * (x[i] * inv_rms(x)))) for i < n, by the whole block (kGemvThreads
// threads), with the same arithmetic and reduction order as rmsnorm_kernel (norm.cu): a double sum of
// squares per thread, per warp, then over the 8 warps in order. h (optional) gets the rounded row.
template <typename W>
__device__ __forceinline__ void stage_rmsnorm(const float* __restrict__ x, const float* __restrict__ nw, float eps,
                                              int64_t n, float* xs, W* h) {
  __shared__ double partial[kGemvWarps];
  __shared__ float inv_s;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += kGemvThreads) ss += double(x[i]) * x[i];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int i = 0; i < kGemvWarps; i++) t += partial[i];
    float var = static_cast<float>(t / static_cast<double>(n));
    inv_s = 1.0f / sqrtf(var + eps);
  }
  __syncthreads();
  const float inv = inv_s;
  for (int64_t i = threadIdx.x; i < n; i += kGemvThreads) {
    W r = from_f<W>(nw[i] * (x[i] * inv));
    xs[i] = to_f(r);
    if (h) h[i] = r;
  }
}

}  // namespace segpipe::cuda
