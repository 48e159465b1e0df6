// Decode experts of one token in one kernel, the weights streamed into shared memory by the bulk copy
// engine (moe.cuh: moe_experts_stream). See the kernel's comment for the design.
#include <algorithm>
#include <atomic>

#include "segments/kernels/cuda/bulk_copy.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/kernels/cuda/route_common.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;   // 8 warps
constexpr int kGuRows = 4;      // gate/up item: 4 gate rows (warps 0-3) and the same 4 up rows (warps 4-7)
constexpr int kMaxK = 8;        // down item: warp j computes slot j
constexpr int kMaxStages = 8;
constexpr int kActChunks = 4;   // act chunks per lane kept in registers (I up to 1024), the rest read from L2
constexpr uint32_t kMaxStage = 64 * 1024;

// The whole expert MLP of one decode token (k slots, every expert in the bank) in one kernel:
//   gate/up items (slot s, rows i0..i0+3): act[s, i] = silu(Wg[e_s][i] · h) * (Wu[e_s][i] · h)
//   a grid-wide wait until every gate/up item is written
//   down items (rows r0..r0+d_rows-1): x[r] += sum over the slots in ascending expert id of
//                                      w_j * (Wd[e_j][r] · act[j])
// Every output is computed exactly as moe_gate_up_gemv and moe_down_combine compute it (lane l takes
// elements l*8 + 256 c in order, then warp_sum; the same SwiGLU and combine), so the results are
// bit-identical to those two kernels.
//
// Why: those kernels keep each warp's loads in registers (128 registers, 2 blocks of 8 warps per SM)
// and wait for a whole row before the next is issued; measured at 2.3 and 1.4 TB/s. Here one thread
// of each block issues bulk copies of whole items (32 KB for the full-size gate/up item) into a ring
// of `stages` shared-memory buffers, each completing on its own mbarrier; the warps only compute.
// Items are handed out by a device counter in order (all gate/up items, then all down items), so a
// block takes a down item only once every gate/up item has been taken by a running block: the wait
// for the gate/up results cannot deadlock whatever the number of resident blocks, and the down
// weights of a block's next items stream in while the last gate/up items finish elsewhere.
//
// ctr[0]: next item, ctr[1]: gate/up items written, ctr[2]: blocks finished; the last block to
// finish sets all three back to 0 for the next launch.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) experts_stream_kernel(
    const T* __restrict__ h, int k, const int32_t* __restrict__ experts, const float* __restrict__ weights,
    const T* __restrict__ wgu, const T* __restrict__ wd, int64_t I, int64_t H, T* __restrict__ act,
    float* __restrict__ x, unsigned* __restrict__ ctr, int stages, uint32_t stage_bytes, int d_rows, const void* pf,
    uint64_t pf_bytes, int pf_at) {
  extern __shared__ __align__(128) unsigned char ring[];  // [stages][stage_bytes], then h as T [H]
  __shared__ uint64_t full[kMaxStages];
  __shared__ int s_item[kMaxStages];
  __shared__ float s_red[2][kMaxK * kMaxK];  // per stage parity: gate/up [warp]; down [row * 8 + slot]
  __shared__ int32_t s_e[kMaxK];
  __shared__ float s_w[kMaxK];
  __shared__ int s_order[kMaxK];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t gu_groups = I / kGuRows;
  const unsigned n_gu = unsigned(gu_groups * k), n_items = n_gu + unsigned(H / d_rows);
  T* hs = reinterpret_cast<T*>(ring + size_t(stages) * stage_bytes);

  if (threadIdx.x == 0) {
    for (int q = 0; q < stages; q++) mbar_init(&full[q], 1);
    mbar_init_fence();
  }
  pdl_wait();
  pdl_trigger();
  unsigned next = 0;  // thread 0: the item for the next refill (taken one refill ahead)
  if (threadIdx.x == 0) next = atomicAdd(&ctr[0], unsigned(stages));
  if (threadIdx.x < k) {
    s_e[threadIdx.x] = experts[threadIdx.x];
    s_w[threadIdx.x] = weights[threadIdx.x];
  }
  for (int64_t i = int64_t(threadIdx.x) * 8; i < H; i += kThreads * 8) {
    Vec8<T> v;
    v.ldcg(h + i);  // written by the router kernel, complete past pdl_wait
    *reinterpret_cast<Vec8<T>*>(hs + i) = v;
  }
  __syncthreads();  // s_e, hs, and the barriers' initialization
  if (pf_at == 2) prefetch_l2_share(pf, pf_bytes, blockIdx.x, gridDim.x);

  // Thread 0: fill stage q with item `it` (or mark the end: an arrival without bytes).
  auto refill = [&](int q, unsigned it) {
    unsigned char* dst = ring + size_t(q) * stage_bytes;
    if (it >= n_items) {
      s_item[q] = -1;
      mbar_arrive(&full[q]);
      return;
    }
    s_item[q] = int(it);
    if (it < n_gu) {
      const int64_t s = it / gu_groups, i0 = int64_t(it % gu_groups) * kGuRows;
      const uint32_t rb = uint32_t(kGuRows * H * int64_t(sizeof(T)));
      const T* g = wgu + (int64_t(s_e[s]) * 2 * I + i0) * H;
      mbar_arrive_tx(&full[q], 2 * rb);
      bulk_load(dst, g, rb, &full[q]);
      bulk_load(dst + rb, g + I * H, rb, &full[q]);
    } else {
      const int64_t r0 = int64_t(it - n_gu) * d_rows;
      const uint32_t rb = uint32_t(d_rows * I * int64_t(sizeof(T)));
      mbar_arrive_tx(&full[q], uint32_t(k) * rb);
      for (int j = 0; j < k; j++) bulk_load(dst + size_t(j) * rb, wd + (int64_t(s_e[j]) * H + r0) * I, rb, &full[q]);
    }
  };
  if (threadIdx.x == 0) {
    const unsigned first = next;
    for (int q = 0; q < stages; q++) refill(q, first + unsigned(q));
    next = first + unsigned(stages) < n_items ? atomicAdd(&ctr[0], 1u) : n_items;
    ascending_slots(s_e, k, s_order);
  }
  Vec8<T> ar[kActChunks];  // this lane's chunks of act[warp], loaded once every gate/up item is written
  bool passed = false;

  for (int n = 0;; n++) {
    const int q = n % stages;
    mbar_wait(&full[q], uint32_t(n / stages) & 1u);
    const int it = s_item[q];
    if (it < 0) break;  // uniform: all later stages are ends too (items are taken in order)
    const T* buf = reinterpret_cast<const T*>(ring + size_t(q) * stage_bytes);
    float* red = s_red[n & 1];
    if (unsigned(it) < n_gu) {
      const T* wr = buf + int64_t(warp) * H;  // rows: gate i0..i0+3, then up i0..i0+3
      float a = 0.f;
#pragma unroll 4
      for (int64_t i = int64_t(lane) * 8; i < H; i += 256) {
        Vec8<T> wv, xv8;
        wv.lds(wr + i);
        xv8.lds(hs + i);
        float w[8], xv[8];
        wv.to_float(w);
        xv8.to_float(xv);
#pragma unroll
        for (int e = 0; e < 8; e++) a += w[e] * xv[e];
      }
      a = warp_sum(a);
      if (lane == 0) red[warp] = a;
    } else {
      if (!passed) {  // uniform: the same item for the whole block
        if (threadIdx.x == 0)
          while (ld_acquire(&ctr[1]) < n_gu) __nanosleep(32);
        if (pf_at == 1) prefetch_l2_share(pf, pf_bytes, blockIdx.x, gridDim.x);
        __syncthreads();
        passed = true;
        if (warp < k) {
#pragma unroll
          for (int c = 0; c < kActChunks; c++) {
            const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
            if (i < I) ar[c].ldcg(act + int64_t(warp) * I + i);
          }
        }
      }
      if (warp < k) {
        const T* wj = buf + int64_t(warp) * d_rows * I;
        const T* aj = act + int64_t(warp) * I;
        const float wgt = s_w[warp];
        for (int rr = 0; rr < d_rows; rr++) {
          const T* wr = wj + int64_t(rr) * I;
          float a = 0.f;
#pragma unroll
          for (int c = 0; c < kActChunks; c++) {
            const int64_t i = int64_t(lane) * 8 + int64_t(c) * 256;
            if (i < I) {
              Vec8<T> wv;
              wv.lds(wr + i);
              float v[8], u[8];
              wv.to_float(v);
              ar[c].to_float(u);
#pragma unroll
              for (int e = 0; e < 8; e++) a += v[e] * u[e];
            }
          }
          for (int64_t i = int64_t(lane) * 8 + int64_t(kActChunks) * 256; i < I; i += 256) {
            Vec8<T> wv, av;
            wv.lds(wr + i);
            av.ldcg(aj + i);
            float v[8], u[8];
            wv.to_float(v);
            av.to_float(u);
#pragma unroll
            for (int e = 0; e < 8; e++) a += v[e] * u[e];
          }
          a = warp_sum(a);
          if (lane == 0) red[rr * kMaxK + warp] = a * wgt;
        }
      }
    }
    __syncthreads();  // stage q read by every warp; red complete
    if (warp == 0) {
      if (lane == 0) {
        refill(q, next);
        if (next < n_items) next = atomicAdd(&ctr[0], 1u);
      }
      if (unsigned(it) < n_gu) {
        if (lane < kGuRows) {
          const float g = red[lane], u = red[kGuRows + lane];
          const int64_t s = it / gu_groups, i = int64_t(it % gu_groups) * kGuRows + lane;
          act[s * I + i] = from_f<T>(__fmul_rn(g / (1.0f + expf(-g)), u));
          __threadfence();
        }
        __syncwarp();
        if (lane == 0) atomicAdd(&ctr[1], 1u);
      } else if (lane < d_rows) {
        const int64_t r = int64_t(unsigned(it) - n_gu) * d_rows + lane;
        float acc = 0.f;
        for (int q2 = 0; q2 < k; q2++) acc += red[lane * kMaxK + s_order[q2]];
        x[r] = x[r] + acc;
      }
    }
  }
  if (threadIdx.x == 0) {
    if (pf_at == 0) prefetch_l2_share(pf, pf_bytes, blockIdx.x, gridDim.x);  // the next kernel's weights
    __threadfence();
    if (atomicAdd(&ctr[2], 1u) == gridDim.x - 1) {
      ctr[0] = 0;
      ctr[1] = 0;
      ctr[2] = 0;
    }
  }
}

