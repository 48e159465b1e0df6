// The per-head q/k step (the q/k/v bias where the layer has one, RMSNorm over head_dim where it has a
// q/k norm, then rotate-half RoPE) as one warp computes it; shared by the kernels that must give the
// same bits for the same token: qk_norm_rope_kv (rope.cu, both its warp-per-head kernel and its
// per-token one) and the decode attention that folds it in (attention.cu). The pieces below are the
// only place their expressions are written. Included from .cu files only.
#pragma once
#include "segments/kernels/cuda/common.cuh"

namespace segpipe::cuda {

// The rotation's cosine and sine for pair i at position p.
__device__ __forceinline__ void rope_cos_sin(const float* __restrict__ inv_freq, float p, int i, float& c, float& s) {
  const float f = p * inv_freq[i];
  c = cosf(f);
  s = sinf(f);
}

// 1 / rms of a head from its sum of squares; ss is summed in double, lane l over elements l, l + 32,
// ... in that order, then warp_sum: every caller keeps that order (the products are exact in double,
// the sums are not).
__device__ __forceinline__ float head_inv_rms(double ss, int hd, float eps) {
  return 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(hd)) + eps);
}

// The rotated pair (a at i, b at i + hd/2): two roundings per product, as the CPU reference (no fused
// multiply-add).
__device__ __forceinline__ float rope_lo(float a, float b, float c, float s) {
  return __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
}
__device__ __forceinline__ float rope_hi(float a, float b, float c, float s) {
  return __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}

// dst[0..hd) = rope(w * (x * inv_rms(x)), position p) with x = src + bias, by one warp; buf: hd floats of
// scratch in shared memory for this warp. dst may be global or shared memory. The layer description
// decides the optional steps (ModelConfig: qkv_bias, qk_norm), passed as pointers where kGeneric: bias
// null, x = src (no q/k/v bias); w null, no RMSNorm (x rotated as it is). The bias is added after the
// product, one rounding, as the CPU's add_bias; without a norm x reaches RoPE unchanged. !kGeneric: the
// layer with a q/k norm and no bias (Qwen3), compiled without the checks (bias unused).
template <bool kGeneric>
__device__ __forceinline__ void norm_rope_head(const float* __restrict__ src, const float* __restrict__ bias,
                                               const float* __restrict__ w, float eps,
                                               const float* __restrict__ inv_freq, float p, int hd, float* buf,
                                               float* dst, int lane) {
  const int half = hd / 2;
  const bool norm = !kGeneric || w != nullptr;  // uniform over the warp
  double ss = 0;
  for (int i = lane; i < hd; i += 32) {
    float v = src[i];
    if constexpr (kGeneric)
      if (bias) v = __fadd_rn(v, bias[i]);
    buf[i] = v;
    if (norm) ss += double(v) * v;
  }
  if (norm) {
    ss = warp_sum(ss);
    const float inv = head_inv_rms(ss, hd, eps);
    __syncwarp();
    for (int i = lane; i < hd; i += 32) buf[i] = w[i] * (buf[i] * inv);
  }
  __syncwarp();
  for (int i = lane; i < half; i += 32) {
    float c, sn;
    rope_cos_sin(inv_freq, p, i, c, sn);
    const float a = buf[i], b = buf[i + half];
    dst[i] = rope_lo(a, b, c, sn);
    dst[i + half] = rope_hi(a, b, c, sn);
  }
  __syncwarp();
}

// Whether a layer's q/k step needs the generic kernels (a bias, or no q/k norm), from the pointers the
// launchers take.
inline bool qk_step_generic(const float* bias, const float* q_norm) { return bias != nullptr || q_norm == nullptr; }

}  // namespace segpipe::cuda
