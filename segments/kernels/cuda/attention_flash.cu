// Fused causal attention for long prefills (flash attention, forward only): per block 64 queries of
// one head; key/value tiles of 64 rows go through shared memory (cp.async, double buffered); the
// score and value products run on tensor cores (mma.sync m16n8k16, bf16 operands, fp32
// accumulation) with an online softmax in fp32 (exp2 with log2(e) folded into the scale), so the
// [T, T] score matrix never exists. Warp w owns query rows 16w..16w+15 of the tile; the score
// fragment of a 64-key tile becomes the A operand of the value product in registers.
//
// Two kernels. flash_attn_q128 (the default off Hopper): 128 queries per block, each of the 4 warps owns 32
// rows (two m16 tiles) so that every K and V fragment read from shared memory (ldmatrix) feeds two
// products: half the shared-memory reads per FLOP of flash_attn_kernel (64 queries, 16 rows a warp,
// K read with 32-bit loads), which was bound by them. Q goes to shared memory as bf16 once and is
// read per 16-dim step (it would take 64 registers a thread). Query tiles are dispatched heaviest
// first over all heads (blockIdx.x = head, so the heads of a KV group run side by side and share
// their K/V tiles in L2). flash_attn_kernel stays selectable (set_flash_variant(1)).
//
// Variants 4..6 (attention.cuh): the Hopper kernel of sm90a/attention_flash_wgmma.cu (wgmma,
// sm_90a) where it runs (compute capability 9.0, head_dim 128); flash_attn_q128 elsewhere.
#include <atomic>

#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/device_caps.h"
#include "segments/kernels/cuda/sm90a/attention_flash_wgmma.cuh"

