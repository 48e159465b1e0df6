// The bf16 flash prefill attention (attention_flash.cu) on Hopper's warpgroup MMA (wgmma), for
// sm_90a; head_dim 128 only (attention_flash.cu runs its mma.sync kernel elsewhere).
//
// A CTA: 128 queries of one head, two warpgroups of 64 rows each (no producer warp, no ping-pong:
// the warpgroups resident on an SM interleave their MMAs and softmax on their own), key tiles of 64,
// two CTAs an SM (registers capped at 128, 97 KB of shared memory each): faster than 128-key tiles or
// one CTA an SM (docs/benchmarks-cuda.md, "Flash prefill attention on wgmma"). Q, and per key tile
// K and V, sit in shared memory as bf16 in wgmma's 128-byte swizzle (sm90a/wgmma.cuh), each 128-dim
// row split into two 64-dim blocks ([2][rows][64]). Per key tile a warpgroup computes S = Q K^T
// (m64n64k16, both operands K-major from shared memory, 8 steps over head_dim), the online softmax
// on the fp32 accumulators (exp2, log2(e) folded into the scale; a row's values sit in the 4 threads
// of a quad, as in mma.sync's fragments), P rounded to bf16 in registers as the A operand of O += P V
// (m64n128k16, V from shared memory read N-major: imm-trans-b), O in 64 fp32 registers a thread. K/V
// tiles are double buffered through cp.async (tile kt + 1 in flight while tile kt is computed);
// causal masking only on tiles that reach past a warpgroup's first row; a warpgroup skips key tiles
// wholly after its rows. Query tiles heaviest first over all heads (blockIdx.x = head, as
// flash_attn_q128). Summation orders are fixed: the same bits run to run.
#include <atomic>
#include <cmath>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/sm90a/attention_flash_wgmma.cuh"
#include "segments/kernels/cuda/sm90a/wgmma.cuh"

namespace segpipe::cuda {

namespace {

using namespace sm90a;

constexpr int kHD = 128;  // head_dim: two 64-dim blocks of 128-byte rows
constexpr int kBQ = 128;  // queries a CTA: two warpgroups of 64 rows
constexpr int kThreads = 256;
constexpr int kBK = 64;        // keys a tile
constexpr int kMinBlocks = 2;  // CTAs an SM

struct FlashCfg {
  static constexpr int QElems = kBQ * kHD;    // [2][kBQ][64]
  static constexpr int KVElems = kBK * kHD;   // one K or V tile, [2][kBK][64]
  // Q, two stages of K and V, the 1024-byte alignment slack: 99328 bytes.
  static constexpr int Smem = (QElems + 4 * KVElems) * 2 + 1024;
  static_assert(kMinBlocks * Smem <= 228 * 1024, "shared memory");
};

// Element offset of dims 8 cc .. 8 cc + 7 of row r in a [2][rows][64] swizzled tile of 128-dim rows.
__device__ __forceinline__ int tile_off(int rows, int r, int cc) { return (cc >> 3) * rows * 64 + smem_swz(r, cc & 7); }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Eight consecutive query values as packed bf16: float32 rounded here (to nearest), bf16 as they are
// (qk_norm_rope_kv_bf16 rounds the same way: the same bits).
__device__ __forceinline__ uint4 load_q8(const float* p) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  return make_uint4(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w), pack_bf16(b.x, b.y), pack_bf16(b.z, b.w));
}
__device__ __forceinline__ uint4 load_q8(const bf16* p) { return *reinterpret_cast<const uint4*>(p); }


template <typename O>
__device__ __forceinline__ void store2(O* p, float a, float b);
template <>
__device__ __forceinline__ void store2<float>(float* p, float a, float b) {
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
}
template <>
__device__ __forceinline__ void store2<bf16>(bf16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}

