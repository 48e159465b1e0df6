#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/moe.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kWarps = 8;  // rows per block in the GEMVs

// One block = 8 output rows of one slot; one warp per row (gate and up row together), 16-byte
// streaming loads of the weights and 16-byte loads of the token's x (shared through L1 by the
// block's warps; no staging, so the weight loads start at once).
template <typename T>
__global__ void gate_up_gemv_kernel(const T* __restrict__ x, int k, const int32_t* __restrict__ experts, int e0,
                                    int e1, const T* __restrict__ wgu, int64_t I, int64_t H, T* __restrict__ act) {
  const int64_t s = blockIdx.y;
  const int e = experts[s];
  if (e < e0 || e > e1) return;
  const T* xr = x + (s / k) * H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i = int64_t(blockIdx.x) * kWarps + warp;
  if (i >= I) return;
  const T* wg = wgu + (int64_t(e - e0) * 2 * I + i) * H;
  const T* wu = wg + I * H;
  float ag = 0.f, au = 0.f;
#pragma unroll 4
  for (int64_t c = int64_t(lane) * 8; c < H; c += 256) {
    float g[8], u[8], xv[8];
    load8_stream(wg + c, g);
    load8_stream(wu + c, u);
    load8(xr + c, xv);
#pragma unroll
    for (int q = 0; q < 8; q++) {
      ag += g[q] * xv[q];
      au += u[q] * xv[q];
    }
  }
  ag = warp_sum(ag);
  au = warp_sum(au);
  if (lane == 0) act[s * I + i] = from_f<T>(__fmul_rn(ag / (1.0f + expf(-ag)), au));
}

template <typename T>
__global__ void down_gemv_kernel(const T* __restrict__ act, const int32_t* __restrict__ experts,
                                 const float* __restrict__ weights, int e0, int e1, const T* __restrict__ wd, int64_t I,
                                 int64_t H, float* __restrict__ slots) {
  extern __shared__ float as[];
  const int64_t s = blockIdx.y;
  const int e = experts[s];
  if (e < e0 || e > e1) return;
  for (int64_t c = threadIdx.x; c < I; c += blockDim.x) as[c] = to_f(act[s * I + c]);
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + warp;
  if (r >= H) return;
  const T* w = wd + (int64_t(e - e0) * H + r) * I;
  float a = 0.f;
#pragma unroll 4
  for (int64_t c = int64_t(lane) * 8; c < I; c += 256) {
    float v[8];
    load8_stream(w + c, v);
#pragma unroll
    for (int q = 0; q < 8; q++) a += v[q] * as[c + q];
  }
  a = warp_sum(a);
  if (lane == 0) slots[s * H + r] = a * weights[s];
}

// Decode, one token, all k slots local: x[r] += sum over the slots in ascending expert id of
// weights[j] * (W_down[e_j][r, :] · act[j]), each slot's product computed exactly as down_gemv_kernel
// computes it and added in combine_kernel's order, so the result equals down + combine bit for bit.
// One block per output row, warp j computes slot j (its weight row and act row both read straight
// from memory, no staging): every load of the block is in flight at once.
constexpr int kFusedMaxK = 8;
template <typename T>
__global__ void __launch_bounds__(kFusedMaxK * 32) down_combine_kernel(const T* __restrict__ act,
                                                                       const int32_t* __restrict__ experts,
                                                                       const float* __restrict__ weights, int k,
                                                                       const T* __restrict__ wd, int64_t I, int64_t H,
                                                                       float* __restrict__ x) {
  __shared__ float slot[kFusedMaxK];
  const int j = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x;
  if (j < k) {
    const T* w = wd + (int64_t(experts[j]) * H + r) * I;
    const T* aj = act + int64_t(j) * I;
    float a = 0.f;
#pragma unroll 4
    for (int64_t c = int64_t(lane) * 8; c < I; c += 256) {
      float v[8], u[8];
      load8_stream(w + c, v);
      load8(aj + c, u);
#pragma unroll
      for (int q = 0; q < 8; q++) a += v[q] * u[q];
    }
    a = warp_sum(a);
    if (lane == 0) slot[j] = a * weights[j];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int order[kFusedMaxK];
    for (int q = 0; q < k; q++) order[q] = q;
    for (int q = 1; q < k; q++) {
      int v = order[q], b = q - 1;
      while (b >= 0 && experts[order[b]] > experts[v]) {
        order[b + 1] = order[b];
        b--;
      }
      order[b + 1] = v;
    }
    float acc = 0.f;
    for (int q = 0; q < k; q++) acc += slot[order[q]];
    x[r] = x[r] + acc;
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ x, const int32_t* __restrict__ perm, int k, int64_t H,
                              T* __restrict__ xg) {
  const int64_t r = blockIdx.x;
  const T* src = x + int64_t(perm[r] / k) * H;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) xg[r * H + c] = src[c];
}