struct StreamShape {
  int d_rows = 0, stages = 0;
  uint32_t stage = 0;
  size_t smem = 0;
};

std::atomic<int> g_ring_kb{96};
std::atomic<bool> g_stream{false};
std::atomic<int> g_pf_at{1};

StreamShape stream_shape(int k, int64_t H, int64_t I, DType dt) {
  StreamShape s;
  if (k < 1 || k > kMaxK || H % 8 != 0 || I % 8 != 0 || H < 8 || I < 8) return s;
  const int64_t es = int64_t(dtype_size(dt));
  const int64_t gu = 2 * kGuRows * H * es;
  int d = 4;
  while (d > 1 && k * d * I * es > gu) d /= 2;
  const int64_t st = (std::max<int64_t>(gu, k * d * I * es) + 127) / 128 * 128;
  if (st > kMaxStage) return s;
  const int64_t ring = int64_t(g_ring_kb.load()) * 1024;
  const int stages = int(std::min<int64_t>(kMaxStages, std::max<int64_t>(2, ring / st)));
  const size_t smem = size_t(stages) * size_t(st) + size_t(H * es);
  if (smem > 200 * 1024) return s;
  s.d_rows = d;
  s.stages = stages;
  s.stage = uint32_t(st);
  s.smem = smem;
  return s;
}

}  // namespace

