// The one-token attention of a head with its keys split over blocks (flash-decoding), as device
// pieces of the split kernel (attention.cu). Included from .cu files only.
#pragma once
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/rope_common.cuh"

namespace segpipe::cuda {

constexpr int kDecodeWarps = 16;       // warps of a decode attention block
constexpr int kDecodeMaxPerLane = 8;   // head_dim <= 256

// A block's shared state for one head: the warps' online-softmax results, and (folded q/k-norm and
// RoPE) the head's rotated query, its group's new key and the new value row.
struct DecodeHeadSmem {
  float m[kDecodeWarps], l[kDecodeWarps];
  float acc[kDecodeWarps][kDecodeMaxPerLane * 32];
  float q[kDecodeMaxPerLane * 32], k[kDecodeMaxPerLane * 32], v[kDecodeMaxPerLane * 32];
};

// Head h's query and its group g's new key normalized and rotated at position p (norm_rope_head: the
// bits of qk_norm_rope_kv), the new value row copied, into sm; by the whole block (synchronizes it).
// qkv: the step's raw [q | k | v] row; bias (optional): the q/k/v biases laid out as that row; qn / kn
// null: no q/k norm (both only where kGeneric, norm_rope_head). write_cache: this block also writes
// cache row p of group g.
template <bool kGeneric>
__device__ __forceinline__ void decode_new_kv(const float* __restrict__ qkv, const float* __restrict__ bias, int h,
                                              int g, int nh, int hd, int64_t kvd, const float* __restrict__ qn,
                                              const float* __restrict__ kn, float eps,
                                              const float* __restrict__ inv_freq, int64_t p, bool write_cache,
                                              float* kc, float* vc, DecodeHeadSmem& sm) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* kraw = qkv + int64_t(nh) * hd + int64_t(g) * hd;
  const float* vraw = kraw + kvd;
  const float fp = static_cast<float>(p);
  // the biases of these rows: at the same offsets in the bias row (kGeneric only)
  const float *qb = nullptr, *kb = nullptr, *vb = nullptr;
  if constexpr (kGeneric)
    if (bias) {
      qb = bias + int64_t(h) * hd;
      kb = bias + (kraw - qkv);
      vb = bias + (vraw - qkv);
    }
  if (warp == 0) norm_rope_head<kGeneric>(qkv + int64_t(h) * hd, qb, qn, eps, inv_freq, fp, hd, sm.acc[0], sm.q, lane);
  if (warp == 1) norm_rope_head<kGeneric>(kraw, kb, kn, eps, inv_freq, fp, hd, sm.acc[1], sm.k, lane);
  if (warp == 2)
    for (int i = lane; i < hd; i += 32) {
      float v = vraw[i];
      if constexpr (kGeneric)
        if (vb) v = __fadd_rn(v, vb[i]);
      sm.v[i] = v;
    }
  __syncthreads();
  if (write_cache) {
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
      kc[p * kvd + int64_t(g) * hd + i] = sm.k[i];
      vc[p * kvd + int64_t(g) * hd + i] = sm.v[i];
    }
  }
}

