#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/attention_decode_common.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/convert.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/rope_common.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kWarps = kDecodeWarps;  // decode: many keys in flight per (head, token)
constexpr int kMaxPerLane = kDecodeMaxPerLane;  // head_dim <= 256
constexpr int kSplitBlocks = 8;  // decode: blocks per head
// Decode: keys per split (the split count ceil((pos + 1) / kSplitKeys), at most kSplitBlocks). 256
// was faster than 64 and than always 8 splits (docs/benchmarks-cuda.md); the setting was a switch
// until 2026-12-07 (third session).
constexpr int kSplitKeys = 256;

// One block per (head, token): decode, and short prefills. Each warp walks every kWarps-th key with an online softmax (running
// max and sum, rescaled accumulator); the warps' partial results are merged at the end. Lane l
// holds dimensions l, l+32, ... of the query and the accumulator, so each key row is read with
// coalesced 128-byte accesses.
template <typename O>
__global__ void attention_kernel(const float* __restrict__ q, const int32_t* __restrict__ d_pos0, int nh, int nkv,
                                 int hd, const float* __restrict__ kc, const float* __restrict__ vc, float scale,
                                 O* __restrict__ out) {
  __shared__ float s_m[kWarps], s_l[kWarps];
  __shared__ float s_acc[kWarps][kMaxPerLane * 32];
  const int h = blockIdx.x, t = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = h / (nh / nkv);
  const int64_t p = int64_t(*d_pos0) + t;
  const int64_t kvd = int64_t(nkv) * hd;
  const float* qv = q + (int64_t(t) * nh + h) * hd;
  float qr[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int r = 0; r < kMaxPerLane; r++) {
    int i = lane + 32 * r;
    qr[r] = i < hd ? qv[i] : 0.f;
    acc[r] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t j = warp; j <= p; j += kWarps) {
    const float* kr = kc + j * kvd + int64_t(g) * hd;
    float d = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxPerLane; r++) {
      int i = lane + 32 * r;
      if (i < hd) d += qr[r] * kr[i];
    }
    float sc = warp_sum(d) * scale;
    float mn = fmaxf(m, sc);
    float corr = expf(m - mn);  // 0 on the first key (m = -inf)
    float e = expf(sc - mn);
    l = l * corr + e;
    const float* vr = vc + j * kvd + int64_t(g) * hd;
#pragma unroll
    for (int r = 0; r < kMaxPerLane; r++) {
      int i = lane + 32 * r;
      if (i < hd) acc[r] = acc[r] * corr + e * vr[i];
    }
    m = mn;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int r = 0; r < kMaxPerLane; r++) s_acc[warp][lane + 32 * r] = acc[r];
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kWarps; w++) M = fmaxf(M, s_m[w]);
  float L = 0.f;
  for (int w = 0; w < kWarps; w++)
    if (s_l[w] > 0.f) L += s_l[w] * expf(s_m[w] - M);
  O* o = out + (int64_t(t) * nh + h) * hd;
  for (int i = threadIdx.x; i < hd; i += kWarps * 32) {
    float v = 0.f;
    for (int w = 0; w < kWarps; w++)
      if (s_l[w] > 0.f) v += s_acc[w][i] * expf(s_m[w] - M);
    o[i] = from_f<O>(v / L);
  }
}

