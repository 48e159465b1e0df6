// Fused causal attention for long prefills (flash attention, forward only), the portable kernel
// (mma.sync: any GPU the build targets; the Hopper kernel is sm90a/attention_flash_wgmma.cu, chosen
// by attention_flash where the context's KernelPath has wgmma and head_dim is 128). Per block 128
// queries of one head, each of the 4 warps owns 32 rows (two m16 tiles) so that every K and V
// fragment read from shared memory (ldmatrix) feeds two products: half the shared-memory reads per
// FLOP of a 64-query block with 16 rows a warp, which was bound by them. Key/value tiles of 64 rows go
// through shared memory (cp.async, double buffered); the score and value products run on tensor
// cores (m16n8k16, bf16 operands, fp32 accumulation) with an online softmax in fp32 (exp2 with
// log2(e) folded into the scale), so the [T, T] score matrix never exists; the score fragments of a
// key tile become the A operands of the value product in registers. Q goes to shared memory as bf16
// once and is read per 16-dim step (it would take 64 registers a thread). Query tiles are dispatched
// heaviest first over all heads (blockIdx.x = head, so the heads of a KV group run side by side and
// share their K/V tiles in L2).
#include <atomic>

#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/sm90a/attention_flash_wgmma.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kBK = 64, kThreads = 128;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// Four consecutive query values as packed bf16: float32 queries rounded here (to nearest), bf16 ones
// (qk_norm_rope_kv_bf16, the same rounding done there) taken as they are.
__device__ __forceinline__ uint2 load_q4(const float* p) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  return make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
}
__device__ __forceinline__ uint2 load_q4(const bf16* p) { return *reinterpret_cast<const uint2*>(p); }

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

constexpr int kBQ2 = 128;  // flash_attn_q128: queries per block (4 warps x 32 rows)

