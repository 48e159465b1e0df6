#include <cuda_pipeline.h>

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

// The warp-per-head kernel: one block per token; each warp takes whole heads: q heads, then k heads,
// then v heads. kMirror (both kernels): q written as bf16 (the flash kernel's operand) and bf16
// copies of the new K and V rows written beside the float32 cache (the same round-to-nearest as
// convert(), so the bits the flash kernel reads are those of converting the cache rows afterwards).
// kGeneric (both kernels): the bias and the q/k norm as their pointers say (norm_rope_head); false,
// the normed, bias-free step compiled without those checks.
template <bool kMirror, bool kGeneric>
__global__ void qk_norm_rope_kv_per_head_kernel(const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0,
                                                int nh, int nkv, int hd, const float* __restrict__ bias,
                                                const float* __restrict__ qn,
                                                const float* __restrict__ kn, float eps,
                                                const float* __restrict__ inv_freq, void* __restrict__ q_out,
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
    const float* hb = kGeneric && bias ? bias + int64_t(head) * hd : nullptr;  // bias laid out as a qkv row
    if (head >= nh + nkv) {  // v: copied into the cache as is (plus its bias)
      const int64_t o = pos * kvd + int64_t(head - nh - nkv) * hd;
      for (int i = lane; i < hd; i += 32) {
        float v = src[i];
        if constexpr (kGeneric)
          if (hb) v = __fadd_rn(v, hb[i]);
        v_cache[o + i] = v;
        if constexpr (kMirror) v_bf16[o + i] = __float2bfloat16_rn(v);
      }
      continue;
    }
    const bool is_q = head < nh;
    const int64_t ko = pos * kvd + int64_t(head - nh) * hd;
    if constexpr (kMirror) {
      // Normed and rotated into shared memory (norm_rope_head ends with __syncwarp), then stored.
      norm_rope_head<kGeneric>(src, hb, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], res[warp], lane);
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
      norm_rope_head<kGeneric>(src, hb, is_q ? qn : kn, eps, inv_freq, p, hd, buf[warp], dst, lane);
    }
  }
}

constexpr int kTokenThreads = 256;
constexpr int kTokenWarps = kTokenThreads / 32;
// Dynamic shared memory the per-token kernel may take without opting in.
constexpr size_t kTokenSmemMax = 48 * 1024;

size_t token_smem_bytes(const QkvShape& s) {
  return (size_t(s.num_heads + 2 * s.num_kv_heads) * s.head_dim + size_t(s.head_dim)) * sizeof(float);
}

