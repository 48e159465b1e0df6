// The grouped expert GEMMs of moe_grouped.cuh on Hopper's warpgroup MMA (wgmma), for sm_90a; the
// host launches them where the context's KernelPath has wgmma (compute capability 9.0).
//
// The grid order, load path and epilogues of moe_grouped.cu's mma.sync kernel (see there and
// moe_grouped_impl.cuh), with 128 x 256 tiles (Cfg below): every gathered A tile is read by half as
// many N-tile CTAs as with 128 columns, the L2 traffic that bounds these kernels. The stage layout
// (rows of 128 bytes, 16-byte chunk c of row r at position c ^ (r & 7), 8-row groups 1024 bytes
// apart, each operand tile 1024-byte aligned) is exactly wgmma's 128-byte swizzle for K-major
// operands, so the tensor cores read the tiles that cp.async (or TMA) wrote without any reshuffle.
// The 8 consumer warps form two warpgroups; each multiplies its 64 rows of A by the 256 rows of B
// (m64n256k16, 4 per K step) into 128 fp32 accumulators a thread, laid out as mma.sync's m16n8
// fragments repeated along N: the SwiGLU and scatter epilogues keep their shape. Tails: an expert's
// remainder of <= 64 rows joins its last 128-row tile (merged tails, moe_grouped_tile_count: tiles of
// up to 192 rows, so the tail does not stream the expert's weights through L2 again), and a tile of
// <= 64 rows (an expert with fewer rows) runs both warpgroups on the same rows, each over half the
// columns (split tails). Per element the same k16 MMAs in the same K order in every shape.
//
// gate_up: wgmma_gemm_kernel (A rows gathered through cp.async by all 8 warps). down:
// wgmma_ws_kernel (warp-specialized, A and the weight tiles by TMA), or wgmma_gemm_kernel where no
// tensor map describes the bank (the same bits). The other tile shapes and pipelines measured
// (128 x 128 tiles, MMAs waited every step, a warp-specialized gate_up) were slower and were removed
// on 2026-12-07; their figures are in docs/benchmarks-cuda.md.
//
// Ordering per K step: cp.async.wait_group (this thread's copies of the stage landed), then
// fence.proxy.async (those generic-proxy writes made visible to the async proxy that wgmma reads
// through), then the block barrier (every thread's copies, and every warpgroup done with the stage
// the next load refills: with the MMAs in flight, each waited for its MMAs of the step before).
#include <cuda.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/moe_grouped_impl.cuh"
#include "segments/kernels/cuda/sm90a/wgmma.cuh"

namespace segpipe::cuda::grouped_detail {

namespace {

using namespace sm90a;

// The tiles: BN tile columns (B rows), St stages, loads Dist steps ahead, the MMAs of a step left in
// flight until the next step's end (wait_group 1), one CTA an SM; AM A rows a stage (a merged tail:
// up to 192).
struct Cfg {
  static constexpr int BN = 256, St = 4, Dist = 2;
  static constexpr int AM = kBM + 64;
  static constexpr int StageElems = (AM + BN) * kBK;
  static constexpr int Smem = St * StageElems * int(sizeof(uint16_t)) + 1024;  // + the alignment slack
  // The stage refilled at step kt held step kt + Dist - St; its MMAs (waited at step kt - 1 with
  // wait_group 1) must be done before step kt's barrier.
  static_assert(Dist <= St - 2, "a stage refilled while MMAs read it");
  static_assert(Smem <= 227 * 1024, "shared memory");
};

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

template <bool kGateUp>
__global__ void __launch_bounds__(kThreads, 1) wgmma_gemm_kernel(const GemmArgs p) {
  if constexpr (kHaveWgmma) {
    using C = Cfg;
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
    // columns (rows past the tile's are zero-filled); 1 (split tail, <= 64 rows): both warpgroups on
    // rows 0..63, warpgroup wg on columns wg*BN/2 ..; 2 (merged tail, > 128 rows): shape 0 plus rows
    // 128..191, warpgroup wg on columns wg*BN/2 .. (a second accumulator array). Instantiated per shape behind a CTA-uniform branch
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
        wgmma_wait1();
      }
      wgmma_wait0();
      cp_async_wait<0>();  // only empty groups can be pending; none outlives the block

      epilogue(acc, arow, bcol);
      if constexpr (kShape == 2) epilogue(acc2, 2 * 64, wg * (BN / 2));
    };
    if (rows > kBM)  // CTA-uniform
      run(std::integral_constant<int, 2>{});
    else if (rows <= 64)
      run(std::integral_constant<int, 1>{});
    else
      run(std::integral_constant<int, 0>{});
  } else {
    __trap();  // no sm_90a code: the host launches this only where KernelPath::wgmma
  }
}

