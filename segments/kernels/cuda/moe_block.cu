// The MLP block of an MoE decode step in one kernel (moe_block.cuh). See the kernel's comment.
#include <algorithm>
#include <atomic>

#include "segments/kernels/cuda/bulk_copy.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/moe_block.cuh"
#include "segments/kernels/cuda/route_common.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kWarps = 16;  // one block of 16 warps per multiprocessor
constexpr int kThreads = kWarps * 32;
constexpr int kRouterWarps = kWarps;  // router rows per router block
constexpr int kMaxK = 8;              // down: warp w computes slot w % 8
constexpr int kDownRows = 4;          // output rows per down item (moe_down_combine's)
constexpr int kActRegs = 4;           // act chunks per lane held in registers (I <= 1024), the rest read from L2

// Thread 0 waits until *p reaches n, then the whole block goes on (the writes counted into *p
// were fenced before their count).
__device__ __forceinline__ void block_wait(const unsigned* p, unsigned n) {
  if (threadIdx.x == 0)
    while (ld_acquire(p) < n) __nanosleep(20);
  __syncthreads();
}
// Thread 0 counts this block into *p once every thread's writes before this call are visible.
__device__ __forceinline__ void block_arrive(unsigned* p) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(p, 1u);
}

// Phase timestamps for the benchmark's timeline (set_moe_block_trace): thread 0 of each block writes
// (globaltimer, clock64) at phase i into trace[(block * kTracePoints + i) * 2].
__device__ unsigned long long* g_trace = nullptr;
__device__ __forceinline__ void trace_point(int i) {
  unsigned long long* t = g_trace;
  if (t && threadIdx.x == 0) {
    unsigned long long g;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g));
    t[(size_t(blockIdx.x) * kMoeBlockTracePoints + i) * 2] = g;
    t[(size_t(blockIdx.x) * kMoeBlockTracePoints + i) * 2 + 1] = clock64();
  }
}

constexpr uint32_t kSegBytes = 4096;  // a ring stage: at most this much of one weight row

