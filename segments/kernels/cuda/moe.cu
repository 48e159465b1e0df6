#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/kernels/cuda/route_common.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kWarps = 8;  // rows per block in the GEMVs

// Work item (g, s) = 8 output rows (row group g) of slot s; one warp per row (gate and up row
// together, all of both rows' first 8 chunks in flight at once), 16-byte streaming loads of the
// weights and 16-byte loads of the token's x (shared through L1 by the block's warps; no staging).
// Blocks walk the items g + n_groups s in steps of gridDim.x (a persistent grid: as many blocks as
// are resident at once, resident_grid).
//
// kStage (one token, S == k): the block reads the k expert ids and the token's row into
// shared memory right after the wait, both loads in one round trip, before any weight load; the rows
// then read x from shared memory (the same values: the same bits).
template <typename T, bool kStage>
__global__ void __launch_bounds__(kWarps * 32) gate_up_gemv_kernel(const T* __restrict__ x, int k,
                                                                   const int32_t* __restrict__ experts, int e0,
                                                                   int e1, const T* __restrict__ wgu, int64_t I,
                                                                   int64_t H, T* __restrict__ act, int64_t S) {
  __shared__ int32_t s_e[32];
  extern __shared__ __align__(16) unsigned char s_x_raw[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  pdl_wait();
  pdl_trigger();
  if constexpr (kStage) {
    if (threadIdx.x < k) s_e[threadIdx.x] = experts[threadIdx.x];
    float* s_x = reinterpret_cast<float*>(s_x_raw);  // as float: exact for bf16, read with generic loads
    for (int64_t i = int64_t(threadIdx.x) * 8; i < H; i += int64_t(blockDim.x) * 8) {  // H: a multiple of 8
      float v[8];
      load8(x + i, v);
#pragma unroll
      for (int q = 0; q < 8; q++) s_x[i + q] = v[q];
    }
    __syncthreads();
  }
  const int64_t n_groups = (I + kWarps - 1) / kWarps;
  for (int64_t item = blockIdx.x; item < n_groups * S; item += gridDim.x) {
    const int64_t s = item / n_groups, grp = item % n_groups;
    const int e = kStage ? s_e[s] : experts[s];
    if (e < e0 || e > e1) continue;  // uniform per block
    const int64_t i = grp * kWarps + warp;
    if (i >= I) continue;
    const T* wg = wgu + (int64_t(e - e0) * 2 * I + i) * H;
    const T* wu = wg + I * H;
    Chunk8<T> pg[kPrefetchChunks<T>], pu[kPrefetchChunks<T>];
    row_prefetch(wg, H, lane, pg);
    row_prefetch(wu, H, lane, pu);
    float ag, au;
    if constexpr (kStage) {
      const float* xs = reinterpret_cast<const float*>(s_x_raw);
      ag = row_dot_pre(wg, xs, H, lane, pg);
      au = row_dot_pre(wu, xs, H, lane, pu);
    } else {
      const T* xr = x + (s / k) * H;
      ag = row_dot_pre(wg, xr, H, lane, pg);
      au = row_dot_pre(wu, xr, H, lane, pu);
    }
    ag = warp_sum(ag);
    au = warp_sum(au);
    if (lane == 0) act[s * I + i] = from_f<T>(__fmul_rn(ag / (1.0f + expf(-ag)), au));
  }
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
// One block per kDownRows output rows (blocks walk the row groups in steps of gridDim.x: a persistent
// grid), warp j computes slot j for each of them: the weight chunks of all its rows are loaded before
// any is used, and, for the block's first group, before pdl_wait() (the expert ids come from the
// router, complete once the gate/up kernel is past its own wait, read past L1).
constexpr int kFusedMaxK = 8;
constexpr int kDownRows = 4;
constexpr int kDownChunks = 4;  // chunks of 8 per lane held per row: rows of up to 1024 in one round
template <typename T>
__global__ void __launch_bounds__(kFusedMaxK * 32) down_combine_kernel(const T* __restrict__ act,
                                                                       const int32_t* __restrict__ experts,
                                                                       const float* __restrict__ weights, int k,
                                                                       const T* __restrict__ wd, int64_t I, int64_t H,
                                                                       float* __restrict__ x) {
  __shared__ float slot[kDownRows][kFusedMaxK];
  __shared__ int32_t s_e[32];
  __shared__ int s_order[kFusedMaxK];
  const int j = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x < k) s_e[threadIdx.x] = __ldcg(experts + threadIdx.x);
  __syncthreads();
  if (threadIdx.x == 0) ascending_slots(s_e, k, s_order);
  __syncthreads();
  const int64_t n_groups = (H + kDownRows - 1) / kDownRows;
  const T* w = j < k ? wd + int64_t(s_e[j]) * H * I : nullptr;
  bool waited = false;
#pragma unroll 1
  for (int64_t grp = blockIdx.x; grp < n_groups; grp += gridDim.x) {
    const int64_t r0 = grp * kDownRows;
    Chunk8<T> pre[kDownRows][kDownChunks];
    if (j < k) {
#pragma unroll
      for (int rr = 0; rr < kDownRows; rr++)
#pragma unroll
        for (int c = 0; c < kDownChunks; c++) {
          const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
          if (r0 + rr < H && i < I) pre[rr][c].load(w + (r0 + rr) * I + i);
        }
    }
    if (!waited) {
      pdl_wait();
      pdl_trigger();
      waited = true;
    }
    if (j < k) {
      const T* aj = act + int64_t(j) * I;
      const float wj = weights[j];
#pragma unroll
      for (int rr = 0; rr < kDownRows; rr++) {
        if (r0 + rr >= H) break;
        const T* wr = w + (r0 + rr) * I;
        float a = 0.f;
#pragma unroll
        for (int c = 0; c < kDownChunks; c++) {
          const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
          if (i < I) {
            float v[8], u[8];
            pre[rr][c].to_float(v);
            load8(aj + i, u);
#pragma unroll
            for (int q = 0; q < 8; q++) a += v[q] * u[q];
          }
        }
        for (int64_t c = int64_t(lane) * 8 + int64_t(kDownChunks) * 256; c < I; c += 256) {
          float v[8], u[8];
          load8_stream(wr + c, v);
          load8(aj + c, u);
#pragma unroll
          for (int q = 0; q < 8; q++) a += v[q] * u[q];
        }
        a = warp_sum(a);
        if (lane == 0) slot[rr][j] = a * wj;
      }
    }
    __syncthreads();
    if (threadIdx.x < kDownRows && r0 + threadIdx.x < H) {
      const int rr = threadIdx.x;
      float acc = 0.f;
      for (int q = 0; q < k; q++) acc += slot[rr][s_order[q]];
      x[r0 + rr] = x[r0 + rr] + acc;
    }
    __syncthreads();  // slot[] is rewritten by the next group
  }
  if (!waited) {  // a block without a group (not launched so, but every block must wait before it exits)
    pdl_wait();
    pdl_trigger();
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ x, const int32_t* __restrict__ perm, int k, int64_t H,
                              T* __restrict__ xg) {
  const int64_t r = blockIdx.x;
  const T* src = x + int64_t(perm[r] / k) * H;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) xg[r * H + c] = src[c];
}

template <typename D, typename O>
__global__ void scatter_kernel(const D* __restrict__ d, const int32_t* __restrict__ perm,
                               const float* __restrict__ weights, int64_t H, O* __restrict__ slots) {
  const int64_t r = blockIdx.x;
  const int64_t s = perm[r];
  const float w = weights[s];
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) slots[s * H + c] = from_f<O>(to_f(d[r * H + c]) * w);
}

