// The per-head q/k step (RMSNorm over head_dim, then rotate-half RoPE) as one warp computes it; shared
// by qk_norm_rope_kv (rope.cu) and the decode attention that folds it in (attention.cu), so that both
// give the same bits. Included from .cu files only.
#pragma once
#include "segments/kernels/cuda/common.cuh"

namespace segpipe::cuda {

// dst[0..hd) = rope(w * (src * inv_rms(src)), position p), by one warp; buf: hd floats of scratch in
// shared memory for this warp. dst may be global or shared memory.
__device__ __forceinline__ void norm_rope_head(const float* __restrict__ src, const float* __restrict__ w, float eps,
                                               const float* __restrict__ inv_freq, float p, int hd, float* buf,
                                               float* dst, int lane) {
  const int half = hd / 2;
  double ss = 0;
  for (int i = lane; i < hd; i += 32) {
    float v = src[i];
    buf[i] = v;
    ss += double(v) * v;
  }
  ss = warp_sum(ss);
  const float inv = 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(hd)) + eps);
  __syncwarp();
  for (int i = lane; i < hd; i += 32) buf[i] = w[i] * (buf[i] * inv);
  __syncwarp();
  for (int i = lane; i < half; i += 32) {
    float f = p * inv_freq[i];
    float c = cosf(f), sn = sinf(f);
    float a = buf[i], b = buf[i + half];
    // Two roundings per product, as the CPU reference (no fused multiply-add).
    dst[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn));
    dst[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, sn));
  }
  __syncwarp();
}

}  // namespace segpipe::cuda
