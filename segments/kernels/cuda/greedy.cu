#include <climits>
#include <cmath>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/greedy.cuh"
#include "segments/kernels/cuda/launch.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kBlocks = 128;  // logits are L2-resident (just written): a wave of small blocks

// (v, i) beats (bv, bi): larger, or equal and earlier. NaN is taken as -inf by the caller.
__device__ __forceinline__ bool beats(float v, int32_t i, float bv, int32_t bi) {
  return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ void warp_best(float& v, int32_t& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (beats(ov, oi, v, i)) v = ov, i = oi;
  }
}

// The block's best of (v, i) over its threads, in thread 0.
__device__ __forceinline__ void block_best(float& v, int32_t& i) {
  __shared__ float sv[kThreads / 32];
  __shared__ int32_t si[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  warp_best(v, i);
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? sv[lane] : -INFINITY;
    i = lane < kThreads / 32 ? si[lane] : INT32_MAX;
    warp_best(v, i);
  }
}

// Each block its contiguous share of the row, then the last block to finish (a ticket) reduces the
// partials; the order of a reduction cannot change its result (a total order on (value, index)).
__global__ void __launch_bounds__(kThreads) greedy_kernel(const float* __restrict__ logits, int64_t n, GreedyState g) {
  __shared__ bool last;
  pdl_wait();
  pdl_trigger();
  const int64_t per = (n + gridDim.x - 1) / gridDim.x, b0 = int64_t(blockIdx.x) * per;
  const int64_t b1 = b0 + per < n ? b0 + per : n;
  float bv = -INFINITY;
  int32_t bi = INT32_MAX;
  bool bad = false;  // a NaN or Inf in the row: the chain stops with kNonFiniteToken
  for (int64_t i = b0 + threadIdx.x; i < b1; i += kThreads) {
    float v = logits[i];
    bad |= !isfinite(v);
    if (isnan(v)) v = -INFINITY;
    if (beats(v, int32_t(i), bv, bi)) bv = v, bi = int32_t(i);
  }
  bad = __syncthreads_or(bad);
  block_best(bv, bi);
  if (threadIdx.x == 0) {
    g.part_val[blockIdx.x] = bv;
    g.part_idx[blockIdx.x] = bad ? kNonFiniteToken : bi;
    __threadfence();
    last = atomicAdd(g.ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  bv = -INFINITY;
  bi = INT32_MAX;
  bad = false;
  for (int b = threadIdx.x; b < int(gridDim.x); b += kThreads) {
    const float v = __ldcg(g.part_val + b);
    const int32_t i = __ldcg(g.part_idx + b);
    bad |= i == kNonFiniteToken;
    if (i != kNonFiniteToken && beats(v, i, bv, bi)) bv = v, bi = i;
  }
  bad = __syncthreads_or(bad);
  block_best(bv, bi);
  if (threadIdx.x == 0) {
    // Non-finite logits end the chain as the host's check would: the host sees the marker and stops.
    const int32_t t = bad ? kNonFiniteToken : bi;
    g.ids[0] = t;
    g.tokens[g.step[0]] = t;
    g.step[0] += 1;
    g.pos[0] += 1;
    *g.ticket = 0;
  }
}

}  // namespace

int greedy_blocks() { return kBlocks; }

void greedy_next_token(const float* logits, int64_t n, const GreedyState& g, const KernelPath& path, cudaStream_t s) {
  SEGPIPE_ASSERT_MSG(n > 0 && n <= INT32_MAX, "greedy_next_token: row length out of range");
  SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, greedy_kernel, dim3(kBlocks), dim3(kThreads), 0, s, logits, n, g));
  SEGPIPE_CUDA_LAUNCH_CHECK("greedy_kernel");
}

}  // namespace segpipe::cuda
