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
// squares per thread over i = tid, tid + 256, ... in that order, per warp, then over the 8 warps in
// order. h (optional) gets the rounded row. The loads go in batches of 8 per thread, all issued
// before the first use (one memory round trip per 2048 elements instead of one per element).
// Blocks of more than kGemvThreads threads: the first kGemvThreads compute (the same bits), every
// thread of the block must call it (it synchronizes the block).
template <typename W>
__device__ __forceinline__ void stage_rmsnorm(const float* __restrict__ x, const float* __restrict__ nw, float eps,
                                              int64_t n, float* xs, W* h) {
  __shared__ double partial[kGemvWarps];
  __shared__ float inv_s;
  constexpr int B = 8;
  double ss = 0;
  float g0[B];  // the first batch's norm weights, loaded with x (one memory round trip fewer)
  const int64_t n_mine = threadIdx.x < kGemvThreads ? n : 0;
  for (int64_t base = threadIdx.x; base < n_mine; base += B * kGemvThreads) {
    float v[B];
    const bool first = base == threadIdx.x;
#pragma unroll
    for (int j = 0; j < B; j++) {
      const int64_t i = base + int64_t(j) * kGemvThreads;
      v[j] = i < n ? x[i] : 0.f;
      if (first) g0[j] = i < n ? nw[i] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < B; j++) {
      const int64_t i = base + int64_t(j) * kGemvThreads;
      if (i < n) {
        ss += double(v[j]) * v[j];
        xs[i] = v[j];  // raw x: this thread reads it back below
      }
    }
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0 && threadIdx.x < kGemvThreads) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int i = 0; i < kGemvWarps; i++) t += partial[i];
    float var = static_cast<float>(t / static_cast<double>(n));
    inv_s = 1.0f / sqrtf(var + eps);
  }
  __syncthreads();
  const float inv = inv_s;
  for (int64_t base = threadIdx.x; base < n_mine; base += B * kGemvThreads) {
    float g[B];
    const bool first = base == threadIdx.x;
#pragma unroll
    for (int j = 0; j < B; j++) {
      const int64_t i = base + int64_t(j) * kGemvThreads;
      g[j] = first ? g0[j] : (i < n ? nw[i] : 0.f);
    }
#pragma unroll
    for (int j = 0; j < B; j++) {
      const int64_t i = base + int64_t(j) * kGemvThreads;
      if (i < n) {
        W r = from_f<W>(g[j] * (xs[i] * inv));
        xs[i] = to_f(r);
        if (h) h[i] = r;
      }
    }
  }
}

// 8 consecutive weights as loaded (16 bytes of bf16, 32 of float32): kept raw in registers between
// the load and the multiply so that a warp can hold a whole 2048-element bf16 row in flight.
template <typename W>
struct Chunk8;
template <>
struct Chunk8<bf16> {
  uint4 u;
  __device__ __forceinline__ void load(const bf16* p) { u = __ldcs(reinterpret_cast<const uint4*>(p)); }
  __device__ __forceinline__ void to_float(float (&v)[8]) const {
    bf16x8_to_float(u, v);
  }
};
template <>
struct Chunk8<float> {
  float4 a, b;
  __device__ __forceinline__ void load(const float* p) {
    a = __ldcs(reinterpret_cast<const float4*>(p));
    b = __ldcs(reinterpret_cast<const float4*>(p) + 1);
  }
  __device__ __forceinline__ void to_float(float (&v)[8]) const {
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  }
};
// Chunks per lane held in registers: a 2048-element row in bf16 (8 x 16 bytes), half of one in f32.
template <typename W>
constexpr int kPrefetchChunks = sizeof(W) == 2 ? 8 : 4;

// Lane `lane`'s first kPrefetchChunks chunks of row wr (elements lane*8 + 256 c), issued together.
template <typename W>
__device__ __forceinline__ void row_prefetch(const W* __restrict__ wr, int64_t n, int lane,
                                             Chunk8<W> (&pre)[kPrefetchChunks<W>]) {
#pragma unroll
  for (int c = 0; c < kPrefetchChunks<W>; c++) {
    const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
    if (i < n) pre[c].load(wr + i);
  }
}

// x chunk as float: from shared (float) or global memory (float or bf16).
__device__ __forceinline__ void x8(const float* x, int64_t i, float (&v)[8]) {
  float4 a = *reinterpret_cast<const float4*>(x + i), b = *(reinterpret_cast<const float4*>(x + i) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void x8(const bf16* x, int64_t i, float (&v)[8]) { load8(x + i, v); }

// W_row · x for lane `lane`'s share, sequentially over its chunks (lane*8 + 256 c): the prefetched
// chunks first, the rest streamed four at a time.
template <typename W, typename X>
__device__ __forceinline__ float row_dot_pre(const W* __restrict__ wr, const X* x, int64_t n, int lane,
                                             const Chunk8<W> (&pre)[kPrefetchChunks<W>]) {
  float a = 0.f;
#pragma unroll
  for (int c = 0; c < kPrefetchChunks<W>; c++) {
    const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
    if (i < n) {
      float w[8], xv[8];
      pre[c].to_float(w);
      x8(x, i, xv);
#pragma unroll
      for (int q = 0; q < 8; q++) a += w[q] * xv[q];
    }
  }
  int64_t c = int64_t(lane) * 8 + int64_t(kPrefetchChunks<W>) * 256;
  for (; c + 3 * 256 < n; c += 4 * 256) {
    Chunk8<W> k0, k1, k2, k3;
    k0.load(wr + c);
    k1.load(wr + c + 256);
    k2.load(wr + c + 512);
    k3.load(wr + c + 768);
    float w[8], xv[8];
    k0.to_float(w);
    x8(x, c, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += w[q] * xv[q];
    k1.to_float(w);
    x8(x, c + 256, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += w[q] * xv[q];
    k2.to_float(w);
    x8(x, c + 512, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += w[q] * xv[q];
    k3.to_float(w);
    x8(x, c + 768, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += w[q] * xv[q];
  }
  for (; c < n; c += 256) {
    Chunk8<W> k0;
    k0.load(wr + c);
    float w[8], xv[8];
    k0.to_float(w);
    x8(x, c, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) a += w[q] * xv[q];
  }
  return a;
}

}  // namespace segpipe::cuda