// down, warp-specialized: the tiles and MMAs above (128 x 256, merged tails of up to 192 rows, split
// tails of <= 64 rows), but one producer warpgroup fills a ring of kWsSt stages that the two consumer
// warpgroups drain, guarded by mbarriers instead of block barriers: full[s] (the producer thread's
// arrival + the A and weight tiles' bytes) and empty[s] (one arrival per consumer warp once its MMAs
// that read stage s completed). The A tile (the grouped act rows, contiguous: 2-D tensor map over
// act) and the weight tile (3-D tensor map [experts][B rows][K]) come by TMA, 128-byte swizzle: the
// layout cp.async writes in wgmma_gemm_kernel; one thread drives the whole pipeline. Persistent: a
// grid of at most one CTA an SM walks the (row tile, N tile) pairs in wgmma_gemm_kernel's order, so
// the producer loads the next tile while the consumers run the epilogue of the last. Registers: the
// producer drops to kWsProdRegs, the consumers (192 accumulators a thread on a merged tail) rise to
// kWsConsRegs (setmaxnreg).
constexpr int kWsSt = 4, kWsThreads = 384, kWsProdRegs = 40, kWsConsRegs = 232;
constexpr int kWsAM = kBM + 64, kWsBN = 256;
constexpr int kWsStageElems = (kWsAM + kWsBN) * kBK;
constexpr int kWsBarOff = kWsSt * kWsStageElems * int(sizeof(uint16_t));  // bytes from the aligned base
// + the barriers, the alignment slack
constexpr int kWsSmem = kWsBarOff + 2 * kWsSt * int(sizeof(uint64_t)) + 1024;
constexpr uint32_t kWsBBytes = kWsBN * kBK * sizeof(uint16_t);  // TMA bytes of a weight tile
constexpr uint32_t kWsABytes = kWsAM * kBK * sizeof(uint16_t);  // TMA bytes of an A tile
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

// The tile of work item w (wgmma_gemm_kernel's order: the N tiles of a row tile are consecutive, so
// they share the A rows in L2).
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

// map: the bank's down weights as [n][N rows][K], boxes of 256 rows; amap: act as [S][K], boxes of
// kWsAM rows.
__global__ void __launch_bounds__(kWsThreads, 1) wgmma_ws_kernel(const __grid_constant__ GemmArgs p,
                                                                 const __grid_constant__ CUtensorMap map,
                                                                 const __grid_constant__ CUtensorMap amap) {
  if constexpr (kHaveWgmma) {
    extern __shared__ unsigned char smem_raw[];
    unsigned char* sm_al = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    bf16* sm = reinterpret_cast<bf16*>(sm_al);
    uint64_t* full = reinterpret_cast<uint64_t*>(sm_al + kWsBarOff);
    uint64_t* empty = full + kWsSt;
    const Workspace ws = carve(const_cast<int32_t*>(p.ws), p.S, p.n);
    const int n_work = ws.tile_first[p.n] * p.n_tiles_n;
    const int K = p.K, ktiles = (K + kBK - 1) / kBK;
    const int tid = threadIdx.x;
    if (tid == 0) {
      for (int s = 0; s < kWsSt; s++) {
        mbar_init(&full[s], 1);   // the producer thread's expect_tx arrival
        mbar_init(&empty[s], 8);  // the consumer warps
      }
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");  // visible to the TMA unit
    }
    __syncthreads();

    if (tid < 128) {
      setmaxnreg_dec<kWsProdRegs>();
      uint32_t g = 0;  // steps issued, over all tiles of this CTA
      // One thread loads A (the grouped act rows, contiguous) and B by TMA (rows past the tile's are
      // the next expert's or zero: their outputs are never stored).
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
      setmaxnreg_inc<kWsConsRegs>();
      const int ctid = tid - 128, warp = ctid / 32, lane = ctid % 32, wg = warp / 4;
      uint32_t g = 0;  // steps consumed
      for (int w = int(blockIdx.x); w < n_work; w += int(gridDim.x)) {
        const WsTile x = ws_tile(ws, w, p.n_tiles_n);
        // wgmma_gemm_kernel's shapes (kShape: 0 rows wg*64.., all columns; 1 <= 64 rows, columns split;
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
          tile_epilogue<false, kWsBN>(p, ws, acc, arow, bcol, x.rows, x.row0, x.nt, warp % 4, lane);
          if constexpr (kShape == 2)
            tile_epilogue<false, kWsBN>(p, ws, acc2, 2 * 64, wg * (kWsBN / 2), x.rows, x.row0, x.nt, warp % 4, lane);
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
    __trap();  // no sm_90a code: the host launches this only where KernelPath::wgmma
  }
}

// Raises the kernel's dynamic shared memory limit once per device (the attribute is per context).
template <bool kGateUp>
void raise_smem_once() {
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (bit && (done.load() & bit)) return;
  SEGPIPE_CUDA_CHECK(
      cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp>, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::Smem));
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                          int(cudaSharedmemCarveoutMaxShared)));
  done.fetch_or(bit);
}

