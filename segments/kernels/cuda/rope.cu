#include <atomic>
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

// One block per token; each warp takes whole heads: q heads, then k heads, then v heads.
__global__ void qk_norm_rope_kv_kernel(const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0, int nh,
                                       int nkv, int hd, const float* __restrict__ qn, const float* __restrict__ kn,
                                       float eps, const float* __restrict__ inv_freq, float* __restrict__ q_out,
                                       float* __restrict__ k_cache, float* __restrict__ v_cache) {
  __shared__ float buf[kWarps][kMaxHeadDim];
  const int t = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t pos = int64_t(*d_pos0) + t;
  const int64_t row = int64_t(nh + 2 * nkv) * hd;
  const int64_t kvd = int64_t(nkv) * hd;
  const float p = static_cast<float>(pos);
  for (int head = warp; head < nh + 2 * nkv; head += kWarps) {
    const float* src = qkv + t * row + int64_t(head) * hd;
    if (head >= nh + nkv) {  // v: copied into the cache as is
      float* dst = v_cache + pos * kvd + int64_t(head - nh - nkv) * hd;
      for (int i = lane; i < hd; i += 32) dst[i] = src[i];
      continue;
    }
    const bool is_q = head < nh;
    float* dst = is_q ? q_out + int64_t(t) * nh * hd + int64_t(head) * hd
                      : k_cache + pos * kvd + int64_t(head - nh) * hd;
    norm_rope_head(src, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], dst, lane);
  }
}

// The flash prefill's variant. The token's whole q/k/v row is first copied into shared memory by the
// block at once (16-byte loads, all in flight together): reading it head by head from global memory,
// each warp waited out one memory latency per 32 values. Then per head as above, the same
// norm_rope_head arithmetic (same bits), results stored as: q in bf16; k in float32 (cache) and
// bf16; v in float32 and bf16 (round to nearest, as convert()). Dynamic shared memory: the row.
__global__ void qk_norm_rope_kv_bf16_kernel(const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0,
                                            int nh, int nkv, int hd, const float* __restrict__ qn,
                                            const float* __restrict__ kn, float eps,
                                            const float* __restrict__ inv_freq, bf16* __restrict__ q_out,
                                            float* __restrict__ k_cache, float* __restrict__ v_cache,
                                            bf16* __restrict__ k_bf16, bf16* __restrict__ v_bf16) {
  extern __shared__ __align__(16) float xrow[];  // [row]
  __shared__ float buf[kWarps][kMaxHeadDim];
  __shared__ float res[kWarps][kMaxHeadDim];
  const int t = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t pos = int64_t(*d_pos0) + t;
  const int row = (nh + 2 * nkv) * hd;
  const int64_t kvd = int64_t(nkv) * hd;
  const float p = static_cast<float>(pos);
  const float* g = qkv + int64_t(t) * row;
  if (row % 4 == 0) {  // rows 16-byte aligned (cudaMalloc'd base)
    for (int i = threadIdx.x; i < row / 4; i += kWarps * 32)
      reinterpret_cast<float4*>(xrow)[i] = reinterpret_cast<const float4*>(g)[i];
  } else {
    for (int i = threadIdx.x; i < row; i += kWarps * 32) xrow[i] = g[i];
  }
  __syncthreads();
  for (int head = warp; head < nh + 2 * nkv; head += kWarps) {
    const float* src = xrow + head * hd;
    if (head >= nh + nkv) {  // v: copied as is
      const int64_t o = pos * kvd + int64_t(head - nh - nkv) * hd;
      for (int i = lane; i < hd; i += 32) {
        const float v = src[i];
        v_cache[o + i] = v;
        v_bf16[o + i] = __float2bfloat16_rn(v);
      }
      continue;
    }
    const bool is_q = head < nh;
    // Normed and rotated into res[warp] (norm_rope_head ends with __syncwarp), then stored.
    norm_rope_head(src, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], res[warp], lane);
    if (is_q) {
      bf16* dst = q_out + int64_t(t) * nh * hd + int64_t(head) * hd;
      for (int i = lane; i < hd; i += 32) dst[i] = __float2bfloat16_rn(res[warp][i]);
    } else {
      const int64_t o = pos * kvd + int64_t(head - nh) * hd;
      for (int i = lane; i < hd; i += 32) {
        const float v = res[warp][i];
        k_cache[o + i] = v;
        k_bf16[o + i] = __float2bfloat16_rn(v);
      }
    }
    __syncwarp();  // res[warp] is rewritten by the warp's next head
  }
}

}  // namespace

void qk_norm_rope_kv(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* q_norm,
                     const float* k_norm, float eps, const float* inv_freq, float* q_out, float* k_cache,
                     float* v_cache, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim % 2 == 0 && s.head_dim <= kMaxHeadDim);
  if (T == 0) return;
  qk_norm_rope_kv_kernel<<<static_cast<unsigned>(T), kWarps * 32, 0, st>>>(
      qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim, q_norm, k_norm, eps, inv_freq, q_out, k_cache, v_cache);
  SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_kernel");
}

void qk_norm_rope_kv_bf16(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s,
                          const float* q_norm, const float* k_norm, float eps, const float* inv_freq, void* q_bf16,
                          float* k_cache, float* v_cache, void* k_bf16, void* v_bf16, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim % 2 == 0 && s.head_dim <= kMaxHeadDim);
  if (T == 0) return;
  const size_t smem = size_t(s.num_heads + 2 * s.num_kv_heads) * size_t(s.head_dim) * sizeof(float);
  // 16 KiB of static shared memory (buf, res) beside the row: at most 227 KiB a block on sm_90.
  SEGPIPE_ASSERT_MSG(smem <= size_t(200) << 10, "qk_norm_rope_kv_bf16: q/k/v row too long for shared memory");
  if (smem > size_t(48) << 10) {
    static std::atomic<size_t> raised{0};
    if (raised.load() < smem) {
      SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(qk_norm_rope_kv_bf16_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              int(smem)));
      raised.store(smem);
    }
  }
  qk_norm_rope_kv_bf16_kernel<<<static_cast<unsigned>(T), kWarps * 32, smem, st>>>(
      qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim, q_norm, k_norm, eps, inv_freq, static_cast<bf16*>(q_bf16),
      k_cache, v_cache, static_cast<bf16*>(k_bf16), static_cast<bf16*>(v_bf16));
  SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_bf16_kernel");
}

}  // namespace segpipe::cuda