template <int HD, typename Q, typename O>
__global__ void __launch_bounds__(kThreads, 2)
    flash_attn_q128(const Q* __restrict__ q, int T, int pos0, int nh, int nkv, const bf16* __restrict__ kb,
                    const bf16* __restrict__ vb, float scale_log2, O* __restrict__ out) {
  constexpr int STR = HD + 8;  // smem row stride (bf16): the 8 rows of an ldmatrix land on distinct banks
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [kBQ2][STR]
  bf16* Ks = Qs + kBQ2 * STR;                    // [2][kBK][STR]
  bf16* Vs = Ks + 2 * kBK * STR;                 // [2][kBK][STR]
  const int qt = gridDim.y - 1 - blockIdx.y;     // the longest (last) query tiles first, all heads
  const int h = blockIdx.x, g = h / (nh / nkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, tq = lane % 4;
  const int64_t qd = int64_t(nh) * HD, kvd = int64_t(nkv) * HD;
  const int n = pos0 + T;
  const int q0 = qt * kBQ2;
  const int last_key = pos0 + min(T - 1, q0 + kBQ2 - 1);
  const int nkt = last_key / kBK + 1;

  // Not unrolled: unrolled, the 8 chunks' addresses stay live through the loop (register spills).
  auto load_tile = [&](int kt, int buf) {
#pragma unroll 1
    for (int c = threadIdx.x; c < kBK * HD / 8; c += kThreads) {
      const int r = c / (HD / 8), col = (c % (HD / 8)) * 8;
      const int key = kt * kBK + r;
      const int64_t src = int64_t(min(key, n - 1)) * kvd + int64_t(g) * HD + col;
      const int bytes = key < n ? 16 : 0;  // past the last key: zeros
      cp_async16(Ks + (buf * kBK + r) * STR + col, kb + src, bytes);
      cp_async16(Vs + (buf * kBK + r) * STR + col, vb + src, bytes);
    }
    cp_async_commit();
  };
  load_tile(0, 0);

  // The block's query rows as bf16 (rows past T repeat row T-1: computed, never stored). Made
  // visible by the barrier at the top of the first key tile.
  for (int c = threadIdx.x; c < kBQ2 * HD / 4; c += kThreads) {
    const int r = c / (HD / 4), col = (c % (HD / 4)) * 4;
    *reinterpret_cast<uint2*>(Qs + r * STR + col) = load_q4(q + int64_t(min(q0 + r, T - 1)) * qd + int64_t(h) * HD + col);
  }

  // Thread rows (relative to the prompt): wr0 + 16 mt + gr (half 0) and + 8 (half 1), mt = 0, 1.
  const int wr0 = q0 + warp * 32;
  const int warp_last = pos0 + wr0 + 31;  // no key past this position is seen by the warp's rows
  float o[2][HD / 8][4];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  float m[2][2], l[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;
  const bf16* Qw = Qs + (warp * 32 + (lane & 15)) * STR + (lane >> 4) * 8;  // this lane's ldmatrix row

  for (int kt = 0; kt < nkt; kt++) {
    if (kt + 1 < nkt)
      load_tile(kt + 1, (kt + 1) & 1);
    else
      cp_async_commit();  // an empty group keeps the wait count uniform
    cp_async_wait<1>();
    __syncthreads();
    const int kbase = kt * kBK;
    if (kbase <= warp_last) {  // warp-uniform: key tiles wholly after the warp's rows are skipped
      const bf16* K = Ks + (kt & 1) * kBK * STR;
      const bf16* V = Vs + (kt & 1) * kBK * STR;
      const bool mask = kbase + kBK - 1 > pos0 + wr0 || kbase + kBK > n;
      uint32_t pa[2][kBK / 16][4];  // probabilities as bf16 A fragments of the value product
      // Both m16 tiles' scores at once: each K fragment read from shared memory feeds two products.
      float sc[2][kBK / 8][4];
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < kBK / 8; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < HD / 16; ks++) {
        uint32_t qa[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) ldmatrix_x4(qa[mt], Qw + mt * 16 * STR + ks * 16);
#pragma unroll
        for (int np = 0; np < kBK / 16; np++) {
          // keys np*16 + 0..7 (dims +0 / +8), then keys np*16 + 8..15: b0/b1 of two n8 tiles
          uint32_t kf[4];
          ldmatrix_x4(kf, K + (np * 16 + (lane & 7) + (lane >> 4) * 8) * STR + ks * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
          for (int mt = 0; mt < 2; mt++) {
            mma_bf16(sc[mt][2 * np], qa[mt], kf[0], kf[1]);
            mma_bf16(sc[mt][2 * np + 1], qa[mt], kf[2], kf[3]);
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        const int p0 = pos0 + wr0 + mt * 16 + gr, p1 = p0 + 8;  // absolute positions: keys <= p attend
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kBK / 8; nt++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            float v = sc[mt][nt][e] * scale_log2;
            if (mask) {
              const int key = kbase + nt * 8 + 2 * tq + (e & 1);
              const int p = e < 2 ? p0 : p1;
              if (key > p || key >= n) v = -INFINITY;
            }
            sc[mt][nt][e] = v;
            if (e < 2)
              mx0 = fmaxf(mx0, v);
            else
              mx1 = fmaxf(mx1, v);
          }
        const OnlineMax r0 = online_max(m[mt][0], quad_max(mx0)), r1 = online_max(m[mt][1], quad_max(mx1));
        const float b0 = r0.base, b1 = r1.base, c0 = r0.scale, c1 = r1.scale;
        m[mt][0] = r0.m;
        m[mt][1] = r1.m;
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int nt = 0; nt < kBK / 8; nt++) {
          sc[mt][nt][0] = exp2f(sc[mt][nt][0] - b0);
          sc[mt][nt][1] = exp2f(sc[mt][nt][1] - b0);
          sc[mt][nt][2] = exp2f(sc[mt][nt][2] - b1);
          sc[mt][nt][3] = exp2f(sc[mt][nt][3] - b1);
          s0 += sc[mt][nt][0] + sc[mt][nt][1];
          s1 += sc[mt][nt][2] + sc[mt][nt][3];
        }
        l[mt][0] = l[mt][0] * c0 + s0;
        l[mt][1] = l[mt][1] * c1 + s1;
        // Skipped where no row of the warp's tile got a new maximum (c = 1: the same bits).
        if (__any_sync(0xffffffffu, c0 != 1.f || c1 != 1.f)) {
#pragma unroll
          for (int i = 0; i < HD / 8; i++) {
            o[mt][i][0] *= c0;
            o[mt][i][1] *= c0;
            o[mt][i][2] *= c1;
            o[mt][i][3] *= c1;
          }
        }
#pragma unroll
        for (int j = 0; j < kBK / 16; j++) {
          pa[mt][j][0] = pack_bf16(sc[mt][2 * j][0], sc[mt][2 * j][1]);
          pa[mt][j][1] = pack_bf16(sc[mt][2 * j][2], sc[mt][2 * j][3]);
          pa[mt][j][2] = pack_bf16(sc[mt][2 * j + 1][0], sc[mt][2 * j + 1][1]);
          pa[mt][j][3] = pack_bf16(sc[mt][2 * j + 1][2], sc[mt][2 * j + 1][3]);
        }
      }
#pragma unroll
      for (int j = 0; j < kBK / 16; j++)
#pragma unroll
        for (int np = 0; np < HD / 16; np++) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, V + (j * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STR + np * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int mt = 0; mt < 2; mt++) {
            mma_bf16(o[mt][2 * np], pa[mt][j], b[0], b[1]);
            mma_bf16(o[mt][2 * np + 1], pa[mt][j], b[2], b[3]);
          }
        }
    }
    __syncthreads();  // this buffer is refilled by the load issued next iteration
  }
#pragma unroll
  for (int mt = 0; mt < 2; mt++) {
    float l0 = l[mt][0], l1 = l[mt][1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    const int r0 = wr0 + mt * 16 + gr, r1 = r0 + 8;
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) {
      const int c = h * HD + nt * 8 + 2 * tq;
      if (r0 < T) store2<O>(out + int64_t(r0) * qd + c, o[mt][nt][0] * i0, o[mt][nt][1] * i0);
      if (r1 < T) store2<O>(out + int64_t(r1) * qd + c, o[mt][nt][2] * i1, o[mt][nt][3] * i1);
    }
  }
}

// The dynamic shared memory limit is raised per device the kernel runs on (the attribute belongs to
// the device's context); the set of devices only grows.
template <int HD, typename Q, typename O>
void launch_flash(const Q* q, int64_t T, int64_t pos0, const AttnShape& s, const bf16* kb, const bf16* vb,
                  float scale, O* out, cudaStream_t st) {
  const float scale_log2 = scale * 1.4426950408889634f;
  const size_t smem = size_t(kBQ2 + 4 * kBK) * (HD + 8) * sizeof(bf16);
  auto kern = flash_attn_q128<HD, Q, O>;
  static std::atomic<uint64_t> raised{0};
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (!bit || !(raised.load() & bit)) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised.fetch_or(bit);
  }
  dim3 grid(static_cast<unsigned>(s.num_heads), div_up(T, kBQ2));
  kern<<<grid, kThreads, smem, st>>>(q, int(T), int(pos0), s.num_heads, s.num_kv_heads, kb, vb, scale_log2, out);
  SEGPIPE_CUDA_LAUNCH_CHECK("flash_attn_q128");
}

}  // namespace

