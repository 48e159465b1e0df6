// The grouped expert GEMMs of moe_grouped.cuh on Hopper's warpgroup MMA (wgmma), for sm_90a.
//
// The same tiles, grid order, load path and epilogues as moe_grouped.cu's mma.sync kernel (see
// there and moe_grouped_impl.cuh) in variant 0: 128 x 128 tiles, K in steps of 64 through a
// 3-stage cp.async pipeline, 96 KB of shared memory, two CTAs per SM; variants 1 and 2 take 128 x
// 256 tiles (Cfg below lists them). The stage layout (rows of 128 bytes, 16-byte
// chunk c of row r at position c ^ (r & 7), 8-row groups 1024 bytes apart, each operand tile
// 1024-byte aligned) is exactly wgmma's 128-byte swizzle for K-major operands, so the tensor cores
// read the tiles that cp.async wrote without any reshuffle. The 8 warps form two warpgroups; each
// multiplies its 64 rows of A by the 128 (256) rows of B (m64n128k16 or m64n256k16, 4 per K step)
// into 64 (128) fp32 accumulators a thread, laid out as mma.sync's m16n8 fragments repeated along N: the SwiGLU and
// scatter epilogues keep their shape. A warpgroup whose 64 rows are all past the tile's rows (the
// second half of a last, short tile) skips its MMAs.
//
// Ordering per K step: cp.async.wait_group (this thread's copies of the stage landed), then
// fence.proxy.async (those generic-proxy writes made visible to the async proxy that wgmma reads
// through), then the block barrier (every thread's copies, and every warpgroup done with the stage
// the next load refills: each waited for its MMAs at the end of the previous step, or, with the
// MMAs in flight, of the step before).
#include <cuda.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/moe_grouped_impl.cuh"
#include "segments/kernels/cuda/sm90a/wgmma.cuh"