template <typename Q, typename O>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    flash_wgmma_kernel(const Q* __restrict__ q, int T, int pos0, int nh, int nkv, const bf16* __restrict__ kb,
                       const bf16* __restrict__ vb, float scale_log2, O* __restrict__ out) {
  if constexpr (kHaveWgmma) {
    using C = FlashCfg;
    extern __shared__ unsigned char smem_raw[];
    // wgmma's 128-byte swizzle is a function of the address bits: the tiles must be 1024-byte aligned.
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
    bf16* Qs = reinterpret_cast<bf16*>(smem_raw + ((1024 - (base & 1023)) & 1023));
    bf16* Ks = Qs + C::QElems;      // [2 stages][KVElems]
    bf16* Vs = Ks + 2 * C::KVElems;  // [2 stages][KVElems]
    const int qt = gridDim.y - 1 - blockIdx.y;  // the longest (last) query tiles first, all heads
    const int h = blockIdx.x, g = h / (nh / nkv);
    const int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32, gr = lane / 4,
              tq = lane % 4;
    const int64_t qd = int64_t(nh) * kHD, kvd = int64_t(nkv) * kHD;
    const int n = pos0 + T;
    const int q0 = qt * kBQ;
    const int last_key = pos0 + min(T - 1, q0 + kBQ - 1);
    const int nkt = last_key / kBK + 1;

    // Keys past the last (n - 1) are zero-filled: their probabilities are 0, and 0 * V stays finite.
    auto load_tile = [&](int kt, int stage) {
      bf16* ks = Ks + stage * C::KVElems;
      bf16* vs = Vs + stage * C::KVElems;
#pragma unroll 2
      for (int c = tid; c < kBK * (kHD / 8); c += kThreads) {
        const int r = c / (kHD / 8), cc = c % (kHD / 8);
        const int key = kt * kBK + r;
        const int64_t src = int64_t(min(key, n - 1)) * kvd + int64_t(g) * kHD + cc * 8;
        const int bytes = key < n ? 16 : 0;
        const int off = tile_off(kBK, r, cc);
        cp_async16(ks + off, kb + src, bytes);
        cp_async16(vs + off, vb + src, bytes);
      }
      cp_async_commit();
    };
    load_tile(0, 0);

    // The CTA's query rows as bf16 (rows past T repeat row T - 1: computed, never stored); ordinary
    // stores, so fenced for the async proxy before the first tile's barrier publishes them.
    for (int c = tid; c < kBQ * (kHD / 8); c += kThreads) {
      const int r = c / (kHD / 8), cc = c % (kHD / 8);
      *reinterpret_cast<uint4*>(Qs + tile_off(kBQ, r, cc)) =
          load_q8(q + int64_t(min(q0 + r, T - 1)) * qd + int64_t(h) * kHD + cc * 8);
    }
    fence_proxy_async();

    // Accumulator i of a thread: row 16 warp + gr + 8 ((i >> 1) & 1) of the warpgroup's 64, column
    // 8 (i >> 2) + 2 tq + (i & 1) (head dim for O, key of the tile for S).
    float o[kHD / 2];
#pragma unroll
    for (int i = 0; i < kHD / 2; i++) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const int wg_first = pos0 + q0 + wg * 64;          // absolute position of the warpgroup's first row
    const int p0 = wg_first + warp * 16 + gr, p1 = p0 + 8;  // this thread's rows: keys <= p attend
    const bf16* Qw = Qs + wg * 64 * 64;                 // the warpgroup's rows, dim block 0

    for (int kt = 0; kt < nkt; kt++) {
      // Tile kt landed (this thread's copies; the only group pending), made visible to wgmma, then
      // the barrier: every thread's copies, and both warpgroups done with tile kt - 1, whose stage
      // the next load refills.
      cp_async_wait<0>();
      fence_proxy_async();
      __syncthreads();
      if (kt + 1 < nkt) load_tile(kt + 1, (kt + 1) & 1);
      const int kbase = kt * kBK;
      // Warpgroup-uniform; each MMA batch is waited for inside it (nothing in flight across it).
      if (kbase <= wg_first + 63) {
        const bf16* K = Ks + (kt & 1) * C::KVElems;
        const bf16* V = Vs + (kt & 1) * C::KVElems;
        float s[kBK / 2];
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < kHD / 16; ks++)  // 16 dims: 32 bytes along the swizzled rows of one block
          wgmma_tile<kBK>(s, smem_desc(Qw + (ks >> 2) * kBQ * 64 + (ks & 3) * 16),
                         smem_desc(K + (ks >> 2) * kBK * 64 + (ks & 3) * 16), ks > 0 ? 1 : 0);
        wgmma_commit();
        wgmma_wait0();

        const bool mask = kbase + kBK - 1 > wg_first;  // some key past some row of the warpgroup
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int i = 0; i < kBK / 2; i++) {
          float v = s[i] * scale_log2;
          if (mask) {
            const int key = kbase + (i >> 2) * 8 + 2 * tq + (i & 1);
            if (key > ((i & 2) ? p1 : p0)) v = -INFINITY;
          }
          s[i] = v;
          if (i & 2)
            mx1 = fmaxf(mx1, v);
          else
            mx0 = fmaxf(mx0, v);
        }
        // Every row attends key 0 (tile 0): its maximum is finite from the first tile on; the guard
        // keeps a row of padding (past T, never stored) free of inf - inf.
        const OnlineMax r0 = online_max(m0, quad_max(mx0)), r1 = online_max(m1, quad_max(mx1));
        const float b0 = r0.base, b1 = r1.base, c0 = r0.scale, c1 = r1.scale;
        m0 = r0.m;
        m1 = r1.m;
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int i = 0; i < kBK / 2; i++) {
          if (i & 2) {
            s[i] = exp2f(s[i] - b1);
            s1 += s[i];
          } else {
            s[i] = exp2f(s[i] - b0);
            s0 += s[i];
          }
        }
        l0 = l0 * c0 + s0;
        l1 = l1 * c1 + s1;
        // Skipped where no row of the warp got a new maximum (c = 1: the same bits).
        if (__any_sync(0xffffffffu, c0 != 1.f || c1 != 1.f)) {
#pragma unroll
          for (int i = 0; i < kHD / 2; i++) o[i] *= (i & 2) ? c1 : c0;
        }
        // P as bf16 A fragments, one per 16 keys: accumulators 8j .. 8j + 7 are keys 16 j .. 16 j + 15
        // (rows gr, gr + 8), exactly the m16n8k16 A layout wgmma takes from registers.
        uint32_t pa[kBK / 16][4];
#pragma unroll
        for (int j = 0; j < kBK / 16; j++) {
          pa[j][0] = pack_bf16(s[8 * j], s[8 * j + 1]);
          pa[j][1] = pack_bf16(s[8 * j + 2], s[8 * j + 3]);
          pa[j][2] = pack_bf16(s[8 * j + 4], s[8 * j + 5]);
          pa[j][3] = pack_bf16(s[8 * j + 6], s[8 * j + 7]);
        }
        wgmma_fence();  // o and pa were written by ordinary instructions
#pragma unroll
        for (int j = 0; j < kBK / 16; j++)  // 16 keys: 16 rows of 128 bytes further
          wgmma_m64n128k16_rs_tb(o, pa[j], smem_desc_mn(V + j * 16 * 64, kBK * 128));
        wgmma_commit();
        wgmma_wait0();
      }
    }
    // No copy is pending: the last tile issued no load after its wait.

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    const int r0 = q0 + wg * 64 + warp * 16 + gr, r1 = r0 + 8;
#pragma unroll
    for (int ni = 0; ni < kHD / 8; ni++) {
      const int c = h * kHD + ni * 8 + 2 * tq;
      if (r0 < T) store2<O>(out + int64_t(r0) * qd + c, o[4 * ni] * i0, o[4 * ni + 1] * i0);
      if (r1 < T) store2<O>(out + int64_t(r1) * qd + c, o[4 * ni + 2] * i1, o[4 * ni + 3] * i1);
    }
  } else {
    __trap();  // no sm_90a code: the host launches this only on compute capability 9.0
  }
}