template <typename D>
__global__ void scatter_kernel(const D* __restrict__ d, const int32_t* __restrict__ perm,
                               const float* __restrict__ weights, int64_t H, float* __restrict__ slots) {
  const int64_t r = blockIdx.x;
  const int64_t s = perm[r];
  const float w = weights[s];
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) slots[s * H + c] = to_f(d[r * H + c]) * w;
}

__global__ void combine_kernel(const float* __restrict__ slots, const int32_t* __restrict__ experts, int k, int64_t H,
                               float* __restrict__ x) {
  __shared__ int order[32];
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    for (int j = 0; j < k; j++) order[j] = j;
    for (int a = 1; a < k; a++) {  // insertion sort by expert id (ids are distinct)
      int v = order[a], b = a - 1;
      while (b >= 0 && experts[t * k + order[b]] > experts[t * k + v]) {
        order[b + 1] = order[b];
        b--;
      }
      order[b + 1] = v;
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; j++) acc += slots[(t * k + order[j]) * H + c];
    x[t * H + c] = x[t * H + c] + acc;
  }
}

}  // namespace

void moe_gate_up_gemv(const void* x, int64_t S, int k, const int32_t* experts, int e0, int e1, const void* w_gate_up,
                      DType dt, int64_t I, int64_t H, void* act, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(H % 8 == 0 && I % 8 == 0, "expert GEMV: hidden and expert sizes must be multiples of 8");
  if (S == 0) return;
  dim3 grid(div_up(I, kWarps), static_cast<unsigned>(S));
  SEGPIPE_DISPATCH_FB(dt, T,
                      gate_up_gemv_kernel<T><<<grid, kWarps * 32, 0, s>>>(
                          static_cast<const T*>(x), k, experts, e0, e1, static_cast<const T*>(w_gate_up), I, H,
                          static_cast<T*>(act)));
  SEGPIPE_CUDA_LAUNCH_CHECK("gate_up_gemv_kernel");
}

void moe_down_gemv(const void* act, int64_t S, const int32_t* experts, const float* weights, int e0, int e1,
                   const void* w_down, DType dt, int64_t I, int64_t H, float* slots, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(H % 8 == 0 && I % 8 == 0, "expert GEMV: hidden and expert sizes must be multiples of 8");
  if (S == 0) return;
  dim3 grid(div_up(H, kWarps), static_cast<unsigned>(S));
  size_t smem = static_cast<size_t>(I) * sizeof(float);
  SEGPIPE_DISPATCH_FB(dt, T,
                      down_gemv_kernel<T><<<grid, kWarps * 32, smem, s>>>(static_cast<const T*>(act), experts, weights,
                                                                           e0, e1, static_cast<const T*>(w_down), I,
                                                                           H, slots));
  SEGPIPE_CUDA_LAUNCH_CHECK("down_gemv_kernel");
}

void moe_gather_rows(const void* x, DType dt, const int32_t* perm, int64_t n, int k, int64_t H, void* xg,
                     cudaStream_t s) {
  if (n == 0) return;
  SEGPIPE_DISPATCH_FB(dt, T,
                      gather_kernel<T><<<static_cast<unsigned>(n), 256, 0, s>>>(static_cast<const T*>(x), perm, k, H,
                                                                                 static_cast<T*>(xg)));
  SEGPIPE_CUDA_LAUNCH_CHECK("gather_kernel");
}

void moe_scatter_weighted(const void* d, DType dt, const int32_t* perm, const float* weights, int64_t n, int64_t H,
                          float* slots, cudaStream_t s) {
  if (n == 0) return;
  SEGPIPE_DISPATCH_FB(dt, D,
                      scatter_kernel<D><<<static_cast<unsigned>(n), 256, 0, s>>>(static_cast<const D*>(d), perm,
                                                                                  weights, H, slots));
  SEGPIPE_CUDA_LAUNCH_CHECK("scatter_kernel");
}

void moe_combine_add(const float* slots, const int32_t* experts, int64_t T, int k, int64_t H, float* x,
                     cudaStream_t s) {
  SEGPIPE_ASSERT(k <= 32);
  if (T == 0) return;
  combine_kernel<<<static_cast<unsigned>(T), 256, 0, s>>>(slots, experts, k, H, x);
  SEGPIPE_CUDA_LAUNCH_CHECK("combine_kernel");
}

bool moe_down_combine_fits(int k) { return k >= 1 && k <= kFusedMaxK; }

void moe_down_combine(const void* act, int k, const int32_t* experts, const float* weights, const void* w_down,
                      DType dt, int64_t I, int64_t H, float* x, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(H % 8 == 0 && I % 8 == 0 && moe_down_combine_fits(k), "moe_down_combine: shape");
  SEGPIPE_DISPATCH_FB(dt, T,
                      down_combine_kernel<T><<<static_cast<unsigned>(H), kFusedMaxK * 32, 0, s>>>(
                          static_cast<const T*>(act), experts, weights, k, static_cast<const T*>(w_down), I, H, x));
  SEGPIPE_CUDA_LAUNCH_CHECK("down_combine_kernel");
}

}  // namespace segpipe::cuda