namespace segpipe::cuda::grouped_detail {

namespace {

using namespace sm90a;

// The variants (set_moe_wgmma_variant):
//  0: 128 x 128 tiles, 3 stages, loads 2 steps ahead, MMAs waited each step, 2 CTAs an SM (grouped2).
//  1: 128 x 256 tiles (m64n256k16 per warpgroup): every gathered A tile is read by half as many
//     N-tile CTAs (gate_up 6, down 8), the L2 traffic that bounds variant 0; 4 stages (192 KB), loads
//     3 steps ahead, MMAs waited each step, one CTA an SM.
//  2: variant 1 with the MMAs of step kt left in flight across the next barrier (wait_group 1), loads
//     2 steps ahead.
//  3: variant 2 with split tails: a tile of <= 64 rows (the last of an expert whose remainder is
//     <= 64; the tile table is unchanged, the row count tells) is computed by both warpgroups on the
//     same 64 rows, each m64n128k16 over half the columns, instead of a 128-row MMA half on
//     zero-filled rows: such a tile costs half the tensor-core time. Per element the same k16
//     MMAs in the same order, only the instruction's N differs.
//  4: variant 0 with split tails (each warpgroup m64n64k16 over half the 128 columns).
//  5: variant 3 with merged tails: an expert's remainder of <= 64 rows joins its last 128-row tile
//     (the grouping makes one tile of up to 192 rows: moe_grouped_tile_count), so the tail no longer
//     streams the expert's weights through L2 again; the weight tiles, not the MMAs, are what
//     bounds the kernels (L2 to SM traffic). Rows 128..191 are a third m64 block, each warpgroup
//     m64n128k16 over its half of the columns beside its m64n256k16 (192 accumulators a thread);
//     stages of 192 + 256 rows (56 KB, 4 of them: 225 KB).
//  6, 7: wgmma_ws_kernel below (warp-specialized); 7, the default, is variant 5's gate_up with 6's down.
// Each: kBN tile columns (B rows), kSt stages, loads kDist steps ahead, kWait1: the MMAs of a step
// stay in flight until the next step's end, kMinBlocks CTAs an SM, kSplit: split tails as in 3,
// kMerge: merged tails as in 5.
template <int kBN_, int kSt, int kDist, bool kWait1, int kMinBlocks, bool kSplit = false, bool kMerge = false>
struct Cfg {
  static constexpr int BN = kBN_, St = kSt, Dist = kDist, MinBlocks = kMinBlocks;
  static constexpr bool Wait1 = kWait1, Split = kSplit, Merge = kMerge;
  static constexpr int AM = kMerge ? kBM + 64 : kBM;  // A rows of a stage
  static constexpr int StageElems = (AM + BN) * kBK;
  static constexpr int Smem = St * StageElems * int(sizeof(uint16_t)) + 1024;  // + the alignment slack
  // The stage refilled at step kt held step kt + kDist - kSt; its MMAs must have been waited for
  // before step kt's barrier: kt - 1 (waited at once) or kt - 2 (wait_group 1 at step kt - 1).
  static_assert(kWait1 ? kDist <= kSt - 2 : kDist <= kSt - 1, "a stage refilled while MMAs read it");
  static_assert(kDist >= 1 && BN % 32 == 0 && (BN == 128 || BN == 256), "tile shape");
  static_assert(Smem <= 227 * 1024 && (kMinBlocks == 1 || kMinBlocks * Smem <= 228 * 1024), "shared memory");
};
using CfgV0 = Cfg<128, kStages, kStages - 1, false, 2>;
using CfgV1 = Cfg<256, 4, 3, false, 1>;
using CfgV2 = Cfg<256, 4, 2, true, 1>;
using CfgV3 = Cfg<256, 4, 2, true, 1, true>;
using CfgV4 = Cfg<128, kStages, kStages - 1, false, 2, true>;
using CfgV5 = Cfg<256, 4, 2, true, 1, true, true>;

// The epilogue of one accumulator array of a warpgroup: NA = NW / 2 accumulators a thread for its
// m64 x NW block at tile rows arow.., columns bcol... Accumulator i = 4 * ni + 2 * h + c is row
// arow + wwarp*16 + lane/4 + 8h, column bcol + ni*8 + 2*(lane%4) + c (ni < NW / 8); wwarp: the
// warp's index in its warpgroup.
template <bool kGateUp, int BN, int NA>
__device__ __forceinline__ void tile_epilogue(const GemmArgs& p, const Workspace& ws, const float (&acc)[NA], int arow,
                                              int bcol, int rows, int row0, int nt, int wwarp, int lane) {
  constexpr int NW = 2 * NA;
  const int g = lane / 4, tq = lane % 4;
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int r = arow + wwarp * 16 + g + 8 * h;
    if (r >= rows) continue;
    if (kGateUp) {
      // Column n of the tile is B row n: gate for n % 32 < 16, else up, act column
      // nt*BN/2 + (n/32)*16 + n%16: gate ni = 4q + c' pairs with up ni = 4q + c' + 2 (bcol is
      // a multiple of 32).
      bf16* out = p.act + int64_t(row0 + r) * p.N;
#pragma unroll
      for (int q = 0; q < NW / 32; q++)
#pragma unroll
        for (int c2 = 0; c2 < 2; c2++) {
          const int j = nt * (BN / 2) + (bcol / 32 + q) * 16 + c2 * 8 + 2 * tq;
          if (j >= p.N) continue;  // p.N is even: j + 1 < p.N as well
          const int gi = 4 * (4 * q + c2) + 2 * h, ui = gi + 8;
          const float g0 = acc[gi], g1 = acc[gi + 1], u0 = acc[ui], u1 = acc[ui + 1];
          // swiglu.cu's formula, in fp32 from the accumulators
          const float v0 = __fmul_rn(g0 / (1.0f + expf(-g0)), u0), v1 = __fmul_rn(g1 / (1.0f + expf(-g1)), u1);
          *reinterpret_cast<__nv_bfloat162*>(out + j) = __floats2bfloat162_rn(v0, v1);
        }
    } else {
      const int s = ws.perm[row0 + r];
      const float wt = p.weights[s];
      bf16* out = p.slots + int64_t(s) * p.N;
#pragma unroll
      for (int ni = 0; ni < NW / 8; ni++) {
        const int c = nt * BN + bcol + ni * 8 + 2 * tq;
        if (c >= p.N) continue;
        *reinterpret_cast<__nv_bfloat162*>(out + c) =
            __floats2bfloat162_rn(__fmul_rn(wt, acc[4 * ni + 2 * h]), __fmul_rn(wt, acc[4 * ni + 2 * h + 1]));
      }
    }
  }
}

template <bool kGateUp, class C>
__global__ void __launch_bounds__(kThreads, C::MinBlocks) wgmma_gemm_kernel(const GemmArgs p) {
  if constexpr (kHaveWgmma) {
    constexpr int BN = C::BN, kBRows = BN / 32;  // B rows a thread loads per stage
    extern __shared__ unsigned char smem_raw[];
    // wgmma's 128-byte swizzle is a function of the address bits: the tiles must be 1024-byte aligned.
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
    bf16* sm = reinterpret_cast<bf16*>(smem_raw + ((1024 - (base & 1023)) & 1023));
    const Workspace ws = carve(const_cast<int32_t*>(p.ws), p.S, p.n);
    const int t = int(blockIdx.x) / p.n_tiles_n, nt = int(blockIdx.x) % p.n_tiles_n;
    if (t >= ws.tile_first[p.n]) return;  // past the real tile count
    const int b = ws.tile_expert[t];
    const int row0 = ws.off[b] + (t - ws.tile_first[b]) * kBM;
    // The last tile of an expert holds the rest of its rows (up to 192 in a merged-tail grouping).
    const int rows = t + 1 == ws.tile_first[b + 1] ? ws.off[b + 1] - row0 : kBM;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wg = warp / 4;  // warpgroup: rows wg * 64 .. + 63 of the tile
    const int K = p.K;
    const int ktiles = (K + kBK - 1) / kBK;

    // This thread's load rows (A: tid / 8 + 32 i, i < AM / 32; B: tid / 8 + 32 i, i < BN / 32) and chunk
    // column (tid % 8); null: a masked row (zero-filled, nothing read). As moe_grouped.cu.
    const int lrow = tid / 8, lc = tid % 8;
    const bf16* wexp = p.w + int64_t(b) * p.w_stride;
    constexpr int kARows = C::AM / 32;  // A rows a thread loads per stage
    const bf16* a_src[kARows];
    const bf16* b_src[kBRows];
#pragma unroll
    for (int i = 0; i < kARows; i++) {
      const int r = lrow + 32 * i;
      if (kGateUp)
        a_src[i] = r < rows ? p.a + int64_t(ws.perm[row0 + r] / p.k) * K : nullptr;
      else
        a_src[i] = r < rows ? p.a + int64_t(row0 + r) * K : nullptr;
    }
#pragma unroll
    for (int i = 0; i < kBRows; i++) {
      const int r = lrow + 32 * i;
      const int wrow = b_weight_row(kGateUp, r, nt, BN, p.N);
      b_src[i] = wrow >= 0 ? wexp + int64_t(wrow) * K : nullptr;
    }

    auto load_stage = [&](int stage, int kt) {
      bf16* sa = sm + stage * C::StageElems;
      bf16* sb = sa + C::AM * kBK;
      const int col = kt * kBK + lc * 8;
      const bool kin = col < K;  // K is a multiple of 8: a chunk is wholly inside or outside
#pragma unroll
      for (int i = 0; i < kARows; i++) {
        const int r = lrow + 32 * i;
        const bool av = kin && a_src[i] != nullptr;
        cp_async16(sa + swz(r, lc), av ? a_src[i] + col : p.a, av ? 16 : 0);
      }
#pragma unroll
      for (int i = 0; i < kBRows; i++) {
        const int r = lrow + 32 * i;
        const bool bv = kin && b_src[i] != nullptr;
        cp_async16(sb + swz(r, lc), bv ? b_src[i] + col : p.w, bv ? 16 : 0);
      }
    };

    auto epilogue = [&](const auto& acc, int arow, int bcol) {
      tile_epilogue<kGateUp, BN>(p, ws, acc, arow, bcol, rows, row0, nt, warp % 4, lane);
    };

    // The main loop and epilogue of one tile shape. kShape 0: warpgroup wg on rows wg*64 .., all BN
    // columns; 1 (split tail, <= 64 rows): both warpgroups on rows 0..63, warpgroup wg on columns
    // wg*BN/2 ..; 2 (merged tail, > 128 rows): shape 0 plus rows 128..191, warpgroup wg on columns
    // wg*BN/2 .. (a second accumulator array). Instantiated per shape behind a CTA-uniform branch
    // outside the loop, so that no branch sits between the MMAs in flight (ptxas serializes wgmma
    // there: C7518).
    auto run = [&](auto shape_tag) {
      constexpr int kShape = decltype(shape_tag)::value;
      constexpr int NW = kShape == 1 ? BN / 2 : BN;  // columns of a warpgroup's (first) MMAs
      const int arow = kShape == 1 ? 0 : wg * 64;    // first A row (tile row) of this warpgroup
      const int bcol = kShape == 1 ? wg * NW : 0;    // first B row (tile column) of this warpgroup
      float acc[NW / 2];
      float acc2[kShape == 2 ? BN / 4 : 1];  // shape 2: rows 128..191, columns wg*BN/2 ..
#pragma unroll
      for (int i = 0; i < NW / 2; i++) acc[i] = 0.f;
#pragma unroll
      for (int i = 0; i < (kShape == 2 ? BN / 4 : 1); i++) acc2[i] = 0.f;
      const bool active = arow < rows;  // warpgroup-uniform

#pragma unroll
      for (int st = 0; st < C::Dist; st++) {
        if (st < ktiles) load_stage(st, st);
        cp_async_commit();  // empty groups keep the wait count uniform
      }
      for (int kt = 0; kt < ktiles; kt++) {
        // Groups committed: Dist + kt; step kt's is complete when Dist - 1 are pending. Then
        // fence.proxy.async (this thread's generic-proxy writes visible to wgmma's async proxy), then
        // the barrier (every thread's copies; every warpgroup done with the stage refilled next).
        cp_async_wait<C::Dist - 1>();
        fence_proxy_async();
        __syncthreads();
        if (kt + C::Dist < ktiles) load_stage((kt + C::Dist) % C::St, kt + C::Dist);
        cp_async_commit();
        // With the MMAs in flight across steps every warpgroup issues them (on zero-filled rows past
        // the tile's): behind a branch, ptxas serializes wgmma (C7518) and the overlap is lost.
        if (C::Wait1 || active) {
          const bf16* st_a = sm + (kt % C::St) * C::StageElems;
          const bf16* st_b = st_a + C::AM * kBK;
          const bf16* sa = st_a + arow * kBK;
          const bf16* sb = st_b + bcol * kBK;
          wgmma_fence();
#pragma unroll
          for (int ks = 0; ks < kBK / 16; ks++)  // 16 columns = 32 bytes further along the swizzled rows
            wgmma_tile<NW>(acc, smem_desc(sa + ks * 16), smem_desc(sb + ks * 16));
          if constexpr (kShape == 2) {
            const bf16* sa2 = st_a + 2 * 64 * kBK;
            const bf16* sb2 = st_b + wg * (BN / 2) * kBK;
#pragma unroll
            for (int ks = 0; ks < kBK / 16; ks++)
              wgmma_tile<BN / 2>(acc2, smem_desc(sa2 + ks * 16), smem_desc(sb2 + ks * 16));
          }
          wgmma_commit();
          if constexpr (C::Wait1)
            wgmma_wait1();
          else
            wgmma_wait0();
        }
      }
      if constexpr (C::Wait1) wgmma_wait0();
      cp_async_wait<0>();  // only empty groups can be pending; none outlives the block

      epilogue(acc, arow, bcol);
      if constexpr (kShape == 2) epilogue(acc2, 2 * 64, wg * (BN / 2));
    };
    if constexpr (C::Merge) {
      if (rows > kBM) {  // CTA-uniform
        run(std::integral_constant<int, 2>{});
        return;
      }
    }
    if constexpr (C::Split) {
      if (rows <= 64) {
        run(std::integral_constant<int, 1>{});
        return;
      }
    }
    run(std::integral_constant<int, 0>{});
  } else {
    __trap();  // no sm_90a code: the host never launches this (moe_grouped_kernel_in_use)
  }
}

// Variant 6: warp-specialized. Variant 5's tiles (128 x 256, merged tails of up to 192 rows, split
// tails of <= 64 rows) and MMAs, but one producer warpgroup fills a ring of kWsSt stages that the two
// consumer warpgroups drain, guarded by mbarriers instead of block barriers: full[s] (128 producer
// arrivals + the weight tile's bytes) and empty[s] (one arrival per consumer warp once its MMAs that
// read stage s completed). The weight tile comes by TMA (3-D tensor map [experts][B rows][K],
// 128-byte swizzle: the layout cp.async wrote in the other variants, rows past the expert's zero);
// the gathered A rows by the producer's cp.async (TMA cannot gather). A producer thread marks its
// cp.async copies of step g landed only kWsLag steps later (cp.async.wait_group kWsLag, then
// fence.proxy.async, then its arrival on full), the same ordering as the other variants' barrier,
// so that its copies of the next steps stay in flight. Persistent: a grid of at most one CTA an SM
// walks the (row tile, N tile) pairs in variant 5's order, so the producer loads the next tile while
// the consumers run the epilogue of the last. Registers: the producer drops to kWsProdRegs, the
// consumers (192 accumulators a thread on a merged tail) rise to kWsConsRegs (setmaxnreg).
constexpr int kWsSt = 4, kWsLag = 2, kWsThreads = 384, kWsProdRegs = 40, kWsConsRegs = 232;
constexpr int kWsAM = kBM + 64, kWsBN = 256;
constexpr int kWsGather = 96;  // gate_up's gathering threads (producer warps 1..3)
static_assert(kWsAM % (kWsGather / 8) == 0, "gather rows");
constexpr int kWsStageElems = (kWsAM + kWsBN) * kBK;
constexpr int kWsBarOff = kWsSt * kWsStageElems * int(sizeof(uint16_t));  // bytes from the aligned base
// + the barriers, the two row tables, the alignment slack
constexpr int kWsSmem = kWsBarOff + 2 * kWsSt * int(sizeof(uint64_t)) + 2 * kWsAM * int(sizeof(int)) + 1024;
constexpr uint32_t kWsBBytes = kWsBN * kBK * sizeof(uint16_t);  // TMA bytes of a weight tile
constexpr uint32_t kWsABytes = kWsAM * kBK * sizeof(uint16_t);  // TMA bytes of an A tile (down)
// A producer thread may wait on empty[g - kWsSt] only after arriving on full[g - 1 - kWsLag]...: the
// consumers free stage g - kWsSt at step g - kWsSt + 1, which needs full[g - kWsSt + 1].
static_assert(kWsLag <= kWsSt - 2, "producer lag deadlocks the ring");
static_assert(kWsSmem <= 227 * 1024, "shared memory");
static_assert(kWsProdRegs * 128 + kWsConsRegs * 256 <= 65536, "register file");
static_assert(kWsAM % 16 == 0 && kWsBN == 256, "tile shape");

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(smem_u32(b)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(b)), "r"(parity)
        : "memory");
  } while (!done);
}
// B rows [c1, c1 + box rows) of expert c2, K columns [c0, c0 + 64) into dst; completes bytes on b.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* b) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(b))
      : "memory");
}
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* b) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(b))
      : "memory");
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// The tile of work item w (variant 5's order: the N tiles of a row tile are consecutive, so they
// share the gathered A rows in L2).
struct WsTile {
  int b, row0, rows, nt;
};
__device__ __forceinline__ WsTile ws_tile(const Workspace& ws, int w, int n_tiles_n) {
  WsTile x;
  const int t = w / n_tiles_n;
  x.nt = w % n_tiles_n;
  x.b = ws.tile_expert[t];
  x.row0 = ws.off[x.b] + (t - ws.tile_first[x.b]) * kBM;
  x.rows = t + 1 == ws.tile_first[x.b + 1] ? ws.off[x.b + 1] - x.row0 : kBM;
  return x;
}