// This warp's online softmax over split sp of n_split: keys j = (sp + n_split i) kDecodeWarps + warp,
// kBatch keys' K and V rows issued before the first is used, then key by key in ascending j (the
// bits do not depend on kBatch). Key p comes from sm.k / sm.v where new_in_smem (its cache row may
// not be written yet). Leaves (m, l, acc) in sm for decode_block_ml / decode_block_acc (the caller
// synchronizes the block before those).
template <int kPer>
__device__ __forceinline__ void decode_keys(const float* qv, const float* kc, const float* vc, int64_t kvd, int g,
                                            int hd, int64_t p, int sp, int n_split, bool new_in_smem, float scale,
                                            DecodeHeadSmem& sm) {
  constexpr int kBatch = 32 / kPer;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float qr[kPer], acc[kPer];
#pragma unroll
  for (int r = 0; r < kPer; r++) {
    int i = lane + 32 * r;
    qr[r] = i < hd ? qv[i] : 0.f;
    acc[r] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int64_t jstep = int64_t(n_split) * kDecodeWarps;
  for (int64_t j0 = int64_t(sp) * kDecodeWarps + warp; j0 <= p; j0 += int64_t(kBatch) * jstep) {
    float kv[kBatch][kPer], vv[kBatch][kPer];
#pragma unroll
    for (int b = 0; b < kBatch; b++) {
      const int64_t j = j0 + int64_t(b) * jstep;
      const float* kr = kc + j * kvd + int64_t(g) * hd;
      const float* vr = vc + j * kvd + int64_t(g) * hd;
      if (new_in_smem && j == p) {
        kr = sm.k;
        vr = sm.v;
      }
#pragma unroll
      for (int r = 0; r < kPer; r++) {
        int i = lane + 32 * r;
        const bool in = j <= p && i < hd;
        kv[b][r] = in ? kr[i] : 0.f;
        vv[b][r] = in ? vr[i] : 0.f;
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; b++) {
      if (j0 + int64_t(b) * jstep > p) break;
      float d = 0.f;
#pragma unroll
      for (int r = 0; r < kPer; r++) d += qr[r] * kv[b][r];
      float sc = warp_sum(d) * scale;
      float mn = fmaxf(m, sc);
      float corr = expf(m - mn);
      float e = expf(sc - mn);
      l = l * corr + e;
#pragma unroll
      for (int r = 0; r < kPer; r++) acc[r] = acc[r] * corr + e * vv[b][r];
      m = mn;
    }
  }
  if (lane == 0) {
    sm.m[warp] = m;
    sm.l[warp] = l;
  }
#pragma unroll
  for (int r = 0; r < kPer; r++) sm.acc[warp][lane + 32 * r] = acc[r];
}

// Asks L1 for this warp's first batch of cache rows (the K and V rows decode_keys reads first, keys
// below p), before the kernel waits for its inputs: they were written by earlier steps, never by the
// kernels a decode kernel waits for, and otherwise come from memory after the wait, one more round
// trip of the attention's dependent chain.
template <int kPer>
__device__ __forceinline__ void decode_keys_prefetch(const float* kc, const float* vc, int64_t kvd, int g, int hd,
                                                     int64_t p, int sp, int n_split) {
#if defined(__CUDA_ARCH__)
  constexpr int kBatch = 32 / kPer;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t jstep = int64_t(n_split) * kDecodeWarps, j0 = int64_t(sp) * kDecodeWarps + warp;
  const int lines = (hd * int(sizeof(float)) + 127) / 128;  // 128-byte lines a row
  for (int t = lane; t < 2 * kBatch * lines; t += 32) {
    const int which = t / (kBatch * lines), b = (t % (kBatch * lines)) / lines, ln = t % lines;
    const int64_t j = j0 + int64_t(b) * jstep;
    if (j >= p) continue;
    const float* row = (which ? vc : kc) + j * kvd + int64_t(g) * hd;
    asm volatile("prefetch.global.L1 [%0];" ::"l"(reinterpret_cast<const char*>(row) + ln * 128));
  }
#else
  (void)kc, (void)vc, (void)kvd, (void)g, (void)hd, (void)p, (void)sp, (void)n_split;
#endif
}

// The block's (max, sum) over its warps, in warp order.
__device__ __forceinline__ void decode_block_ml(const DecodeHeadSmem& sm, float& M, float& L) {
  M = -INFINITY;
  for (int w = 0; w < kDecodeWarps; w++) M = fmaxf(M, sm.m[w]);
  L = 0.f;
  for (int w = 0; w < kDecodeWarps; w++)
    if (sm.l[w] > 0.f) L += sm.l[w] * expf(sm.m[w] - M);
}
// The block's unnormalized accumulator at dimension i, rescaled to M, in warp order.
__device__ __forceinline__ float decode_block_acc(const DecodeHeadSmem& sm, float M, int i) {
  float v = 0.f;
  for (int w = 0; w < kDecodeWarps; w++)
    if (sm.l[w] > 0.f) v += sm.acc[w][i] * expf(sm.m[w] - M);
  return v;
}

}  // namespace segpipe::cuda
