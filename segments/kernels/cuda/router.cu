#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/router.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kMaxPerLane = 16;  // E <= 512

// One warp per token; lane l holds experts l, l+32, ...
__global__ void route_topk_kernel(const float* __restrict__ logits, int64_t T, int E, int k, bool renorm,
                                  int32_t* __restrict__ experts, float* __restrict__ weights) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (t >= T) return;
  const float* l = logits + t * E;
  float p[kMaxPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int r = 0; r < kMaxPerLane; r++) {
    int e = lane + 32 * r;
    p[r] = e < E ? l[e] : -INFINITY;
    mx = fmaxf(mx, p[r]);
  }
  mx = warp_max(mx);
  float sum = 0.f;
#pragma unroll
  for (int r = 0; r < kMaxPerLane; r++) {
    int e = lane + 32 * r;
    p[r] = e < E ? expf(p[r] - mx) : 0.f;
    sum += p[r];
  }
  sum = warp_sum(sum);
#pragma unroll
  for (int r = 0; r < kMaxPerLane; r++) p[r] = p[r] / sum;
  unsigned taken = 0;  // bit r: this lane's expert lane+32r is chosen
  float chosen_sum = 0.f;
  int my_e = 0;      // lane j keeps the j-th choice
  float my_w = 0.f;
  int32_t* eo = experts + t * k;
  float* wo = weights + t * k;
  for (int j = 0; j < k; j++) {
    float bv = -1.f;
    int bi = 0x7fffffff;
#pragma unroll
    for (int r = 0; r < kMaxPerLane; r++) {
      int e = lane + 32 * r;
      if (e < E && !(taken & (1u << r)) && (p[r] > bv)) {
        bv = p[r];
        bi = e;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if ((bi & 31) == lane) taken |= 1u << (bi / 32);
    chosen_sum += bv;  // same order as the CPU: descending probability
    if (lane == j) {
      my_e = bi;
      my_w = bv;
    }
  }
  if (lane < k) {
    eo[lane] = my_e;
    wo[lane] = renorm ? my_w / chosen_sum : my_w;
  }
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

}  // namespace segpipe::cuda