// map: the bank's weights as [n][B rows][K] (gate_up: 2N rows, boxes of 16 rows; down: N rows,
// boxes of 256 rows); amap (down only): act as [S][K], boxes of kWsAM rows.
template <bool kGateUp>
__global__ void __launch_bounds__(kWsThreads, 1) wgmma_ws_kernel(const __grid_constant__ GemmArgs p,
                                                                 const __grid_constant__ CUtensorMap map,
                                                                 const __grid_constant__ CUtensorMap amap) {
  if constexpr (kHaveWgmma) {
    extern __shared__ unsigned char smem_raw[];
    unsigned char* sm_al = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    bf16* sm = reinterpret_cast<bf16*>(sm_al);
    uint64_t* full = reinterpret_cast<uint64_t*>(sm_al + kWsBarOff);
    uint64_t* empty = full + kWsSt;
    int* row_tab = reinterpret_cast<int*>(empty + kWsSt);  // [2][kWsAM]
    const Workspace ws = carve(const_cast<int32_t*>(p.ws), p.S, p.n);
    const int n_work = ws.tile_first[p.n] * p.n_tiles_n;
    const int K = p.K, ktiles = (K + kBK - 1) / kBK;
    const int tid = threadIdx.x;
    if (tid == 0) {
      for (int s = 0; s < kWsSt; s++) {
        // gate_up: the gathering threads + thread 0's expect_tx arrival; down: thread 0's
        mbar_init(&full[s], kGateUp ? kWsGather + 1 : 1);
        mbar_init(&empty[s], 8);       // the consumer warps
      }
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");  // visible to the TMA unit
    }
    __syncthreads();

    if (tid < 128) {
      setmaxnreg_dec<kWsProdRegs>();
      uint32_t g = 0;  // steps issued, over all tiles of this CTA
      if constexpr (!kGateUp) {
        // down: A is the grouped act rows, contiguous: one thread loads A and B by TMA (rows past
        // the tile's are the next expert's or zero: their outputs are never stored).
        if (tid == 0) {
          for (int w = int(blockIdx.x); w < n_work; w += int(gridDim.x)) {
            const WsTile x = ws_tile(ws, w, p.n_tiles_n);
            for (int kt = 0; kt < ktiles; kt++, g++) {
              const int s = int(g % kWsSt);
              if (g >= uint32_t(kWsSt)) mbar_wait(&empty[s], ((g / kWsSt) + 1) & 1);
              bf16* sa = sm + s * kWsStageElems;
              mbar_arrive_expect_tx(&full[s], kWsABytes + kWsBBytes);
              tma_load_2d(sa, &amap, kt * kBK, x.row0, &full[s]);
              tma_load_3d(sa + kWsAM * kBK, &map, kt * kBK, x.nt * kWsBN, x.b, &full[s]);
            }
          }
        }
      } else {
        // gate_up: thread 0 loads the weight tiles by TMA, running ahead of the gather (it waits only
        // for free stages); warps 1..3 gather A: thread tid gathers 16-byte chunk (tid - 32) % 8 of
        // A rows (tid - 32) / 8 + 12 i by cp.async. The tile's source rows (token ids) are looked up
        // once a tile into a shared table (two, alternating: a barrier of the gathering warps a tile
        // keeps them within a tile of each other).
        if (tid == 0) {
          for (int w = int(blockIdx.x); w < n_work; w += int(gridDim.x)) {
            const WsTile x = ws_tile(ws, w, p.n_tiles_n);
            for (int kt = 0; kt < ktiles; kt++, g++) {
              const int s = int(g % kWsSt);
              if (g >= uint32_t(kWsSt)) mbar_wait(&empty[s], ((g / kWsSt) + 1) & 1);
              bf16* sb = sm + s * kWsStageElems + kWsAM * kBK;
              mbar_arrive_expect_tx(&full[s], kWsBBytes);
              // B rows in groups of 32: 16 gate rows (j..j+15), then the up rows (N + j..) of the
              // same act columns. Gate rows past N read up rows: their act columns are never stored.
#pragma unroll
              for (int q = 0; q < kWsBN / 32; q++) {
                const int j = x.nt * (kWsBN / 2) + q * 16;
                tma_load_3d(sb + (q * 32) * kBK, &map, kt * kBK, j, x.b, &full[s]);
                tma_load_3d(sb + (q * 32 + 16) * kBK, &map, kt * kBK, p.N + j, x.b, &full[s]);
              }
            }
          }
        } else if (tid >= 32) {
          const int lrow = (tid - 32) / 8, lc = tid % 8;
          int tile_no = 0;
          for (int w = int(blockIdx.x); w < n_work; w += int(gridDim.x), tile_no++) {
            const WsTile x = ws_tile(ws, w, p.n_tiles_n);
            int* tab = row_tab + (tile_no & 1) * kWsAM;
            for (int r = tid - 32; r < kWsAM; r += kWsGather)
              tab[r] = r < x.rows ? ws.perm[x.row0 + r] / p.k : -1;
            asm volatile("bar.sync 1, %0;\n" ::"n"(kWsGather) : "memory");
            for (int kt = 0; kt < ktiles; kt++, g++) {
              const int s = int(g % kWsSt);
              if (g >= uint32_t(kWsSt)) mbar_wait(&empty[s], ((g / kWsSt) + 1) & 1);
              bf16* sa = sm + s * kWsStageElems;
              const int col = kt * kBK + lc * 8;
              const bool kin = col < K;  // K is a multiple of 8: a chunk is wholly inside or outside
#pragma unroll 4
              for (int i = 0; i < kWsAM / (kWsGather / 8); i++) {
                const int r = lrow + (kWsGather / 8) * i;
                const int src_row = tab[r];
                const bool v = kin && src_row >= 0;
                cp_async16(sa + swz(r, lc), v ? p.a + int64_t(src_row) * K + col : p.a, v ? 16 : 0);
              }
              cp_async_commit();
              if (g >= uint32_t(kWsLag)) {
                cp_async_wait<kWsLag>();  // step g - kWsLag's copies of this thread landed
                fence_proxy_async();
                mbar_arrive(&full[(g - kWsLag) % kWsSt]);
              }
            }
          }
          cp_async_wait<0>();
          fence_proxy_async();
          for (uint32_t q = g >= uint32_t(kWsLag) ? g - kWsLag : 0; q < g; q++) mbar_arrive(&full[q % kWsSt]);
        }
      }
    } else {
      setmaxnreg_inc<kWsConsRegs>();
      const int ctid = tid - 128, warp = ctid / 32, lane = ctid % 32, wg = warp / 4;
      uint32_t g = 0;  // steps consumed
      for (int w = int(blockIdx.x); w < n_work; w += int(gridDim.x)) {
        const WsTile x = ws_tile(ws, w, p.n_tiles_n);
        // Variant 5's shapes (kShape: 0 rows wg*64.., all columns; 1 <= 64 rows, columns split;
        // 2 > 128 rows, shape 0 plus rows 128..191 with columns split), behind a CTA-uniform branch
        // outside the K loop.
        auto run = [&](auto shape_tag) {
          constexpr int kShape = decltype(shape_tag)::value;
          constexpr int NW = kShape == 1 ? kWsBN / 2 : kWsBN;
          const int arow = kShape == 1 ? 0 : wg * 64;
          const int bcol = kShape == 1 ? wg * NW : 0;
          float acc[NW / 2];
          float acc2[kShape == 2 ? kWsBN / 4 : 1];
#pragma unroll
          for (int i = 0; i < NW / 2; i++) acc[i] = 0.f;
#pragma unroll
          for (int i = 0; i < (kShape == 2 ? kWsBN / 4 : 1); i++) acc2[i] = 0.f;
          for (int kt = 0; kt < ktiles; kt++, g++) {
            const int s = int(g % kWsSt);
            mbar_wait(&full[s], (g / kWsSt) & 1);
            const bf16* st_a = sm + s * kWsStageElems;
            const bf16* st_b = st_a + kWsAM * kBK;
            const bf16* sa = st_a + arow * kBK;
            const bf16* sb = st_b + bcol * kBK;
            wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < kBK / 16; ks++)
              wgmma_tile<NW>(acc, smem_desc(sa + ks * 16), smem_desc(sb + ks * 16));
            if constexpr (kShape == 2) {
              const bf16* sa2 = st_a + 2 * 64 * kBK;
              const bf16* sb2 = st_b + wg * (kWsBN / 2) * kBK;
#pragma unroll
              for (int ks = 0; ks < kBK / 16; ks++)
                wgmma_tile<kWsBN / 2>(acc2, smem_desc(sa2 + ks * 16), smem_desc(sb2 + ks * 16));
            }
            wgmma_commit();
            wgmma_wait1();  // step kt - 1's MMAs done: its stage is free
            if (kt > 0 && lane == 0) mbar_arrive(&empty[(g - 1) % kWsSt]);
          }
          wgmma_wait0();
          if (lane == 0) mbar_arrive(&empty[(g - 1) % kWsSt]);
          tile_epilogue<kGateUp, kWsBN>(p, ws, acc, arow, bcol, x.rows, x.row0, x.nt, warp % 4, lane);
          if constexpr (kShape == 2)
            tile_epilogue<kGateUp, kWsBN>(p, ws, acc2, 2 * 64, wg * (kWsBN / 2), x.rows, x.row0, x.nt, warp % 4, lane);
        };
        if (x.rows > kBM)
          run(std::integral_constant<int, 2>{});
        else if (x.rows <= 64)
          run(std::integral_constant<int, 1>{});
        else
          run(std::integral_constant<int, 0>{});
      }
    }
  } else {
    __trap();  // no sm_90a code: the host never launches this (moe_grouped_kernel_in_use)
  }
}