// The per-token kernel, the same values as the one above (norm_rope_head's pieces, its order of
// summation): one block per token. The whole row (q, k and v heads) is copied into shared memory
// with cp.async, all of it in flight at once, while the block computes the head_dim/2 cosines and
// sines of its position once (the warp-per-head kernel computed them for each of a token's heads);
// the q/k/v biases, where the layer has them, are added to the row in shared memory (the one
// rounding norm_rope_head makes); then each warp normalizes (where the layer has a q/k norm) and
// rotates whole q/k heads from shared memory, a lane two consecutive
// pairs' elements at a time, stored as float2 / bf16x2. Needs head_dim % 4 == 0 and 16-byte aligned
// rows (qk_norm_rope_kv_launch checks). 8 blocks an SM (6 without the mirror: at 32 registers it
// spilled); the generic instances (bias, no norm) 4 (at 6 the mirror still spilled).
constexpr int token_kernel_blocks(bool mirror, bool generic) { return generic ? 4 : mirror ? 8 : 6; }
template <bool kMirror, bool kGeneric>
__global__ void __launch_bounds__(kTokenThreads,
                                  min_blocks_per_sm(kTokenThreads, token_kernel_blocks(kMirror, kGeneric)))
    qk_norm_rope_kv_token_kernel(
    const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0, int nh, int nkv, int hd,
    const float* __restrict__ bias, const float* __restrict__ qn, const float* __restrict__ kn, float eps,
    const float* __restrict__ inv_freq, void* __restrict__ q_out, float* __restrict__ k_cache,
    float* __restrict__ v_cache, bf16* __restrict__ k_bf16, bf16* __restrict__ v_bf16) {
  extern __shared__ float4 smem4[];
  const int half = hd / 2;
  const int qk = (nh + nkv) * hd;   // floats of the q and k heads
  const int row = qk + nkv * hd;    // then the v heads
  float* xs = reinterpret_cast<float*>(smem4);
  float* cs = xs + row;  // [half] cosines, then [half] sines
  float* sn = cs + half;
  const int t = blockIdx.x;
  const int64_t pos = int64_t(*d_pos0) + t;
  const int64_t kvd = int64_t(nkv) * hd;
  const float p = static_cast<float>(pos);
  const float4* src4 = reinterpret_cast<const float4*>(qkv + int64_t(t) * row);
  for (int k = threadIdx.x; k < row / 4; k += kTokenThreads) __pipeline_memcpy_async(smem4 + k, src4 + k, 16);
  __pipeline_commit();
  for (int i = threadIdx.x; i < half; i += kTokenThreads) rope_cos_sin(inv_freq, p, i, cs[i], sn[i]);
  __pipeline_wait_prior(0);
  __syncthreads();
  if (kGeneric && bias) {  // the q/k/v biases (laid out as the row) added in shared memory, before anything reads it
    const float4* b4 = reinterpret_cast<const float4*>(bias);
    for (int k = threadIdx.x; k < row / 4; k += kTokenThreads) {
      const float4 v = smem4[k], b = __ldg(b4 + k);
      smem4[k] = make_float4(__fadd_rn(v.x, b.x), __fadd_rn(v.y, b.y), __fadd_rn(v.z, b.z), __fadd_rn(v.w, b.w));
    }
    __syncthreads();
  }
  // v: copied into the cache as is
  for (int k = qk / 4 + threadIdx.x; k < row / 4; k += kTokenThreads) {
    const float4 v = smem4[k];
    const int64_t o = pos * kvd + (4 * k - qk);
    *reinterpret_cast<float4*>(v_cache + o) = v;
    if constexpr (kMirror) {
      __nv_bfloat162 b[2] = {__floats2bfloat162_rn(v.x, v.y), __floats2bfloat162_rn(v.z, v.w)};
      *reinterpret_cast<uint2*>(v_bf16 + o) = *reinterpret_cast<const uint2*>(b);
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int head = warp; head < nh + nkv; head += kTokenWarps) {
    const float* x = xs + head * hd;
    const bool norm = !kGeneric || qn != nullptr;  // (kGeneric: no q/k norm where null, x rotated as it is)
    float inv = 1.f;
    if (norm) {
      double ss = 0;
      for (int i = lane; i < hd; i += 32) {
        const float v = x[i];
        ss += double(v) * v;
      }
      ss = warp_sum(ss);
      inv = head_inv_rms(ss, hd, eps);
    }
    const bool is_q = head < nh;
    const float* w = is_q ? qn : kn;
    const int64_t qo = (int64_t(t) * nh + head) * hd;
    const int64_t ko = pos * kvd + int64_t(head - nh) * hd;
    for (int i = 2 * lane; i < half; i += 64) {
      const float2 xa = *reinterpret_cast<const float2*>(x + i), xb = *reinterpret_cast<const float2*>(x + i + half);
      float2 wa, wb;
      if (norm) {
        wa = __ldg(reinterpret_cast<const float2*>(w + i));
        wb = __ldg(reinterpret_cast<const float2*>(w + i + half));
      }
      const float2 c = *reinterpret_cast<const float2*>(cs + i), s = *reinterpret_cast<const float2*>(sn + i);
      float a0 = xa.x, a1 = xa.y, b0 = xb.x, b1 = xb.y;
      if (norm) {  // w * (x * inv) as norm_rope_head's second pass
        a0 = wa.x * (xa.x * inv), a1 = wa.y * (xa.y * inv);
        b0 = wb.x * (xb.x * inv), b1 = wb.y * (xb.y * inv);
      }
      const float2 lo = make_float2(rope_lo(a0, b0, c.x, s.x), rope_lo(a1, b1, c.y, s.y));
      const float2 hi = make_float2(rope_hi(a0, b0, c.x, s.x), rope_hi(a1, b1, c.y, s.y));
      if (is_q) {
        if constexpr (kMirror) {
          bf16* dst = static_cast<bf16*>(q_out) + qo;
          *reinterpret_cast<__nv_bfloat162*>(dst + i) = __floats2bfloat162_rn(lo.x, lo.y);
          *reinterpret_cast<__nv_bfloat162*>(dst + i + half) = __floats2bfloat162_rn(hi.x, hi.y);
        } else {
          float* dst = static_cast<float*>(q_out) + qo;
          *reinterpret_cast<float2*>(dst + i) = lo;
          *reinterpret_cast<float2*>(dst + i + half) = hi;
        }
      } else {
        *reinterpret_cast<float2*>(k_cache + ko + i) = lo;
        *reinterpret_cast<float2*>(k_cache + ko + i + half) = hi;
        if constexpr (kMirror) {
          *reinterpret_cast<__nv_bfloat162*>(k_bf16 + ko + i) = __floats2bfloat162_rn(lo.x, lo.y);
          *reinterpret_cast<__nv_bfloat162*>(k_bf16 + ko + i + half) = __floats2bfloat162_rn(hi.x, hi.y);
        }
      }
    }
  }
}

bool aligned(const void* ptr, uintptr_t a) { return (reinterpret_cast<uintptr_t>(ptr) & (a - 1)) == 0; }

template <bool kMirror>
void qk_norm_rope_kv_launch(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s,
                            const float* bias, const float* q_norm, const float* k_norm, float eps,
                            const float* inv_freq, void* q_out, float* k_cache, float* v_cache, bf16* k_bf16,
                            bf16* v_bf16, bool per_head, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim % 2 == 0 && s.head_dim <= kMaxHeadDim);
  SEGPIPE_ASSERT_MSG((q_norm == nullptr) == (k_norm == nullptr), "qk_norm_rope_kv: q and k are normed or neither");
  if (T == 0) return;
  // Every vector access of the per-token kernel on its natural alignment (float4 rows and v rows,
  // float2 q/k pairs, bf16x2 pairs, 4 bf16 of v).
  const bool token = !per_head && s.head_dim % 4 == 0 && token_smem_bytes(s) <= kTokenSmemMax &&
                     aligned(qkv, 16) && aligned(bias, 16) && aligned(v_cache, 16) && aligned(k_cache, 8) &&
                     aligned(q_out, kMirror ? 4 : 8) && (!kMirror || (aligned(k_bf16, 4) && aligned(v_bf16, 8)));
  const bool generic = qk_step_generic(bias, q_norm);
  if (token) {
    auto kernel = generic ? qk_norm_rope_kv_token_kernel<kMirror, true> : qk_norm_rope_kv_token_kernel<kMirror, false>;
    kernel<<<static_cast<unsigned>(T), kTokenThreads, token_smem_bytes(s), st>>>(
        qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim, bias, q_norm, k_norm, eps, inv_freq, q_out, k_cache,
        v_cache, k_bf16, v_bf16);
    SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_token_kernel");
  } else {
    auto kernel =
        generic ? qk_norm_rope_kv_per_head_kernel<kMirror, true> : qk_norm_rope_kv_per_head_kernel<kMirror, false>;
    kernel<<<static_cast<unsigned>(T), kWarps * 32, 0, st>>>(qkv, d_pos0, s.num_heads, s.num_kv_heads, s.head_dim,
                                                             bias, q_norm, k_norm, eps, inv_freq, q_out, k_cache,
                                                             v_cache, k_bf16, v_bf16);
    SEGPIPE_CUDA_LAUNCH_CHECK("qk_norm_rope_kv_per_head_kernel");
  }
}

}  // namespace

void qk_norm_rope_kv(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* bias,
                     const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float* q_out,
                     float* k_cache, float* v_cache, cudaStream_t st, bool per_head) {
  qk_norm_rope_kv_launch<false>(qkv, T, d_pos0, s, bias, q_norm, k_norm, eps, inv_freq, q_out, k_cache, v_cache,
                                nullptr, nullptr, per_head, st);
}

void qk_norm_rope_kv_bf16(const float* qkv, int64_t T, const int32_t* d_pos0, const QkvShape& s, const float* bias,
                          const float* q_norm, const float* k_norm, float eps, const float* inv_freq, void* q_bf16,
                          float* k_cache, float* v_cache, void* k_bf16, void* v_bf16, cudaStream_t st,
                          bool per_head) {
  qk_norm_rope_kv_launch<true>(qkv, T, d_pos0, s, bias, q_norm, k_norm, eps, inv_freq, q_bf16, k_cache, v_cache,
                               static_cast<bf16*>(k_bf16), static_cast<bf16*>(v_bf16), per_head, st);
}

}  // namespace segpipe::cuda