// Decode (one token), the keys split over up to kSplitBlocks blocks per head: the grid always has
// kSplitBlocks blocks per head (the graph is captured once and replayed at every position), and the
// split count n_split is chosen in the kernel from the device-side position: ceil((p + 1) /
// kSplitKeys) capped at kSplitBlocks. Blocks sp >= n_split leave at once after the wait. Block (h, sp) takes keys
// j = (sp + n_split i) kWarps + warp, one per warp per round; each warp issues the K and V rows of
// kBatch such keys before it uses the first (the loads of a round overlap instead of forming one
// memory round trip per key) and then updates its online softmax key by key in ascending j, so the
// per-warp arithmetic, hence the bits for a given n_split, do not depend on kBatch. With one split
// the block writes the output itself (no partials, fence, counter or merge); otherwise each block
// writes its merged (max, sum, unnormalized accumulator) and the block that finishes last for its
// head (a counter per head) merges the n_split partials in split order.
//
// kRope: q is the raw q/k/v row of the step (qkv, before the bias, q/k-norm and RoPE): every block
// adds the bias to, normalizes and rotates its own query head and its group's new key (norm_rope_head,
// the same bits as qk_norm_rope_kv; kGeneric: bias and norms as their pointers say, as there) and uses
// them and the new value row for key p straight from shared memory; the first block of each group
// writes the new K and V rows into the cache at row p. Before waiting for
// its inputs each block asks L2 for its share of `pf` (the next product's weights).
//
// kPer: dimensions per lane held in registers (head_dim <= 32 kPer); kBatch keys per round, so that
// the K/V registers of a round stay at 64 per lane.
template <typename O, bool kRope, int kPer, bool kGeneric>
__global__ void __launch_bounds__(kWarps * 32) attention_split_kernel(
    const float* __restrict__ q, const int32_t* __restrict__ d_pos0, int nh, int nkv, int hd, float* kc, float* vc,
    float scale, O* __restrict__ out, float* part, unsigned* counters, const float* __restrict__ bias,
    const float* __restrict__ qn, const float* __restrict__ kn, float eps, const float* __restrict__ inv_freq,
    const void* pf, uint64_t pf_bytes) {
  __shared__ DecodeHeadSmem sm;
  __shared__ bool last;
  const int h = blockIdx.x, sp = blockIdx.y;
  const int g = h / (nh / nkv);
  const int64_t kvd = int64_t(nkv) * hd;
  prefetch_l2_share(pf, pf_bytes, blockIdx.y * gridDim.x + blockIdx.x, gridDim.x * gridDim.y);
  if constexpr (kRope) {
    const uint64_t norm_bytes = !kGeneric || qn ? uint64_t(hd) * sizeof(float) : 0;  // (kGeneric: none without q/k norm)
    prefetch_l1_block(qn, norm_bytes);
    prefetch_l1_block(kn, norm_bytes);
    prefetch_l1_block(inv_freq, uint64_t(hd / 2) * sizeof(float));
  }
  // The position, and with it the split and the first cache rows, before the wait: the position is
  // written before the step's first kernel (a copy, or the greedy kernel of the step before), never by
  // the kernels this one waits for. (Reading it after the wait, one round trip later, was slower,
  // docs/benchmarks-cuda.md; removed on 2026-12-07, third session.)
  const int64_t p = int64_t(*d_pos0);
  const int64_t want = (p + kSplitKeys) / kSplitKeys;  // ceil((p + 1) / kSplitKeys), p >= 0
  const int n_split = want < kSplitBlocks ? int(want) : kSplitBlocks;
  if (sp < n_split) decode_keys_prefetch<kPer>(kc, vc, kvd, g, hd, p, sp, n_split);
  pdl_wait();
  pdl_trigger();
  if (sp >= n_split) return;  // uniform per block: no barrier below is skipped by part of it
  const float* qv = q + int64_t(h) * hd;
  if constexpr (kRope) {
    // one block per group writes the new cache rows
    decode_new_kv<kGeneric>(q, bias, h, g, nh, hd, kvd, qn, kn, eps, inv_freq, p, sp == 0 && h % (nh / nkv) == 0,
                            kc, vc, sm);
    qv = sm.q;
  }
  decode_keys<kPer>(qv, kc, vc, kvd, g, hd, p, sp, n_split, kRope, scale, sm);
  __syncthreads();
  float M, L;
  decode_block_ml(sm, M, L);
  if (n_split == 1) {  // the whole head in this block: normalize and write, as attention_kernel does
    O* o = out + int64_t(h) * hd;
    for (int i = threadIdx.x; i < hd; i += kWarps * 32) o[i] = from_f<O>(decode_block_acc(sm, M, i) / L);
    return;
  }
  float* pp = part + (int64_t(h) * kSplitBlocks + sp) * (hd + 2);
  for (int i = threadIdx.x; i < hd; i += kWarps * 32) pp[i] = decode_block_acc(sm, M, i);
  if (threadIdx.x == 0) {
    pp[hd] = M;
    pp[hd + 1] = L;
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counters + h, 1u) == unsigned(n_split - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  const float* ph = part + int64_t(h) * kSplitBlocks * (hd + 2);
  float MM = -INFINITY;
  for (int b = 0; b < n_split; b++)
    if (__ldcg(ph + b * (hd + 2) + hd + 1) > 0.f) MM = fmaxf(MM, __ldcg(ph + b * (hd + 2) + hd));
  float LL = 0.f;
  for (int b = 0; b < n_split; b++) {
    float lb = __ldcg(ph + b * (hd + 2) + hd + 1);
    if (lb > 0.f) LL += lb * expf(__ldcg(ph + b * (hd + 2) + hd) - MM);
  }
  O* o = out + int64_t(h) * hd;
  for (int i = threadIdx.x; i < hd; i += kWarps * 32) {
    float v = 0.f;
    for (int b = 0; b < n_split; b++) {
      float lb = __ldcg(ph + b * (hd + 2) + hd + 1);
      if (lb > 0.f) v += __ldcg(ph + b * (hd + 2) + i) * expf(__ldcg(ph + b * (hd + 2) + hd) - MM);
    }
    o[i] = from_f<O>(v / LL);
  }
  if (threadIdx.x == 0) counters[h] = 0;
}

// Causal softmax of one score row in place: row (h, t) holds the scaled scores of keys 0..n-1;
// keys after pos0 + t get probability 0.
__global__ void causal_softmax_kernel(float* __restrict__ scores, int64_t T, int64_t n, int64_t pos0) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;  // h * T + t
  const int64_t t = row % T;
  const int64_t p = pos0 + t;
  float* r = scores + row * n;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j <= p; j += blockDim.x) mx = fmaxf(mx, r[j]);
  mx = warp_max(mx);
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < nw; w++) mx = fmaxf(mx, red[w]);
  __syncthreads();
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j <= p; j += blockDim.x) {
    float e = expf(r[j] - mx);
    r[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  sum = 0.f;
  for (int w = 0; w < nw; w++) sum += red[w];
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) r[j] = j <= p ? r[j] * inv : 0.f;
}

}  // namespace