template <bool kGateUp>
void launch(GemmArgs a, cudaStream_t s) {
  raise_smem_once<kGateUp>();
  // The N tiles of Cfg::BN columns (the caller's n_tiles_n counts 128-column tiles).
  const int64_t cols = kGateUp ? Cfg::BN / 2 : Cfg::BN;  // gate_up: act columns of a tile
  a.n_tiles_n = int((int64_t(a.N) + cols - 1) / cols);
  const int64_t blocks = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(blocks < (int64_t(1) << 31), "grouped expert GEMM (wgmma): grid too large");
  wgmma_gemm_kernel<kGateUp><<<static_cast<unsigned>(blocks), kThreads, Cfg::Smem, s>>>(a);
  SEGPIPE_CUDA_LAUNCH_CHECK("wgmma_gemm_kernel");
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

// The bank's down weights as [n][N rows][K] bf16, boxes of 64 K columns (128 bytes: the swizzle span)
// by 256 rows. Encoded on the host at each launch (a few microseconds of host work, no device call;
// the map is a kernel argument, so a captured graph keeps its own copy). False where the driver
// refuses the shape (the caller takes wgmma_gemm_kernel instead).
bool weight_map(const GemmArgs& a, CUtensorMap& m) {
  const cuuint64_t dims[3] = {cuuint64_t(a.K), cuuint64_t(a.N), cuuint64_t(a.n)};
  const cuuint64_t strides[2] = {cuuint64_t(a.K) * 2, cuuint64_t(a.w_stride) * 2};  // bytes, dims 1 and 2
  const cuuint32_t box[3] = {cuuint32_t(kBK), cuuint32_t(kWsBN), 1};
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

void launch_ws_down(GemmArgs a, cudaStream_t s) {
  CUtensorMap map, amap;
  if (!weight_map(a, map) || !act_map(a, amap)) {
    static std::atomic<bool> told{false};  // one line a process: the fallback gives the same bits, slower
    if (!told.exchange(true))
      std::fprintf(stderr, "grouped expert GEMM: no tensor map for this bank, down runs without TMA\n");
    return launch<false>(a, s);
  }
  static std::atomic<uint64_t> done{0};  // the shared memory limit raised, per device
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (!bit || !(done.load() & bit)) {
    SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(wgmma_ws_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kWsSmem));
    done.fetch_or(bit);
  }
  int sms = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  a.n_tiles_n = int((int64_t(a.N) + kWsBN - 1) / kWsBN);
  const int64_t work = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(work < (int64_t(1) << 31), "grouped expert GEMM (wgmma ws): too many tiles");
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(work, sms));
  wgmma_ws_kernel<<<static_cast<unsigned>(blocks), kWsThreads, kWsSmem, s>>>(a, map, amap);
  SEGPIPE_CUDA_LAUNCH_CHECK("wgmma_ws_kernel");
}

}  // namespace

// gate_up: wgmma_gemm_kernel (its gathered A rows through cp.async by all 8 warps: faster than the
// warp-specialized kernel's gathering producers). down: the warp-specialized kernel, where the tensor
// maps describe the bank.
void launch_gemm_wgmma(const GemmArgs& a, bool gate_up, cudaStream_t s) {
  if (gate_up) return launch<true>(a, s);
  if (!ws_supported(a)) return launch<false>(a, s);
  launch_ws_down(a, s);
}

}  // namespace segpipe::cuda::grouped_detail