// Token t's k slot indices t*k + j in ascending expert id, into order[k], for the whole block.
__device__ __forceinline__ void slot_order(const int32_t* __restrict__ experts, int64_t t, int k, int* order) {
  if (threadIdx.x == 0) ascending_slots(experts + t * k, k, order);
  __syncthreads();
}

// The shared expert's sigmoid gate of token t (SharedExpertOut), as the CPU computes it.
__device__ __forceinline__ float shared_gate(const float* __restrict__ gate, int64_t t) {
  return 1.0f / (1.0f + expf(-gate[t]));
}

// routed + g * shared, two roundings (no fused multiply-add), as the CPU's mlp += g * sh.
__device__ __forceinline__ float add_shared(float routed, float g, float shared) {
  return __fadd_rn(routed, __fmul_rn(g, shared));
}

// kShared (both combines): the layer has a shared expert (sh, sh_gate: SharedExpertOut); false, the
// routed sum alone, compiled without it.
template <bool kShared>
__global__ void combine_kernel(const float* __restrict__ slots, const int32_t* __restrict__ experts, int k, int64_t H,
                               float* __restrict__ x, const float* __restrict__ sh, const float* __restrict__ sh_gate) {
  __shared__ int order[32];
  const int64_t t = blockIdx.x;
  slot_order(experts, t, k, order);
  float g = 0.f;
  if constexpr (kShared) g = shared_gate(sh_gate, t);
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; j++) acc += slots[(t * k + order[j]) * H + c];
    if constexpr (kShared) acc = add_shared(acc, g, sh[t * H + c]);
    x[t * H + c] = x[t * H + c] + acc;
  }
}