void attention_gemm(cublasHandle_t h, const float* q, int64_t T, int64_t pos0, const AttnShape& s,
                    const float* k_cache, const float* v_cache, float scale, bool tf32, float* scores, float* out_f32,
                    void* out, DType ot, cudaStream_t st) {
  if (T == 0) return;
  const int64_t n = pos0 + T, hd = s.head_dim, qd = int64_t(s.num_heads) * hd, kvd = int64_t(s.num_kv_heads) * hd;
  const int group = s.num_heads / s.num_kv_heads;
  const cublasComputeType_t ct = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
  float* o = ot == DType::F32 ? static_cast<float*>(out) : out_f32;
  const float zero = 0.f, one = 1.f;
  for (int g = 0; g < s.num_kv_heads; g++) {
    // S_h [T, n] = scale * Q_h [T, hd] K_g^T, for the group's heads h = g*group .. (K shared: stride 0)
    SEGPIPE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(T), int(hd), &scale, k_cache + g * hd, CUDA_R_32F, int(kvd), 0,
        q + int64_t(g) * group * hd, CUDA_R_32F, int(qd), hd, &zero, scores + int64_t(g) * group * T * n, CUDA_R_32F,
        int(n), T * n, group, ct, CUBLAS_GEMM_DEFAULT));
  }
  causal_softmax_kernel<<<static_cast<unsigned>(int64_t(s.num_heads) * T), 256, 0, st>>>(scores, T, n, pos0);
  SEGPIPE_CUDA_LAUNCH_CHECK("causal_softmax_kernel");
  for (int g = 0; g < s.num_kv_heads; g++) {
    // O_h [T, hd] = P_h [T, n] V_g [n, hd]
    SEGPIPE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, CUBLAS_OP_N, CUBLAS_OP_N, int(hd), int(T), int(n), &one, v_cache + g * hd, CUDA_R_32F, int(kvd), 0,
        scores + int64_t(g) * group * T * n, CUDA_R_32F, int(n), T * n, &zero, o + int64_t(g) * group * hd,
        CUDA_R_32F, int(qd), hd, group, ct, CUBLAS_GEMM_DEFAULT));
  }
  if (ot != DType::F32) convert(o, DType::F32, out, ot, T * qd, st);
}