void set_decode_expert_stream(bool on) { g_stream.store(on); }
bool decode_expert_stream() { return g_stream.load(std::memory_order_relaxed); }
void set_decode_expert_ring_kb(int kb) { g_ring_kb.store(kb < 16 ? 16 : kb); }
int decode_expert_ring_kb() { return g_ring_kb.load(std::memory_order_relaxed); }
void set_decode_expert_prefetch_at(int at) { g_pf_at.store(at); }
int decode_expert_prefetch_at() { return g_pf_at.load(std::memory_order_relaxed); }

bool moe_experts_stream_fits(int k, int64_t H, int64_t I, DType dt) {
  return (dt == DType::F32 || dt == DType::BF16) && stream_shape(k, H, I, dt).stages > 0;
}

void moe_experts_stream(const void* h, int k, const int32_t* experts, const float* weights, const void* w_gate_up,
                        const void* w_down, DType dt, int64_t I, int64_t H, void* act, float* x, unsigned* counters,
                        cudaStream_t s, const void* prefetch, uint64_t prefetch_bytes) {
  const StreamShape sh = stream_shape(k, H, I, dt);
  SEGPIPE_ASSERT_MSG(sh.stages > 0 && (dt == DType::F32 || dt == DType::BF16), "moe_experts_stream: shape");
  const int64_t items = (I / kGuRows) * k + H / sh.d_rows;
  SEGPIPE_DISPATCH_FB(dt, T, {
    static size_t raised = 48 * 1024;  // per instantiation: the dynamic shared-memory limit set so far
    if (sh.smem > raised) {
      SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(experts_stream_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(sh.smem)));
      raised = sh.smem;
    }
    const unsigned grid = resident_grid(experts_stream_kernel<T>, kThreads, sh.smem, items);
    SEGPIPE_CUDA_CHECK(launch_pdl(experts_stream_kernel<T>, dim3(grid), dim3(kThreads), sh.smem, s,
                                  static_cast<const T*>(h), k, experts, weights, static_cast<const T*>(w_gate_up),
                                  static_cast<const T*>(w_down), I, H, static_cast<T*>(act), x, counters, sh.stages,
                                  sh.stage, sh.d_rows, prefetch, prefetch_bytes, g_pf_at.load()));
  });
  SEGPIPE_CUDA_LAUNCH_CHECK("experts_stream_kernel");
}

}  // namespace segpipe::cuda