// bf16 slots (H a multiple of 8): 8 columns a thread, one 16-byte load per slot; per column the
// same sum as combine_kernel (0 + the k slots in ascending expert id, fp32).
template <bool kShared>
__global__ void combine_bf16_kernel(const bf16* __restrict__ slots, const int32_t* __restrict__ experts, int k,
                                    int64_t H, float* __restrict__ x, const float* __restrict__ sh,
                                    const float* __restrict__ sh_gate) {
  __shared__ int order[32];
  const int64_t t = blockIdx.x;
  slot_order(experts, t, k, order);
  float g = 0.f;
  if constexpr (kShared) g = shared_gate(sh_gate, t);
  for (int64_t c = int64_t(threadIdx.x) * 8; c < H; c += int64_t(blockDim.x) * 8) {
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    for (int j = 0; j < k; j++) {
      float f[8];
      bf16x8_to_float(*reinterpret_cast<const uint4*>(slots + (t * k + order[j]) * H + c), f);
#pragma unroll
      for (int i = 0; i < 8; i++) acc[i] += f[i];
    }
    if constexpr (kShared) {
#pragma unroll
      for (int i = 0; i < 8; i++) acc[i] = add_shared(acc[i], g, sh[t * H + c + i]);
    }
    float4* xo = reinterpret_cast<float4*>(x + t * H + c);
    const float4 x0 = xo[0], x1 = xo[1];
    xo[0] = make_float4(x0.x + acc[0], x0.y + acc[1], x0.z + acc[2], x0.w + acc[3]);
    xo[1] = make_float4(x1.x + acc[4], x1.y + acc[5], x1.z + acc[6], x1.w + acc[7]);
  }
}

}  // namespace

namespace {

void launch_gate_up(const void* x, int64_t S, int k, const int32_t* experts, int e0, int e1, const void* w_gate_up,
                    DType dt, int64_t I, int64_t H, void* act, const KernelPath& path, cudaStream_t s) {
  const int64_t items = int64_t(div_up(I, kWarps)) * S;
  // (the staged row within the 48 KB of dynamic shared memory a launch gets without opting in)
  const bool stage = S == k && k <= 32 && H * 4 <= 48 * 1024;
  SEGPIPE_DISPATCH_FB(dt, T, {
    auto kernel = stage ? gate_up_gemv_kernel<T, true> : gate_up_gemv_kernel<T, false>;
    const size_t smem = stage ? size_t(H) * sizeof(float) : 0;
    const unsigned grid = resident_grid(kernel, kWarps * 32, smem, items);
    SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, kernel, dim3(grid), dim3(kWarps * 32), smem, s, static_cast<const T*>(x), k,
                                  experts, e0, e1, static_cast<const T*>(w_gate_up), I, H, static_cast<T*>(act), S));
  });
  SEGPIPE_CUDA_LAUNCH_CHECK("gate_up_gemv_kernel");
}

}  // namespace