bool attention_flash_supported(const AttnShape& s) {
  return (s.head_dim == 64 || s.head_dim == 128) && s.num_kv_heads > 0 && s.num_heads % s.num_kv_heads == 0;
}

void attention_flash(const void* q, DType qt, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, const KernelPath& path, cudaStream_t st) {
  SEGPIPE_ASSERT_MSG(attention_flash_supported(s), "attention_flash: head_dim 64 or 128");
  SEGPIPE_ASSERT_MSG(pos0 + T < (int64_t(1) << 31), "attention_flash: sequence too long");
  if (T == 0) return;
  if (path.wgmma && s.head_dim == 128) {
    attention_flash_wgmma(q, qt, int(T), int(pos0), s.num_heads, s.num_kv_heads, k_bf16, v_bf16,
                          scale * 1.4426950408889634f, out, ot, st);
    return;
  }
  const bf16* kb = static_cast<const bf16*>(k_bf16);
  const bf16* vb = static_cast<const bf16*>(v_bf16);
  SEGPIPE_DISPATCH_FB(qt, Q, {
    SEGPIPE_DISPATCH_FB(ot, O, {
      const Q* qp = static_cast<const Q*>(q);
      if (s.head_dim == 128)
        launch_flash<128, Q, O>(qp, T, pos0, s, kb, vb, scale, static_cast<O*>(out), st);
      else
        launch_flash<64, Q, O>(qp, T, pos0, s, kb, vb, scale, static_cast<O*>(out), st);
    });
  });
}

void attention_flash(const float* q, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, const KernelPath& path, cudaStream_t st) {
  attention_flash(q, DType::F32, T, pos0, s, k_bf16, v_bf16, scale, out, ot, path, st);
}

}  // namespace segpipe::cuda