template <typename Q, typename O>
void launch_flash_wgmma(const Q* q, int T, int pos0, int nh, int nkv, const bf16* kb, const bf16* vb,
                        float scale_log2, O* out, cudaStream_t st) {
  auto kern = flash_wgmma_kernel<Q, O>;
  static std::atomic<uint64_t> raised{0};  // per device
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (!bit || !(raised.load() & bit)) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, FlashCfg::Smem));
    SEGPIPE_CUDA_CHECK(
        cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)));
    raised.fetch_or(bit);
  }
  dim3 grid(static_cast<unsigned>(nh), static_cast<unsigned>(div_up(int64_t(T), int64_t(kBQ))));
  kern<<<grid, kThreads, FlashCfg::Smem, st>>>(q, T, pos0, nh, nkv, kb, vb, scale_log2, out);
  SEGPIPE_CUDA_LAUNCH_CHECK("flash_wgmma_kernel");
}

}  // namespace

void attention_flash_wgmma(const void* q, DType qt, int T, int pos0, int nh, int nkv, const void* k_bf16,
                           const void* v_bf16, float scale_log2, void* out, DType ot, cudaStream_t st) {
  const bf16* kb = static_cast<const bf16*>(k_bf16);
  const bf16* vb = static_cast<const bf16*>(v_bf16);
  SEGPIPE_DISPATCH_FB(qt, Q, {
    SEGPIPE_DISPATCH_FB(ot, O, {
      launch_flash_wgmma<Q, O>(static_cast<const Q*>(q), T, pos0, nh, nkv, kb, vb, scale_log2, static_cast<O*>(out),
                               st);
    });
  });
}

}  // namespace segpipe::cuda
