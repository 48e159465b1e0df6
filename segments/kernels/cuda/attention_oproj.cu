// Attention + output projection for one decode token (attention_oproj.cuh). See the header.
#include <cooperative_groups.h>

#include <atomic>

#include "segments/kernels/cuda/attention_decode_common.cuh"
#include "segments/kernels/cuda/attention_oproj.cuh"
#include "segments/kernels/cuda/bulk_copy.cuh"  // Vec8
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv.cuh"

namespace segpipe::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = kDecodeWarps * 32;
constexpr size_t kMaxRowsBytes = 160 * 1024;  // shared memory for a block's rows of W_o[:, h]

// Bytes between two rows of the block's W_o slice in shared memory: a row and 16 bytes, so that the
// 16-byte loads of 8 consecutive threads (one row each) fall in different banks.
__host__ __device__ inline int64_t slice_stride(int hd, size_t es) { return int64_t(hd) * int64_t(es) + 16; }

template <typename W, int kPer, int S>
__global__ void __launch_bounds__(kThreads, 1) attention_oproj_kernel(
    const float* __restrict__ qkv, const int32_t* __restrict__ d_pos0, int nh, int nkv, int hd, float* kc, float* vc,
    float scale, const float* __restrict__ qn, const float* __restrict__ kn, float eps,
    const float* __restrict__ inv_freq, const W* __restrict__ wo, int64_t H, float* __restrict__ x,
    float* __restrict__ part, unsigned* __restrict__ counters) {
  extern __shared__ __align__(128) unsigned char dyn[];
  __shared__ DecodeHeadSmem sm;
  __shared__ float mine[kDecodeMaxPerLane * 32 + 2];  // this block's (accumulator, max, sum) for the merge
  __shared__ float att[kDecodeMaxPerLane * 32];        // att_h as the product reads it (rounded to W)
  __shared__ bool last;
  cg::cluster_group cluster = cg::this_cluster();
  const int h = blockIdx.x / S, s = int(cluster.block_rank());
  const int g = h / (nh / nkv);
  const int64_t qd = int64_t(nh) * hd, kvd = int64_t(nkv) * hd;
  const int64_t R = (H + S - 1) / S, r0 = int64_t(s) * R;
  const int64_t nr = H - r0 < R ? (H - r0 > 0 ? H - r0 : 0) : R;
  const uint32_t row_bytes = uint32_t(hd) * sizeof(W);
  const int64_t stride = slice_stride(hd, sizeof(W));

  // 1. this block's rows of W_o[:, h] into shared memory before the wait: 16-byte asynchronous copies,
  //    consecutive threads on consecutive pieces of a row (one bulk copy per 256-byte row measured no
  //    faster)
  const int64_t per_row = row_bytes / 16;
  for (int64_t i = threadIdx.x; i < nr * per_row; i += kThreads) {
    const int64_t r = i / per_row, c = i - r * per_row;
    cp_async16(dyn + r * stride + c * 16, reinterpret_cast<const char*>(wo + (r0 + r) * qd + int64_t(h) * hd) + c * 16);
  }
  cp_async_commit();
  prefetch_l1_block(qn, uint64_t(hd) * sizeof(float));
  prefetch_l1_block(kn, uint64_t(hd) * sizeof(float));
  prefetch_l1_block(inv_freq, uint64_t(hd / 2) * sizeof(float));
  pdl_wait();
  pdl_trigger();

  // 2. attention of head h over split s of S (the split kernel's pieces)
  const int64_t p = int64_t(*d_pos0);
  decode_new_kv(qkv, h, g, nh, hd, kvd, qn, kn, eps, inv_freq, p, s == 0 && h % (nh / nkv) == 0, kc, vc, sm);
  decode_keys<kPer>(sm.q, kc, vc, kvd, g, hd, p, s, S, true, scale, sm);
  __syncthreads();
  float M, L;
  decode_block_ml(sm, M, L);
  for (int i = threadIdx.x; i < hd; i += kThreads) mine[i] = decode_block_acc(sm, M, i);
  if (threadIdx.x == 0) {
    mine[hd] = M;
    mine[hd + 1] = L;
  }
  cluster.sync();
  // 3. the S partials merged in split order, in every block of the cluster (the split kernel's
  //    last-block expressions)
  float MM = -INFINITY, LL = 0.f;
  for (int b = 0; b < S; b++) {
    const float* o = cluster.map_shared_rank(mine, b);
    if (o[hd + 1] > 0.f) MM = fmaxf(MM, o[hd]);
  }
  for (int b = 0; b < S; b++) {
    const float* o = cluster.map_shared_rank(mine, b);
    if (o[hd + 1] > 0.f) LL += o[hd + 1] * expf(o[hd] - MM);
  }
  for (int i = threadIdx.x; i < hd; i += kThreads) {
    float v = 0.f;
    for (int b = 0; b < S; b++) {
      const float* o = cluster.map_shared_rank(mine, b);
      if (o[hd + 1] > 0.f) v += o[i] * expf(o[hd] - MM);
    }
    att[i] = to_f(from_f<W>(v / LL));
  }
  cluster.sync();  // no block leaves or reuses `mine` while another reads it
  // 4. this block's rows of W_o[:, h] · att_h, one row a thread, elements in ascending order
  cp_async_wait<0>();
  __syncthreads();  // att complete, every thread's copies landed
  for (int64_t r = threadIdx.x; r < nr; r += kThreads) {
    const W* wr = reinterpret_cast<const W*>(dyn + r * stride);
    float a = 0.f;
    for (int c = 0; c < hd; c += 8) {
      Vec8<W> w8;
      w8.lds(wr + c);
      float w[8];
      w8.to_float(w);
#pragma unroll
      for (int q = 0; q < 8; q++) a += w[q] * att[c + q];
    }
    part[int64_t(h) * H + r0 + r] = a;
  }
  // 5. the last block of row slice s adds the nh head partials, in head order, to x
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counters + s, 1u) == unsigned(nh - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int64_t r = threadIdx.x; r < nr; r += kThreads) {
    float v = 0.f;
#pragma unroll 8
    for (int hh = 0; hh < nh; hh++) v += __ldcg(part + int64_t(hh) * H + r0 + r);
    x[r0 + r] += v;
  }
  if (threadIdx.x == 0) counters[s] = 0;  // ready for the next launch (kernels on one stream run in order)
}

