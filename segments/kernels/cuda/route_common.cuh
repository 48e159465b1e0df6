// The routing of one token's logits by one warp (softmax in float32, top-k in descending probability,
// ties to the lower expert id, optional renormalization), shared by route_topk and router_fused
// (router.cu): one function, so every caller gets the same bits; also the expert order of a token's
// slots (ascending_slots, moe.cu). Included from .cu files only.
#pragma once
#include "segments/kernels/cuda/common.cuh"

namespace segpipe::cuda {

constexpr int kRouteMaxPerLane = 16;  // E <= 512

// One warp routes one token (l: its E logits); lane l holds experts l, l+32, ... (kPer slots: E <=
// 32 kPer; slots past E hold nothing and change no sum, maximum or choice, so every kPer gives the
// same bits; a smaller kPer is a shorter dependent chain for the one routing warp).
template <int kPer = kRouteMaxPerLane>
__device__ __forceinline__ void route_one(const float* l, int E, int k, bool renorm, int32_t* eo, float* wo,
                                          int lane) {
  float p[kPer];
  float mx = -INFINITY;
#pragma unroll
  for (int r = 0; r < kPer; r++) {
    int e = lane + 32 * r;
    p[r] = e < E ? l[e] : -INFINITY;
    mx = fmaxf(mx, p[r]);
  }
  mx = warp_max(mx);
  float sum = 0.f;
#pragma unroll
  for (int r = 0; r < kPer; r++) {
    int e = lane + 32 * r;
    p[r] = e < E ? expf(p[r] - mx) : 0.f;
    sum += p[r];
  }
  sum = warp_sum(sum);
#pragma unroll
  for (int r = 0; r < kPer; r++) p[r] = p[r] / sum;
  unsigned taken = 0;  // bit r: this lane's expert lane+32r is chosen
  float chosen_sum = 0.f;
  int my_e = 0;      // lane j keeps the j-th choice
  float my_w = 0.f;
  for (int j = 0; j < k; j++) {
    float bv = -1.f;
    int bi = 0x7fffffff;
#pragma unroll
    for (int r = 0; r < kPer; r++) {
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


// The k slots of one token in ascending expert id (the order the reference adds the experts'
// outputs in): order[q] = the slot with the q-th smallest id of e[0..k); one thread, insertion sort
// (the ids of a token are distinct).
__device__ __forceinline__ void ascending_slots(const int32_t* e, int k, int* order) {
  for (int q = 0; q < k; q++) order[q] = q;
  for (int q = 1; q < k; q++) {
    const int v = order[q];
    int c = q - 1;
    while (c >= 0 && e[order[c]] > e[v]) {
      order[c + 1] = order[c];
      c--;
    }
    order[c + 1] = v;
  }
}

// route_one with the per-lane slots sized to E (a shorter chain for E <= 128; the same bits).
__device__ __forceinline__ void route_warp(const float* l, int E, int k, bool renorm, int32_t* eo, float* wo,
                                           int lane) {
  if (E <= 128)
    route_one<4>(l, E, k, renorm, eo, wo, lane);
  else
    route_one<kRouteMaxPerLane>(l, E, k, renorm, eo, wo, lane);
}

}  // namespace segpipe::cuda