void moe_gate_up_gemv(const void* x, int64_t S, int k, const int32_t* experts, int e0, int e1, const void* w_gate_up,
                      DType dt, int64_t I, int64_t H, void* act, const KernelPath& path, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(H % 8 == 0 && I % 8 == 0, "expert GEMV: hidden and expert sizes must be multiples of 8");
  if (S == 0) return;
  launch_gate_up(x, S, k, experts, e0, e1, w_gate_up, dt, I, H, act, path, s);
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
                          void* slots, DType slot_dt, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(slot_dt == DType::F32 || slot_dt == DType::BF16, "expert slots are float32 or bfloat16");
  if (n == 0) return;
  if (slot_dt == DType::F32)
    SEGPIPE_DISPATCH_FB(dt, D,
                        scatter_kernel<D, float><<<static_cast<unsigned>(n), 256, 0, s>>>(
                            static_cast<const D*>(d), perm, weights, H, static_cast<float*>(slots)));
  else
    SEGPIPE_DISPATCH_FB(dt, D,
                        scatter_kernel<D, bf16><<<static_cast<unsigned>(n), 256, 0, s>>>(
                            static_cast<const D*>(d), perm, weights, H, static_cast<bf16*>(slots)));
  SEGPIPE_CUDA_LAUNCH_CHECK("scatter_kernel");
}

void moe_combine_add(const void* slots, DType slot_dt, const int32_t* experts, int64_t T, int k, int64_t H, float* x,
                     cudaStream_t s, const SharedExpertOut& shared) {
  SEGPIPE_ASSERT(k <= 32);
  SEGPIPE_ASSERT_MSG(!shared.out || shared.gate, "moe_combine_add: a shared expert's output without its gate");
  SEGPIPE_ASSERT_MSG(slot_dt == DType::F32 || (slot_dt == DType::BF16 && H % 8 == 0),
                     "expert slots: float32, or bfloat16 rows of a multiple of 8");
  if (T == 0) return;
  if (slot_dt == DType::F32)
    (shared.out ? combine_kernel<true> : combine_kernel<false>)<<<static_cast<unsigned>(T), 256, 0, s>>>(
        static_cast<const float*>(slots), experts, k, H, x, shared.out, shared.gate);
  else
    (shared.out ? combine_bf16_kernel<true> : combine_bf16_kernel<false>)<<<static_cast<unsigned>(T), 256, 0, s>>>(
        static_cast<const bf16*>(slots), experts, k, H, x, shared.out, shared.gate);
  SEGPIPE_CUDA_LAUNCH_CHECK("combine_kernel");
}

bool moe_down_combine_fits(int k) { return k >= 1 && k <= kFusedMaxK; }

void moe_down_combine(const void* act, int k, const int32_t* experts, const float* weights, const void* w_down,
                      DType dt, int64_t I, int64_t H, float* x, const KernelPath& path, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(H % 8 == 0 && I % 8 == 0 && moe_down_combine_fits(k), "moe_down_combine: shape");
  const int64_t groups = div_up(H, kDownRows);
  SEGPIPE_DISPATCH_FB(dt, T, {
    const unsigned grid = resident_grid(down_combine_kernel<T>, kFusedMaxK * 32, 0, groups);
    SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, down_combine_kernel<T>, dim3(grid), dim3(kFusedMaxK * 32), 0, s,
                                  static_cast<const T*>(act), experts, weights, k, static_cast<const T*>(w_down), I,
                                  H, x));
  });
  SEGPIPE_CUDA_LAUNCH_CHECK("down_combine_kernel");
}

}  // namespace segpipe::cuda