template <typename W, int kPer, int S>
void launch(const float* qkv, const int32_t* d_pos0, const AttnShape& sh, const float* qn, const float* kn, float eps,
            const float* inv_freq, float* kc, float* vc, float scale, const W* wo, int64_t H, float* x, float* part,
            unsigned* counters, cudaStream_t st) {
  auto kernel = attention_oproj_kernel<W, kPer, S>;
  const size_t smem = size_t((H + S - 1) / S) * size_t(slice_stride(sh.head_dim, sizeof(W)));
  static bool raised = false;  // one attribute call per instantiation
  if (!raised) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxRowsBytes)));
    raised = true;
  }
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = decode_overlap() ? 1 : 0;
  attr[1].id = cudaLaunchAttributeClusterDimension;
  attr[1].val.clusterDim.x = S;
  attr[1].val.clusterDim.y = 1;
  attr[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(sh.num_heads * S));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cfg.attrs = attr;
  cfg.numAttrs = 2;
  SEGPIPE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, qkv, d_pos0, sh.num_heads, sh.num_kv_heads, sh.head_dim, kc, vc,
                                        scale, qn, kn, eps, inv_freq, wo, H, x, part, counters));
  SEGPIPE_CUDA_LAUNCH_CHECK("attention_oproj_kernel");
}

template <typename W, int kPer>
void launch_s(int S, const float* qkv, const int32_t* d_pos0, const AttnShape& sh, const float* qn, const float* kn,
              float eps, const float* inv_freq, float* kc, float* vc, float scale, const W* wo, int64_t H, float* x,
              float* part, unsigned* counters, cudaStream_t st) {
  switch (S) {
    case 1: return launch<W, kPer, 1>(qkv, d_pos0, sh, qn, kn, eps, inv_freq, kc, vc, scale, wo, H, x, part, counters, st);
    case 2: return launch<W, kPer, 2>(qkv, d_pos0, sh, qn, kn, eps, inv_freq, kc, vc, scale, wo, H, x, part, counters, st);
    case 4: return launch<W, kPer, 4>(qkv, d_pos0, sh, qn, kn, eps, inv_freq, kc, vc, scale, wo, H, x, part, counters, st);
    default: return launch<W, kPer, 8>(qkv, d_pos0, sh, qn, kn, eps, inv_freq, kc, vc, scale, wo, H, x, part, counters, st);
  }
}

