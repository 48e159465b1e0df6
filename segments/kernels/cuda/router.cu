#include <algorithm>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv_common.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/route_common.cuh"
#include "segments/kernels/cuda/router.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kMaxPerLane = kRouteMaxPerLane;

__global__ void route_topk_kernel(const float* __restrict__ logits, int64_t T, int E, int k, bool renorm,
                                  int32_t* __restrict__ experts, float* __restrict__ weights) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (t >= T) return;
  route_warp(logits + t * E, E, k, renorm, experts + t * k, weights + t * k, threadIdx.x % 32);
}

// Decode: RMSNorm of the residual row, the router product (one warp a row, rows spread over the
// grid), then the block that finishes last (a device counter) routes: softmax and top-k.
template <typename W>
__global__ void __launch_bounds__(kGemvThreads) router_fused_kernel(const float* __restrict__ x,
                                                                    const float* __restrict__ nw, float eps,
                                                                    const W* __restrict__ wr, int E, int64_t H,
                                                                    float* logits, W* __restrict__ h_out, int k,
                                                                    bool renorm, int32_t* __restrict__ experts,
                                                                    float* __restrict__ weights,
                                                                    unsigned* counter, const void* pf,
                                                                    uint64_t pf_bytes) {
  extern __shared__ float xs[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t r = int64_t(blockIdx.x) * kGemvWarps + warp;
  Chunk8<W> pre[kPrefetchChunks<W>];
  if (r < E) row_prefetch(wr + r * H, H, lane, pre);
  prefetch_l1_block(nw, uint64_t(H) * sizeof(float));
  pdl_wait();
  pdl_trigger();
  prefetch_l2_share(pf, pf_bytes, blockIdx.x, gridDim.x);
  stage_rmsnorm<W>(x, nw, eps, H, xs, blockIdx.x == 0 ? h_out : nullptr);
  __syncthreads();
  for (; r < E; r += int64_t(gridDim.x) * kGemvWarps) {
    float a = warp_sum(row_dot_pre(wr + r * H, static_cast<const float*>(xs), H, lane, pre));
    if (lane == 0) logits[r] = a;
    if (r + int64_t(gridDim.x) * kGemvWarps < E) row_prefetch(wr + (r + int64_t(gridDim.x) * kGemvWarps) * H, H, lane, pre);
  }
  __shared__ bool last;
  __syncthreads();  // every warp is done with xs before the last block reuses it for the logits
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int e = threadIdx.x; e < E; e += kGemvThreads) xs[e] = __ldcg(logits + e);  // past L1: other blocks wrote them
  __syncthreads();
  if (warp == 0) route_warp(xs, E, k, renorm, experts, weights, lane);
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch (kernels on one stream run in order)
}

}  // namespace

void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights,
                cudaStream_t s) {
  SEGPIPE_ASSERT(E <= 32 * kMaxPerLane && k >= 1 && k <= E && k <= 32);
  if (T == 0) return;
  const int warps = 4;
  route_topk_kernel<<<div_up(T, warps), warps * 32, 0, s>>>(logits, T, E, k, renormalize, experts, weights);
  SEGPIPE_CUDA_LAUNCH_CHECK("route_topk_kernel");
}

void router_fused(const float* x, const float* norm_w, float eps, const void* w_router, DType wt, int E, int64_t H,
                  float* logits, void* h_out, int k, bool renormalize, int32_t* experts, float* weights,
                  unsigned* counter, const KernelPath& path, cudaStream_t s, const void* prefetch,
                  uint64_t prefetch_bytes) {
  if (!path.l2_prefetch) {  // no range: the kernel skips the prefetch
    prefetch = nullptr;
    prefetch_bytes = 0;
  }
  SEGPIPE_ASSERT(E <= 32 * kMaxPerLane && k >= 1 && k <= E && k <= 32 && H % 8 == 0);
  const size_t smem = size_t(std::max<int64_t>(H, E)) * sizeof(float);
  SEGPIPE_ASSERT_MSG(smem <= 48 * 1024, "router_fused: hidden size above 12288");
  SEGPIPE_DISPATCH_FB(wt, W,
                      SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, router_fused_kernel<W>, dim3(gemv_grid(E)),
                                                    dim3(kGemvThreads), smem, s, x, norm_w, eps,
                                                    static_cast<const W*>(w_router), E, H, logits,
                                                    static_cast<W*>(h_out), k, renormalize, experts, weights,
                                                    counter, prefetch, prefetch_bytes)));
  SEGPIPE_CUDA_LAUNCH_CHECK("router_fused_kernel");
}

}  // namespace segpipe::cuda