// One decode token's MoE MLP block, one block of 16 warps per multiprocessor (G blocks):
//
//   1. router: blocks 0..R-1 (R = ceil(E / 16), one warp a router row, its chunks loaded before
//      pdl_wait) normalize x (stage_rmsnorm, as router_fused), write their logits and count
//      themselves into ctr[0]; the others normalize x too (their gate/up products need it).
//   2. every block waits for ctr[0] == R and routes the logits itself (route_warp: the same bits in
//      every block).
//   3. each warp streams its weight rows through its own ring of S shared-memory stages, S segments
//      ahead of the one it multiplies (a segment: up to 4 KB of one row, copied by the bulk copy
//      engine on the stage's mbarrier, issued by lane 0): first the gate and up rows of its tasks
//      (task (s, i) = gate row i and up row i of slot s, tasks spread over every warp of the grid;
//      act[s, i] as moe_gate_up_gemv writes it), then the down rows of its down items, whose copies
//      are thus in flight before the wait below. Every row's arithmetic is row_dot_pre's (lane l:
//      elements l*8 + 256 c in order, one accumulator, then warp_sum).
//   4. the block counts itself into ctr[1] when its gate/up tasks are done; its down items (kDownRows
//      output rows, warp w computes slot w % 8 of the items of parity w / 8) wait for ctr[1] == G,
//      then multiply the rows already in the rings; the block adds each row's slots in ascending
//      expert id into x (moe_down_combine's arithmetic).
//
// Why it was built: the three-kernel path holds its in-flight weights in registers (about one row per
// warp ahead) and streams at 2-2.8 TB/s, and halving the warps per multiprocessor cost a quarter of
// the decode rate; here a multiprocessor keeps 16 x S x 4 KB (192 KB) in flight at one copy
// instruction per segment, with no kernel boundary inside the block. Measured on an H200
// (docs/benchmarks-cuda.md): as fast as the three kernels alone (a 75 MB read reaches ~3.1 TB/s
// however it is issued), slower in the decode graph (3.26-3.38 against 3.03-3.05 ms/token), where the
// three kernels hide part of the router's chain behind the kernel before them; off by default, kept
// as the tested first half of a persistent per-layer kernel. (16-byte cp.async copies per lane
// instead of bulk copies: issue-bound, slower still.)
//
// Blocks are numbered from the router's end (rank = (b - R) mod G), so the routing blocks get the
// fewest tasks. The waits need every block resident at once: the grid is the resident grid of this
// kernel (resident_grid), and the kernel after it cannot take a slot before every block of this one
// has run pdl_trigger (so has a slot). ctr[2] counts finished blocks; the last one sets all three
// counters back to 0 for the next launch (kernels on one stream run in order).
template <typename T, int S>
__global__ void __launch_bounds__(kThreads, 1) moe_block_kernel(
    float* __restrict__ x, const float* __restrict__ nw, float eps, const T* __restrict__ wr, int E, bool renorm,
    int k, float* __restrict__ logits, T* __restrict__ h_out, int32_t* __restrict__ e_out, float* __restrict__ w_out,
    const T* __restrict__ wgu, const T* __restrict__ wd, int64_t I, int64_t H, T* __restrict__ act,
    unsigned* __restrict__ ctr, const void* pf, uint64_t pf_bytes) {
  constexpr int kSeg = int(kSegBytes / sizeof(T));  // elements per segment
  extern __shared__ __align__(128) unsigned char dyn[];
  unsigned char* ring = dyn;  // [16 warps][S][kSegBytes]
  float* xs = reinterpret_cast<float*>(dyn + size_t(kWarps) * S * kSegBytes);  // [H] the normalized row
  float* slot = xs + ((H + 3) & ~int64_t(3));  // [items][kDownRows][kMaxK]
  __shared__ uint64_t bars[kWarps][S];
  __shared__ int32_t s_e[32];
  __shared__ float s_w[32];
  __shared__ int s_order[kMaxK];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned G = gridDim.x, b = blockIdx.x;
  const unsigned R = unsigned(E + kRouterWarps - 1) / kRouterWarps;
  const unsigned rank = (b + G - R) % G;
  const int64_t n_tasks = int64_t(k) * I, n_down = (H + kDownRows - 1) / kDownRows;
  const int64_t W = int64_t(G) * kWarps;
  const bool router = b < R;

  if (lane == 0) {
    for (int q = 0; q < S; q++) mbar_init(&bars[warp][q], 1);
    mbar_init_fence();
  }
  __syncwarp();
  const int64_t rrow = int64_t(b) * kRouterWarps + warp;
  Chunk8<T> pre[kPrefetchChunks<T>];
  trace_point(0);
  if (router && rrow < E) row_prefetch(wr + rrow * H, H, lane, pre);
  prefetch_l1_block(nw, uint64_t(H) * sizeof(float));
  pdl_wait();
  pdl_trigger();
  trace_point(1);
  // Not before the wait: the kernel before this one (the o_proj product) still streams its weights.
  if (!router) prefetch_l2_share(pf, pf_bytes, b - R, G - R);

  // 1. the router (every block normalizes x)
  stage_rmsnorm<T>(x, nw, eps, H, xs, b == 0 ? h_out : nullptr);
  __syncthreads();
  trace_point(2);
  if (router) {
    if (rrow < E) {
      const float a = warp_sum(row_dot_pre(wr + rrow * H, static_cast<const float*>(xs), H, lane, pre));
      if (lane == 0) logits[rrow] = a;
    }
    block_arrive(&ctr[0]);
  }
  // 2. the routing, in every block
  trace_point(3);
  block_wait(&ctr[0], R);
  trace_point(4);
  if (warp == 0) route_warp<true>(logits, E, k, renorm, s_e, s_w, lane);
  __syncthreads();
  trace_point(5);
  if (b == 0 && threadIdx.x < k) {
    e_out[threadIdx.x] = s_e[threadIdx.x];
    w_out[threadIdx.x] = s_w[threadIdx.x];
  }
  if (threadIdx.x == 0) ascending_slots(s_e, k, s_order);

  // 3. this warp's segment stream: gate/up segments, then down segments
  const int nsh = int((H + kSeg - 1) / kSeg), nsi = int((I + kSeg - 1) / kSeg);  // segments per row
  const int64_t t0 = int64_t(rank) * kWarps + warp;
  const int64_t my_tasks = t0 < n_tasks ? (n_tasks - 1 - t0) / W + 1 : 0;
  const int gu_segs = int(my_tasks) * 2 * nsh;
  const int half = warp / kMaxK, j = warp % kMaxK;
  const int64_t block_items = int64_t(rank) < n_down ? (n_down - 1 - rank) / G + 1 : 0;
  const int my_items = j < k ? (block_items > half ? int((block_items - 1 - half) / 2) + 1 : 0) : 0;
  const int all_segs = gu_segs + my_items * kDownRows * nsi;
  unsigned char* my_ring = ring + size_t(warp) * S * kSegBytes;
  const int lo = lane * 8;
  // Lane 0's cursor over the stream (integer steps only: no division per segment).
  int p_q = 0, p_n = 0, p_g = 0, p_mm = 0, p_r = 0, p_rr = 0;
  const T* p_row = nullptr;  // the current row (the gate row in the gate/up part; nullptr: past H)
  auto gu_row = [&]() {
    const int64_t t = t0 + int64_t(p_n) * W;
    const int64_t s = t / I, i = t - s * I;
    p_row = wgu + (int64_t(s_e[s]) * 2 * I + i) * H;
  };
  auto down_row = [&]() {
    const int64_t row = (int64_t(rank) + (half + 2 * int64_t(p_mm)) * G) * kDownRows + p_rr;
    p_row = row < H ? wd + (int64_t(s_e[j]) * H + row) * I : nullptr;
  };
  auto issue = [&]() {  // lane 0: the next segment into its stage (an arrival without bytes past the end)
    uint64_t* bar = &bars[warp][p_q % S];
    void* dst = my_ring + size_t(p_q % S) * kSegBytes;
    if (p_q < gu_segs) {
      const int64_t e0 = int64_t(p_g) * kSeg, n = min(int64_t(kSeg), H - e0);
      const uint32_t bytes = uint32_t(n * int64_t(sizeof(T)));
      mbar_arrive_tx(bar, bytes);
      bulk_load(dst, p_row + (p_r ? I * H : 0) + e0, bytes, bar);
      if (++p_g == nsh) {
        p_g = 0;
        if (++p_r == 2) {
          p_r = 0;
          if (++p_n < my_tasks)
            gu_row();
          else
            down_row();
        }
      }
    } else if (p_q < all_segs && p_row) {
      const int64_t e0 = int64_t(p_g) * kSeg, n = min(int64_t(kSeg), I - e0);
      const uint32_t bytes = uint32_t(n * int64_t(sizeof(T)));
      mbar_arrive_tx(bar, bytes);
      bulk_load(dst, p_row + e0, bytes, bar);
    } else {
      mbar_arrive(bar);
    }
    if (p_q >= gu_segs && p_q < all_segs && ++p_g == nsi) {
      p_g = 0;
      if (++p_rr == kDownRows) {
        p_rr = 0;
        p_mm++;
      }
      down_row();
    }
    p_q++;
  };
  if (lane == 0) {
    if (my_tasks > 0)
      gu_row();
    else
      down_row();
    for (int q = 0; q < S; q++) issue();
  }
  int q = 0;  // the next segment to use; segments q .. q + S - 1 are issued
  // Waits for segment q's stage; f(stage) multiplies it; then the stage is refilled S segments ahead.
  auto take = [&](auto&& f) {
    const int st = q % S;
    mbar_wait(&bars[warp][st], uint32_t(q / S) & 1u);
    f(reinterpret_cast<const T*>(my_ring + size_t(st) * kSegBytes));
    __syncwarp();  // every lane is done with the stage
    if (lane == 0) issue();
    q++;
  };

  for (int64_t n = 0; n < my_tasks; n++) {
    float a2[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float a = 0.f;
      for (int g = 0; g < nsh; g++)
        take([&](const T* seg) {
          for (int c = lo; c < kSeg && int64_t(g) * kSeg + c < H; c += 256) {
            float w[8], xv[8];
            Vec8<T> wv;
            wv.lds(seg + c);
            wv.to_float(w);
            x8(static_cast<const float*>(xs), int64_t(g) * kSeg + c, xv);
#pragma unroll
            for (int e = 0; e < 8; e++) a += w[e] * xv[e];
          }
        });
      a2[r] = warp_sum(a);
    }
    if (lane == 0) {
      const int64_t t = t0 + n * W;
      const float ag = a2[0], au = a2[1];
      act[t] = from_f<T>(__fmul_rn(ag / (1.0f + expf(-ag)), au));  // act[s * I + i], t = s * I + i
    }
  }
  block_arrive(&ctr[1]);
  trace_point(6);

  // 4. down: the act row of slot j, then this warp's items from the ring
  block_wait(&ctr[1], G);
  trace_point(7);
  Vec8<T> ar[kActRegs];
  if (my_items > 0) {
#pragma unroll
    for (int u = 0; u < kActRegs; u++)
      if (u * 256 + lo < I) ar[u].ldcg(act + int64_t(j) * I + u * 256 + lo);  // other blocks wrote it
  }
  const float wj = j < k ? s_w[j] : 0.f;
  for (int mm = 0; mm < my_items; mm++) {
    const int64_t m = half + 2 * int64_t(mm);  // the block's item index
    for (int rr = 0; rr < kDownRows; rr++) {
      float a = 0.f;
      for (int g = 0; g < nsi; g++)
        take([&](const T* seg) {
          if (g == 0) {  // the first kActRegs chunks: act from registers
#pragma unroll
            for (int u = 0; u < kActRegs; u++) {
              const int c = u * 256 + lo;
              if (c < kSeg && c < I) {
                float w[8], av[8];
                Vec8<T> wv;
                wv.lds(seg + c);
                wv.to_float(w);
                ar[u].to_float(av);
#pragma unroll
                for (int e = 0; e < 8; e++) a += w[e] * av[e];
              }
            }
          }
          for (int c = g == 0 ? kActRegs * 256 + lo : lo; c < kSeg && int64_t(g) * kSeg + c < I; c += 256) {
            float w[8], av[8];
            Vec8<T> wv, v;
            wv.lds(seg + c);
            wv.to_float(w);
            v.ldcg(act + int64_t(j) * I + int64_t(g) * kSeg + c);
            v.to_float(av);
#pragma unroll
            for (int e = 0; e < 8; e++) a += w[e] * av[e];
          }
        });
      a = warp_sum(a);
      if (lane == 0) slot[(m * kDownRows + rr) * kMaxK + j] = a * wj;
    }
  }
  // Drain: the stages issued past this warp's last segment complete (arrivals without bytes), so no
  // copy is in flight when the block exits.
  for (int d = 0; d < S; d++, q++) mbar_wait(&bars[warp][q % S], uint32_t(q / S) & 1u);
  __syncthreads();
  trace_point(8);
  for (int64_t idx = threadIdx.x; idx < block_items * kDownRows; idx += kThreads) {
    const int64_t m = idx / kDownRows, rr = idx % kDownRows, row = (int64_t(rank) + m * G) * kDownRows + rr;
    if (row >= H) continue;
    float acc = 0.f;
    for (int qq = 0; qq < k; qq++) acc += slot[(m * kDownRows + rr) * kMaxK + s_order[qq]];
    x[row] = x[row] + acc;
  }
  // the last block out resets the counters
  __syncthreads();
  trace_point(9);
  if (threadIdx.x == 0 && atomicAdd(&ctr[2], 1u) == G - 1) {
    ctr[0] = 0;
    ctr[1] = 0;
    ctr[2] = 0;
    __threadfence();
  }
}