void attention(const float* q, int64_t T, const int32_t* d_pos0, const AttnShape& s, const float* k_cache,
               const float* v_cache, float scale, void* out, DType ot, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim <= kMaxPerLane * 32 && s.num_heads % s.num_kv_heads == 0);
  if (T == 0) return;
  dim3 grid(static_cast<unsigned>(s.num_heads), static_cast<unsigned>(T));
  SEGPIPE_DISPATCH_FB(ot, O,
                      attention_kernel<O><<<grid, kWarps * 32, 0, st>>>(q, d_pos0, s.num_heads, s.num_kv_heads,
                                                                         s.head_dim, k_cache, v_cache, scale,
                                                                         static_cast<O*>(out)));
  SEGPIPE_CUDA_LAUNCH_CHECK("attention_kernel");
}

size_t attention_decode_scratch_floats(const AttnShape& s) {
  return size_t(s.num_heads) * kSplitBlocks * size_t(s.head_dim + 2);
}

namespace {

// The split kernel's instance: the generic q/k step exists only with kRope.
template <typename O, bool kRope, int kPer>
auto split_kernel(bool generic) {
  if constexpr (kRope)
    return generic ? attention_split_kernel<O, true, kPer, true> : attention_split_kernel<O, true, kPer, false>;
  else
    return attention_split_kernel<O, false, kPer, false>;
}

template <bool kRope>
void launch_split(const float* q, const int32_t* d_pos0, const AttnShape& s, float* k_cache, float* v_cache,
                  float scale, void* out, DType ot, float* scratch, unsigned* counters, const float* bias,
                  const float* q_norm, const float* k_norm, float eps, const float* inv_freq, const void* prefetch,
                  uint64_t prefetch_bytes, const KernelPath& path, cudaStream_t st) {
  if (!path.l2_prefetch) {  // no range: the kernel skips the prefetch
    prefetch = nullptr;
    prefetch_bytes = 0;
  }
  const dim3 grid(static_cast<unsigned>(s.num_heads), kSplitBlocks);
  // the generic q/k step (a bias, or no q/k norm) only where the layer has one
  const bool generic = kRope && qk_step_generic(bias, q_norm);
  SEGPIPE_DISPATCH_FB(ot, O, {
    auto kernel = s.head_dim <= 128 ? split_kernel<O, kRope, 4>(generic) : split_kernel<O, kRope, kMaxPerLane>(generic);
    SEGPIPE_CUDA_CHECK(launch_pdl(path.pdl, kernel, grid, dim3(kWarps * 32), 0, st, q, d_pos0, s.num_heads,
                                  s.num_kv_heads, s.head_dim, k_cache, v_cache, scale, static_cast<O*>(out), scratch,
                                  counters, bias, q_norm, k_norm, eps, inv_freq, prefetch, prefetch_bytes));
  });
  if (kRope)
    SEGPIPE_CUDA_LAUNCH_CHECK("attention_split_kernel (rope)");
  else
    SEGPIPE_CUDA_LAUNCH_CHECK("attention_split_kernel");
}

}  // namespace

void attention_decode(const float* q, const int32_t* d_pos0, const AttnShape& s, const float* k_cache,
                      const float* v_cache, float scale, void* out, DType ot, float* scratch, unsigned* counters,
                      const KernelPath& path, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim <= kMaxPerLane * 32 && s.num_heads % s.num_kv_heads == 0);
  launch_split<false>(q, d_pos0, s, const_cast<float*>(k_cache), const_cast<float*>(v_cache), scale, out, ot, scratch,
                      counters, nullptr, nullptr, nullptr, 0.f, nullptr, nullptr, 0, path, st);
}

void attention_decode_rope(const float* qkv, const int32_t* d_pos0, const AttnShape& s, const float* bias,
                           const float* q_norm, const float* k_norm, float eps, const float* inv_freq, float* k_cache,
                           float* v_cache, float scale, void* out, DType ot, float* scratch, unsigned* counters,
                           const void* prefetch, uint64_t prefetch_bytes, const KernelPath& path, cudaStream_t st) {
  SEGPIPE_ASSERT(s.head_dim <= kMaxPerLane * 32 && s.head_dim % 2 == 0 && s.num_heads % s.num_kv_heads == 0);
  SEGPIPE_ASSERT_MSG((q_norm == nullptr) == (k_norm == nullptr), "attention_decode_rope: q and k normed or neither");
  launch_split<true>(qkv, d_pos0, s, k_cache, v_cache, scale, out, ot, scratch, counters, bias, q_norm, k_norm, eps,
                     inv_freq, prefetch, prefetch_bytes, path, st);
}

}  // namespace segpipe::cuda