namespace segpipe::cuda {

namespace {

constexpr int kBQ = 64, kBK = 64, kThreads = 128;

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

// Two and four consecutive query values as packed bf16: float32 queries rounded here (to nearest),
// bf16 ones (qk_norm_rope_kv_bf16, the same rounding done there) taken as they are.
__device__ __forceinline__ uint32_t load_q2(const float* p) {
  const float2 v = *reinterpret_cast<const float2*>(p);
  return pack_bf16(v.x, v.y);
}
__device__ __forceinline__ uint32_t load_q2(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }
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

template <int HD, typename Q, typename O>
__global__ void __launch_bounds__(kThreads) flash_attn_kernel(const Q* __restrict__ q, int T, int pos0, int nh,
                                                              int nkv, const bf16* __restrict__ kb,
                                                              const bf16* __restrict__ vb, float scale_log2,
                                                              O* __restrict__ out) {
  constexpr int STR = HD + 8;  // smem row stride (bf16): rows land on distinct banks
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);  // [2][kBK][STR]
  bf16* Vs = Ks + 2 * kBK * STR;                 // [2][kBK][STR]
  const int qt = gridDim.x - 1 - blockIdx.x;     // the longest (last) query tiles first
  const int h = blockIdx.y, g = h / (nh / nkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, tq = lane % 4;
  const int64_t qd = int64_t(nh) * HD, kvd = int64_t(nkv) * HD;
  const int n = pos0 + T;
  const int q0 = qt * kBQ;
  const int last_key = pos0 + min(T - 1, q0 + kBQ - 1);
  const int nkt = last_key / kBK + 1;

  auto load_tile = [&](int kt, int buf) {
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

  // This warp's query rows (relative to the prompt): r0 and r0 + 8 for this thread.
  const int r0 = q0 + warp * 16 + gr, r1 = r0 + 8;
  uint32_t qa[HD / 16][4];
  {
    const Q* qr0 = q + int64_t(min(r0, T - 1)) * qd + int64_t(h) * HD;
    const Q* qr1 = q + int64_t(min(r1, T - 1)) * qd + int64_t(h) * HD;
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
      const int c = ks * 16 + 2 * tq;
      qa[ks][0] = load_q2(qr0 + c);
      qa[ks][1] = load_q2(qr1 + c);
      qa[ks][2] = load_q2(qr0 + c + 8);
      qa[ks][3] = load_q2(qr1 + c + 8);
    }
  }
  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int p0 = pos0 + r0, p1 = pos0 + r1;  // absolute positions: keys <= p attend
  const int warp_first = pos0 + q0 + warp * 16;

  for (int kt = 0; kt < nkt; kt++) {
    if (kt + 1 < nkt)
      load_tile(kt + 1, (kt + 1) & 1);
    else
      cp_async_commit();  // an empty group keeps the wait count uniform
    cp_async_wait<1>();
    __syncthreads();
    const bf16* K = Ks + (kt & 1) * kBK * STR;
    const bf16* V = Vs + (kt & 1) * kBK * STR;
    float sc[kBK / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBK / 8; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++)
#pragma unroll
      for (int nt = 0; nt < kBK / 8; nt++) {
        const bf16* kr = K + (nt * 8 + gr) * STR + ks * 16 + 2 * tq;
        mma_bf16(sc[nt], qa[ks], *reinterpret_cast<const uint32_t*>(kr), *reinterpret_cast<const uint32_t*>(kr + 8));
      }
    const int kbase = kt * kBK;
    const bool mask = kbase + kBK - 1 > warp_first || kbase + kBK > n;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kBK / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float v = sc[nt][e] * scale_log2;
        if (mask) {
          const int key = kbase + nt * 8 + 2 * tq + (e & 1);
          const int p = e < 2 ? p0 : p1;
          if (key > p || key >= n) v = -INFINITY;
        }
        sc[nt][e] = v;
        if (e < 2)
          mx0 = fmaxf(mx0, v);
        else
          mx1 = fmaxf(mx1, v);
      }
    const OnlineMax r0 = online_max(m0, quad_max(mx0)), r1 = online_max(m1, quad_max(mx1));
    const float b0 = r0.base, b1 = r1.base, c0 = r0.scale, c1 = r1.scale;
    m0 = r0.m;
    m1 = r1.m;
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < kBK / 8; nt++) {
      sc[nt][0] = exp2f(sc[nt][0] - b0);
      sc[nt][1] = exp2f(sc[nt][1] - b0);
      sc[nt][2] = exp2f(sc[nt][2] - b1);
      sc[nt][3] = exp2f(sc[nt][3] - b1);
      s0 += sc[nt][0] + sc[nt][1];
      s1 += sc[nt][2] + sc[nt][3];
    }
    l0 = l0 * c0 + s0;
    l1 = l1 * c1 + s1;
#pragma unroll
    for (int i = 0; i < HD / 8; i++) {
      o[i][0] *= c0;
      o[i][1] *= c0;
      o[i][2] *= c1;
      o[i][3] *= c1;
    }
#pragma unroll
    for (int j = 0; j < kBK / 16; j++) {
      uint32_t a[4];
      a[0] = pack_bf16(sc[2 * j][0], sc[2 * j][1]);
      a[1] = pack_bf16(sc[2 * j][2], sc[2 * j][3]);
      a[2] = pack_bf16(sc[2 * j + 1][0], sc[2 * j + 1][1]);
      a[3] = pack_bf16(sc[2 * j + 1][2], sc[2 * j + 1][3]);
#pragma unroll
      for (int np = 0; np < HD / 16; np++) {
        uint32_t b[4];
        const int key = j * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        const int dim = np * 16 + (lane >> 4) * 8;
        ldmatrix_x4_trans(b, V + key * STR + dim);
        mma_bf16(o[2 * np], a, b[0], b[1]);
        mma_bf16(o[2 * np + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the load issued next iteration
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float i0 = 1.0f / l0, i1 = 1.0f / l1;
#pragma unroll
  for (int nt = 0; nt < HD / 8; nt++) {
    const int c = h * HD + nt * 8 + 2 * tq;
    if (r0 < T) store2<O>(out + int64_t(r0) * qd + c, o[nt][0] * i0, o[nt][1] * i0);
    if (r1 < T) store2<O>(out + int64_t(r1) * qd + c, o[nt][2] * i1, o[nt][3] * i1);
  }
}

constexpr int kBQ2 = 128;  // flash_attn_q128: queries per block (4 warps x 32 rows)

template <int HD, int MP, int KS, typename Q, typename O>
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
    // KS keys per softmax step (64: the whole tile; 32: half the score registers, 20 spilled bytes
    // instead of 92 at head_dim 128, but measured slower: 173 vs 168 us)
#pragma unroll
    for (int sub = 0; sub < kBK / KS; sub++) {
      const int kbase = kt * kBK + sub * KS;
      if (kbase <= warp_last) {  // warp-uniform: key steps wholly after the warp's rows are skipped
        const bf16* K = Ks + ((kt & 1) * kBK + sub * KS) * STR;
        const bf16* V = Vs + ((kt & 1) * kBK + sub * KS) * STR;
        const bool mask = kbase + KS - 1 > pos0 + wr0 || kbase + KS > n;
        uint32_t pa[2][KS / 16][4];  // probabilities as bf16 A fragments of the value product
        // MP m16 tiles per pass: 2 = each K fragment feeds both tiles; 1 = fewer live registers
#pragma unroll
        for (int pass = 0; pass < 2 / MP; pass++) {
          float sc[MP][KS / 8][4];
#pragma unroll
          for (int mm = 0; mm < MP; mm++)
#pragma unroll
            for (int nt = 0; nt < KS / 8; nt++) sc[mm][nt][0] = sc[mm][nt][1] = sc[mm][nt][2] = sc[mm][nt][3] = 0.f;
#pragma unroll
          for (int ks = 0; ks < HD / 16; ks++) {
            uint32_t qa[MP][4];
#pragma unroll
            for (int mm = 0; mm < MP; mm++) ldmatrix_x4(qa[mm], Qw + (pass * MP + mm) * 16 * STR + ks * 16);
#pragma unroll
            for (int np = 0; np < KS / 16; np++) {
              // keys np*16 + 0..7 (dims +0 / +8), then keys np*16 + 8..15: b0/b1 of two n8 tiles
              uint32_t kf[4];
              ldmatrix_x4(kf, K + (np * 16 + (lane & 7) + (lane >> 4) * 8) * STR + ks * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
              for (int mm = 0; mm < MP; mm++) {
                mma_bf16(sc[mm][2 * np], qa[mm], kf[0], kf[1]);
                mma_bf16(sc[mm][2 * np + 1], qa[mm], kf[2], kf[3]);
              }
            }
          }
#pragma unroll
          for (int mm = 0; mm < MP; mm++) {
            const int mt = pass * MP + mm;
            const int p0 = pos0 + wr0 + mt * 16 + gr, p1 = p0 + 8;  // absolute positions: keys <= p attend
            float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < KS / 8; nt++)
#pragma unroll
              for (int e = 0; e < 4; e++) {
                float v = sc[mm][nt][e] * scale_log2;
                if (mask) {
                  const int key = kbase + nt * 8 + 2 * tq + (e & 1);
                  const int p = e < 2 ? p0 : p1;
                  if (key > p || key >= n) v = -INFINITY;
                }
                sc[mm][nt][e] = v;
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
            for (int nt = 0; nt < KS / 8; nt++) {
              sc[mm][nt][0] = exp2f(sc[mm][nt][0] - b0);
              sc[mm][nt][1] = exp2f(sc[mm][nt][1] - b0);
              sc[mm][nt][2] = exp2f(sc[mm][nt][2] - b1);
              sc[mm][nt][3] = exp2f(sc[mm][nt][3] - b1);
              s0 += sc[mm][nt][0] + sc[mm][nt][1];
              s1 += sc[mm][nt][2] + sc[mm][nt][3];
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
            for (int j = 0; j < KS / 16; j++) {
              pa[mt][j][0] = pack_bf16(sc[mm][2 * j][0], sc[mm][2 * j][1]);
              pa[mt][j][1] = pack_bf16(sc[mm][2 * j][2], sc[mm][2 * j][3]);
              pa[mt][j][2] = pack_bf16(sc[mm][2 * j + 1][0], sc[mm][2 * j + 1][1]);
              pa[mt][j][3] = pack_bf16(sc[mm][2 * j + 1][2], sc[mm][2 * j + 1][3]);
            }
          }
        }
#pragma unroll
        for (int j = 0; j < KS / 16; j++)
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

template <int HD, typename Q, typename O>
void launch_flash(const Q* q, int64_t T, int64_t pos0, const AttnShape& s, const bf16* kb, const bf16* vb,
                  float scale, O* out, int variant, cudaStream_t st) {
  const float scale_log2 = scale * 1.4426950408889634f;
  if (variant == 1) {
    const size_t smem = size_t(4) * kBK * (HD + 8) * sizeof(bf16);
    static bool raised = false;
    if (!raised) {
      SEGPIPE_CUDA_CHECK(
          cudaFuncSetAttribute(flash_attn_kernel<HD, Q, O>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
      raised = true;
    }
    dim3 grid(div_up(T, kBQ), static_cast<unsigned>(s.num_heads));
    flash_attn_kernel<HD, Q, O><<<grid, kThreads, smem, st>>>(q, int(T), int(pos0), s.num_heads, s.num_kv_heads, kb, vb,
                                                           scale_log2, out);
    SEGPIPE_CUDA_LAUNCH_CHECK("flash_attn_kernel");
    return;
  }
  const size_t smem = size_t(kBQ2 + 4 * kBK) * (HD + 8) * sizeof(bf16);
  auto kern = variant == 2 ? flash_attn_q128<HD, 2, 32, Q, O> : variant == 3 ? flash_attn_q128<HD, 1, 64, Q, O>
                                                                              : flash_attn_q128<HD, 2, 64, Q, O>;
  static bool raised[4] = {false, false, false, false};
  if (!raised[variant & 3]) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised[variant & 3] = true;
  }
  dim3 grid(static_cast<unsigned>(s.num_heads), div_up(T, kBQ2));
  kern<<<grid, kThreads, smem, st>>>(q, int(T), int(pos0), s.num_heads, s.num_kv_heads, kb, vb, scale_log2, out);
  SEGPIPE_CUDA_LAUNCH_CHECK("flash_attn_q128");
}

// The wgmma kernel at 64-key tiles, two CTAs an SM (variant 6): 130 against 172 us for variant 0 at
// T = 2048 on an H200 (32/4 heads, head_dim 128); variant 0 where it does not run.
std::atomic<int> g_flash_variant{6};

}  // namespace

void set_flash_variant(int v) {
  SEGPIPE_ASSERT_MSG(v >= 0 && v < kFlashVariants, "flash attention variant out of range");
  g_flash_variant.store(v);
}
int flash_variant() { return g_flash_variant.load(); }

bool attention_flash_supported(const AttnShape& s) {
  return (s.head_dim == 64 || s.head_dim == 128) && s.num_kv_heads > 0 && s.num_heads % s.num_kv_heads == 0;
}

void attention_flash(const void* q, DType qt, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, cudaStream_t st) {
  SEGPIPE_ASSERT_MSG(attention_flash_supported(s), "attention_flash: head_dim 64 or 128");
  SEGPIPE_ASSERT_MSG(pos0 + T < (int64_t(1) << 31), "attention_flash: sequence too long");
  if (T == 0) return;
  const bf16* kb = static_cast<const bf16*>(k_bf16);
  const bf16* vb = static_cast<const bf16*>(v_bf16);
  int variant = flash_variant();
  if (variant >= kFlashWgmmaVariant0) {
    if (s.head_dim == 128 && current_device_is_sm90()) {
      attention_flash_wgmma(q, qt, int(T), int(pos0), s.num_heads, s.num_kv_heads, k_bf16, v_bf16,
                            scale * 1.4426950408889634f, out, ot, variant - kFlashWgmmaVariant0, st);
      return;
    }
    variant = 0;  // the mma.sync kernel elsewhere (head_dim 64, devices other than compute capability 9.0)
  }
  SEGPIPE_DISPATCH_FB(qt, Q, {
    SEGPIPE_DISPATCH_FB(ot, O, {
      const Q* qp = static_cast<const Q*>(q);
      if (s.head_dim == 128)
        launch_flash<128, Q, O>(qp, T, pos0, s, kb, vb, scale, static_cast<O*>(out), variant, st);
      else
        launch_flash<64, Q, O>(qp, T, pos0, s, kb, vb, scale, static_cast<O*>(out), variant, st);
    });
  });
}

void attention_flash(const float* q, int64_t T, int64_t pos0, const AttnShape& s, const void* k_bf16,
                     const void* v_bf16, float scale, void* out, DType ot, cudaStream_t st) {
  attention_flash(q, DType::F32, T, pos0, s, k_bf16, v_bf16, scale, out, ot, st);
}

}  // namespace segpipe::cuda
