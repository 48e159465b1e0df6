#include <cmath>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/rope.cuh"
#include "segments/kernels/cuda/rope_common.cuh"

namespace segpipe::cuda {

std::vector<float> rope_inv_freq(int head_dim, double theta) {
  std::vector<float> f(static_cast<size_t>(head_dim / 2));
  float base = static_cast<float>(theta);
  for (int i = 0; i < head_dim / 2; i++) {
    float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    f[static_cast<size_t>(i)] = 1.0f / std::pow(base, e);
  }
  return f;
}

namespace {

constexpr int kWarps = 8;
constexpr int kMaxHeadDim = 256;

// One block per token; each warp takes whole heads: q heads, then k heads, then v heads. kMirror:
// q written as bf16 (the flash kernel's operand) and bf16 copies of the new K and V rows written
// beside the float32 cache (the same round-to-nearest as convert(), so the bits the flash kernel
// reads are those of converting the cache rows afterwards).
template <bool kMirror>
__global__ void qk_norm_rope_kv_kernel(const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0, int nh,
                                       int nkv, int hd, const float* __restrict__ qn, const float* __restrict__ kn,
                                       float eps, const float* __restrict__ inv_freq, void* __restrict__ q_out,
                                       float* __restrict__ k_cache, float* __restrict__ v_cache,
                                       bf16* __restrict__ k_bf16, bf16* __restrict__ v_bf16) {
  __shared__ float buf[kWarps][kMaxHeadDim];
  __shared__ float res[kMirror ? kWarps : 1][kMirror ? kMaxHeadDim : 1];
  const int t = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t pos = int64_t(*d_pos0) + t;
  const int64_t row = int64_t(nh + 2 * nkv) * hd;
  const int64_t kvd = int64_t(nkv) * hd;
  const float p = static_cast<float>(pos);
  for (int head = warp; head < nh + 2 * nkv; head += kWarps) {
    const float* src = qkv + t * row + int64_t(head) * hd;
    if (head >= nh + nkv) {  // v: copied into the cache as is
      const int64_t o = pos * kvd + int64_t(head - nh - nkv) * hd;
      for (int i = lane; i < hd; i += 32) {
        const float v = src[i];
        v_cache[o + i] = v;
        if constexpr (kMirror) v_bf16[o + i] = __float2bfloat16_rn(v);
      }
      continue;
    }
    const bool is_q = head < nh;
    const int64_t ko = pos * kvd + int64_t(head - nh) * hd;
    if constexpr (kMirror) {
      // Normed and rotated into shared memory (norm_rope_head ends with __syncwarp), then stored.
      norm_rope_head(src, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], res[warp], lane);
      if (is_q) {
        bf16* dst = static_cast<bf16*>(q_out) + int64_t(t) * nh * hd + int64_t(head) * hd;
        for (int i = lane; i < hd; i += 32) dst[i] = __float2bfloat16_rn(res[warp][i]);
      } else {
        for (int i = lane; i < hd; i += 32) {
          const float v = res[warp][i];
          k_cache[ko + i] = v;
          k_bf16[ko + i] = __float2bfloat16_rn(v);
        }
      }
      __syncwarp();  // res[warp] is rewritten by the warp's next head
    } else {
      float* dst = is_q ? static_cast<float*>(q_out) + int64_t(t) * nh * hd + int64_t(head) * hd : k_cache + ko;
      norm_rope_head(src, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], dst, lane);
    }
  }
}

}  // namespace

void qk_norm_rope_kv(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* q_norm,
                     const float* k_norm, float eps, const float* inv_freq, float* q_out, float* k_cache,
                     float* v_cache, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim % 2 == 0 && s.head_dim <= kMaxHeadDim);
  if (T == 0) return;
  qk_norm_rope_kv_kernel<false><<<static_cast<unsigned>(T), kWarps * 32, 0, st>>>(
      qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim, q_norm, k_norm, eps, inv_freq, q_out, k_cache, v_cache,
      nullptr, nullptr);
  SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_kernel");
}

void qk_norm_rope_kv_bf16(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s,
                          const float* q_norm, const float* k_norm, float eps, const float* inv_freq, void* q_bf16,
                          float* k_cache, float* v_cache, void* k_bf16, void* v_bf16, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim % 2 == 0 && s.head_dim <= kMaxHeadDim);
  if (T == 0) return;
  qk_norm_rope_kv_kernel<true><<<static_cast<unsigned>(T), kWarps * 32, 0, st>>>(
      qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim, q_norm, k_norm, eps, inv_freq, q_bf16, k_cache, v_cache,
      static_cast<bf16*>(k_bf16), static_cast<bf16*>(v_bf16));
  SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_kernel<mirror>");
}

}  // namespace segpipe::cuda