template <bool kGateUp, class C>
void raise_smem_once() {
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (bit && (done.load() & bit)) return;
  SEGPIPE_CUDA_CHECK(
      cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp, C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::Smem));
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp, C>,
                                          cudaFuncAttributePreferredSharedMemoryCarveout,
                                          int(cudaSharedmemCarveoutMaxShared)));
  done.fetch_or(bit);
}

template <bool kGateUp, class C>
void launch(GemmArgs a, cudaStream_t s) {
  raise_smem_once<kGateUp, C>();
  // The N tiles of this variant's width (the caller's n_tiles_n counts 128-column tiles).
  a.n_tiles_n = int(kGateUp ? (int64_t(a.N) + C::BN / 2 - 1) / (C::BN / 2) : (int64_t(a.N) + C::BN - 1) / C::BN);
  const int64_t blocks = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(blocks < (int64_t(1) << 31), "grouped expert GEMM (wgmma): grid too large");
  wgmma_gemm_kernel<kGateUp, C><<<static_cast<unsigned>(blocks), kThreads, C::Smem, s>>>(a);
  SEGPIPE_CUDA_LAUNCH_CHECK("wgmma_gemm_kernel");
}

template <class C>
void launch_both(const GemmArgs& a, bool gate_up, cudaStream_t s) {
  gate_up ? launch<true, C>(a, s) : launch<false, C>(a, s);
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (the build links cudart only).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    SEGPIPE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    SEGPIPE_ASSERT_MSG(q == cudaDriverEntryPointSuccess && f != nullptr, "cuTensorMapEncodeTiled not found");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// The tensor map can describe the bank's weights: 16-byte aligned base and strides.
bool ws_supported(const GemmArgs& a) {
  return (reinterpret_cast<uintptr_t>(a.w) & 15) == 0 && (a.w_stride * 2) % 16 == 0 && a.K % 8 == 0 &&
         a.w_stride * 2 < (int64_t(1) << 40);
}

// The bank's weights as [n][B rows][K] bf16, boxes of 64 K columns (128 bytes: the swizzle span) by
// 16 (gate_up: a gate or up group) or 256 (down) rows. Encoded on the host at each launch (a few
// microseconds of host work, no device call; the map is a kernel argument, so a captured graph
// keeps its own copy).
// False where the driver refuses the shape (the caller takes variant 5 instead).
bool weight_map(const GemmArgs& a, bool gate_up, CUtensorMap& m) {
  const cuuint64_t dims[3] = {cuuint64_t(a.K), cuuint64_t(gate_up ? 2 * int64_t(a.N) : a.N), cuuint64_t(a.n)};
  const cuuint64_t strides[2] = {cuuint64_t(a.K) * 2, cuuint64_t(a.w_stride) * 2};  // bytes, dims 1 and 2
  const cuuint32_t box[3] = {cuuint32_t(kBK), cuuint32_t(gate_up ? 16 : kWsBN), 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  const CUresult r = tensor_map_encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<bf16*>(a.w), dims,
                                          strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// down's A: act [S][K] bf16, boxes of 64 K columns by kWsAM rows.
bool act_map(const GemmArgs& a, CUtensorMap& m) {
  if ((reinterpret_cast<uintptr_t>(a.a) & 15) != 0) return false;
  const cuuint64_t dims[2] = {cuuint64_t(a.K), cuuint64_t(a.S)};
  const cuuint64_t strides[1] = {cuuint64_t(a.K) * 2};
  const cuuint32_t box[2] = {cuuint32_t(kBK), cuuint32_t(kWsAM)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(a.a), dims,
                                          strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

template <bool kGateUp>
void launch_ws(GemmArgs a, cudaStream_t s) {
  CUtensorMap map, amap;
  std::memset(&amap, 0, sizeof amap);  // unused by gate_up
  if (!weight_map(a, kGateUp, map) || (!kGateUp && !act_map(a, amap))) {
    static std::atomic<bool> told{false};
    if (!told.exchange(true)) std::fprintf(stderr, "wgmma variant 6: no tensor map for this bank, variant 5 runs\n");
    return launch<kGateUp, CfgV5>(a, s);
  }
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (!bit || !(done.load() & bit)) {
    SEGPIPE_CUDA_CHECK(
        cudaFuncSetAttribute(wgmma_ws_kernel<kGateUp>, cudaFuncAttributeMaxDynamicSharedMemorySize, kWsSmem));
    done.fetch_or(bit);
  }
  int sms = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  a.n_tiles_n = int(kGateUp ? (int64_t(a.N) + kWsBN / 2 - 1) / (kWsBN / 2) : (int64_t(a.N) + kWsBN - 1) / kWsBN);
  const int64_t work = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(work < (int64_t(1) << 31), "grouped expert GEMM (wgmma ws): too many tiles");
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(work, sms));
  wgmma_ws_kernel<kGateUp><<<static_cast<unsigned>(blocks), kWsThreads, kWsSmem, s>>>(a, map, amap);
  SEGPIPE_CUDA_LAUNCH_CHECK("wgmma_ws_kernel");
}

// The process starts with the default variant; tests and benchmarks choose others with
// set_moe_wgmma_variant (the product reads no environment).
std::atomic<int> g_variant{kMoeWgmmaDefaultVariant};

}  // namespace

void launch_gemm_wgmma(const GemmArgs& a, bool gate_up, cudaStream_t s) {
  switch (g_variant.load()) {
    case 1:
      return launch_both<CfgV1>(a, gate_up, s);
    case 2:
      return launch_both<CfgV2>(a, gate_up, s);
    case 3:
      return launch_both<CfgV3>(a, gate_up, s);
    case 4:
      return launch_both<CfgV4>(a, gate_up, s);
    case 5:
      return launch_both<CfgV5>(a, gate_up, s);
    case 6:
      // A bank the tensor map cannot describe takes variant 5 (same tiles, same bits).
      if (!ws_supported(a)) return launch_both<CfgV5>(a, gate_up, s);
      return gate_up ? launch_ws<true>(a, s) : launch_ws<false>(a, s);
    case 7:
      // gate_up as variant 5 (its gathered A rows through cp.async by all 8 warps), down as 6.
      if (gate_up || !ws_supported(a)) return launch_both<CfgV5>(a, gate_up, s);
      return launch_ws<false>(a, s);
    default:
      return launch_both<CfgV0>(a, gate_up, s);
  }
}

}  // namespace segpipe::cuda::grouped_detail

namespace segpipe::cuda {

void set_moe_wgmma_variant(int v) {
  SEGPIPE_ASSERT_MSG(v >= 0 && v < kMoeWgmmaVariants, "wgmma grouped GEMM variant out of range");
  grouped_detail::g_variant.store(v);
}
int moe_wgmma_variant() { return grouped_detail::g_variant.load(); }
bool moe_wgmma_variant_merges_tails(int v) { return v >= 5; }

}  // namespace segpipe::cuda