std::atomic<bool> g_block{false};

}  // namespace

void set_decode_moe_block(bool on) { g_block.store(on); }
bool decode_moe_block() { return g_block.load(std::memory_order_relaxed); }
void set_moe_block_trace(unsigned long long* device_buffer) {
  SEGPIPE_CUDA_CHECK(cudaMemcpyToSymbol(g_trace, &device_buffer, sizeof(device_buffer)));
}

bool moe_block_fits(int E, int k, int64_t H, int64_t I, DType dt) {
  return (dt == DType::F32 || dt == DType::BF16) && k >= 1 && k <= kMaxK && k <= E && E >= 1 &&
         E <= 32 * kRouteMaxPerLane && H >= 8 && I >= 8 && H % 8 == 0 && I % 8 == 0 && H <= 12288;
}

namespace {

// Dynamic shared memory of a launch: xs [H] floats, the rings (16 warps x U units of 256 elements),
// the down items' slot sums.
size_t block_smem(int64_t H, int64_t I, int S) {
  const int64_t items = ((H + kDownRows - 1) / kDownRows + sm_count() - 1) / sm_count();
  return size_t(kWarps) * S * kSegBytes + size_t((H + 3) & ~int64_t(3)) * sizeof(float) +
         size_t(items) * kDownRows * kMaxK * sizeof(float);
}

template <typename T, int S>
bool launch_block(float* x, const float* norm_w, float eps, const void* w_router, int E, bool renormalize, int k,
                  float* logits, void* h_out, int32_t* experts, float* weights, const void* w_gate_up,
                  const void* w_down, int64_t I, int64_t H, void* act, unsigned* counters, cudaStream_t s,
                  const void* prefetch, uint64_t prefetch_bytes, size_t smem) {
  static size_t raised = 48 * 1024;  // per instantiation: the dynamic shared-memory limit set so far
  if (smem > raised) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(moe_block_kernel<T, S>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
    raised = smem;
  }
  // One block per multiprocessor (the slot area is sized for that), all resident.
  const unsigned grid = std::min<unsigned>(resident_grid(moe_block_kernel<T, S>, kThreads, smem, int64_t(1) << 30),
                                           unsigned(sm_count()));
  if (grid < unsigned(sm_count()) || grid <= unsigned(E + kRouterWarps - 1) / kRouterWarps) return false;
  SEGPIPE_CUDA_CHECK(launch_pdl(moe_block_kernel<T, S>, dim3(grid), dim3(kThreads), smem, s, x, norm_w, eps,
                                static_cast<const T*>(w_router), E, renormalize, k, logits, static_cast<T*>(h_out),
                                experts, weights, static_cast<const T*>(w_gate_up), static_cast<const T*>(w_down), I,
                                H, static_cast<T*>(act), counters, prefetch, prefetch_bytes));
  SEGPIPE_CUDA_LAUNCH_CHECK("moe_block_kernel");
  return true;
}

constexpr size_t kSmemMax = 227 * 1024;

}  // namespace

bool moe_decode_block(float* x, const float* norm_w, float eps, const void* w_router, int E, bool renormalize, int k,
                      float* logits, void* h_out, int32_t* experts, float* weights, const void* w_gate_up,
                      const void* w_down, DType dt, int64_t I, int64_t H, void* act, unsigned* counters,
                      cudaStream_t s, const void* prefetch, uint64_t prefetch_bytes) {
  SEGPIPE_ASSERT_MSG(moe_block_fits(E, k, H, I, dt), "moe_decode_block: shape");
  // Rings of 3 stages a warp (192 KB) where they fit beside xs, 2 otherwise.
  const size_t big = block_smem(H, I, 3);
  SEGPIPE_DISPATCH_FB(dt, T, {
    auto launch = big <= kSmemMax ? launch_block<T, 3> : launch_block<T, 2>;
    return launch(x, norm_w, eps, w_router, E, renormalize, k, logits, h_out, experts, weights, w_gate_up, w_down, I,
                  H, act, counters, s, prefetch, prefetch_bytes, big <= kSmemMax ? big : block_smem(H, I, 2));
  });
  return false;
}

}  // namespace segpipe::cuda