std::atomic<bool> g_on{false};
std::atomic<int> g_split{0};

template <typename W, int kPer, int S>
int max_clusters(const AttnShape& sh, int64_t H) {
  auto kernel = attention_oproj_kernel<W, kPer, S>;
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxRowsBytes)));
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = S;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(sh.num_heads * S));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = size_t((H + S - 1) / S) * size_t(slice_stride(sh.head_dim, sizeof(W)));
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int n = 0;
  SEGPIPE_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg));
  return n;
}

}  // namespace

int attention_oproj_split(const AttnShape& s, int64_t hidden, DType wt) {
  if (wt != DType::F32 && wt != DType::BF16) return 0;
  if (s.head_dim % 8 != 0 || s.head_dim > kDecodeMaxPerLane * 32 || s.num_heads % s.num_kv_heads != 0 || hidden < 1)
    return 0;
  const size_t es = dtype_size(wt);
  if (const int forced = g_split.load(std::memory_order_relaxed)) {
    const size_t smem = size_t((hidden + forced - 1) / forced) * size_t(slice_stride(s.head_dim, es));
    return smem <= kMaxRowsBytes ? forced : 0;
  }
  // The fewest blocks a head whose rows fit, but at least 64 blocks in all where 8 a head allow it
  // (the W_o stream needs most multiprocessors).
  for (int S = 1; S <= 8; S *= 2) {
    const size_t smem = size_t((hidden + S - 1) / S) * size_t(slice_stride(s.head_dim, es));
    if (smem <= kMaxRowsBytes && (int64_t(s.num_heads) * S >= 64 || S == 8)) return S;
  }
  return 0;
}

size_t attention_oproj_scratch_floats(const AttnShape& s, int64_t hidden) { return size_t(s.num_heads) * size_t(hidden); }

void attention_oproj(const float* qkv, const int32_t* d_pos0, const AttnShape& s, const float* q_norm,
                     const float* k_norm, float eps, const float* inv_freq, float* k_cache, float* v_cache,
                     float scale, const void* wo, DType wt, int64_t hidden, float* x, float* scratch,
                     unsigned* counters, cudaStream_t st) {
  const int S = attention_oproj_split(s, hidden, wt);
  SEGPIPE_ASSERT_MSG(S > 0, "attention_oproj: shape not supported (attention_oproj_split)");
  SEGPIPE_DISPATCH_FB(wt, W, {
    if (s.head_dim <= 128)
      launch_s<W, 4>(S, qkv, d_pos0, s, q_norm, k_norm, eps, inv_freq, k_cache, v_cache, scale,
                     static_cast<const W*>(wo), hidden, x, scratch, counters, st);
    else
      launch_s<W, kDecodeMaxPerLane>(S, qkv, d_pos0, s, q_norm, k_norm, eps, inv_freq, k_cache, v_cache, scale,
                                     static_cast<const W*>(wo), hidden, x, scratch, counters, st);
  });
}

void set_decode_attention_oproj(bool on) { g_on.store(on); }
void set_attention_oproj_split(int blocks) { g_split.store(blocks == 1 || blocks == 2 || blocks == 4 || blocks == 8 ? blocks : 0); }
int attention_oproj_max_clusters(const AttnShape& s, int64_t hidden, DType wt) {
  const int S = attention_oproj_split(s, hidden, wt);
  if (S == 0) return 0;
  int n = 0;
  SEGPIPE_DISPATCH_FB(wt, W, {
    const bool small = s.head_dim <= 128;
    switch (S) {
      case 1: n = small ? max_clusters<W, 4, 1>(s, hidden) : max_clusters<W, kDecodeMaxPerLane, 1>(s, hidden); break;
      case 2: n = small ? max_clusters<W, 4, 2>(s, hidden) : max_clusters<W, kDecodeMaxPerLane, 2>(s, hidden); break;
      case 4: n = small ? max_clusters<W, 4, 4>(s, hidden) : max_clusters<W, kDecodeMaxPerLane, 4>(s, hidden); break;
      default: n = small ? max_clusters<W, 4, 8>(s, hidden) : max_clusters<W, kDecodeMaxPerLane, 8>(s, hidden);
    }
  });
  return n;
}
bool decode_attention_oproj() { return g_on.load(std::memory_order_relaxed); }

}  // namespace segpipe::cuda
