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
#include <atomic>
#include <cstdlib>
#include <type_traits>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/moe_grouped_impl.cuh"
#include "segments/kernels/cuda/sm90a/wgmma.cuh"

namespace segpipe::cuda::grouped_detail {

namespace {

using namespace sm90a;

// The variants (set_moe_wgmma_variant; SEGPIPE_WGMMA_DEEP=1 picks the deep one over variant 0):
//  0: 128 x 128 tiles, 3 stages, loads 2 steps ahead, MMAs waited each step, 2 CTAs an SM (grouped2).
//  1: 128 x 256 tiles (m64n256k16 per warpgroup): every gathered A tile is read by half as many
//     N-tile CTAs (gate_up 6, down 8), the L2 traffic that bounds variant 0; 4 stages (192 KB), loads
//     3 steps ahead, MMAs waited each step, one CTA an SM.
//  2: variant 1 with the MMAs of step kt left in flight across the next barrier (wait_group 1), loads
//     2 steps ahead.
//  deep: 128 x 128, 6 stages, loads 4 steps ahead, MMAs in flight, one CTA an SM. Slower than 0 on
//     an H200 (0.596 against 0.561 ms a layer, same run): kept for A/B only.
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
using CfgDeep = Cfg<128, 6, 4, true, 1>;
using CfgV3 = Cfg<256, 4, 2, true, 1, true>;
using CfgV4 = Cfg<128, kStages, kStages - 1, false, 2, true>;
using CfgV5 = Cfg<256, 4, 2, true, 1, true, true>;

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
      int wrow;
      bool ok;
      if (kGateUp) {
        // B rows in groups of 32: 16 gate rows then the 16 up rows of the same act columns
        const int j = nt * (BN / 2) + (r / 32) * 16 + (r % 16);
        ok = j < p.N;
        wrow = (r % 32 < 16 ? 0 : p.N) + j;
      } else {
        wrow = nt * BN + r;
        ok = wrow < p.N;
      }
      b_src[i] = ok ? wexp + int64_t(wrow) * K : nullptr;
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

    // The epilogue of one accumulator array of a warpgroup: NA = NW / 2 accumulators a thread for
    // its m64 x NW block at tile rows arow.., columns bcol... Accumulator i = 4 * ni + 2 * h + c is
    // row arow + (warp%4)*16 + lane/4 + 8h, column bcol + ni*8 + 2*(lane%4) + c (ni < NW / 8).
    auto epilogue = [&](const auto& acc, int arow, int bcol) {
      constexpr int NW = 2 * int(std::extent<std::remove_reference_t<decltype(acc)>>::value);
      const int g = lane / 4, tq = lane % 4;
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = arow + (warp % 4) * 16 + g + 8 * h;
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

std::atomic<int> g_variant{kMoeWgmmaDefaultVariant};

}  // namespace

void launch_gemm_wgmma(const GemmArgs& a, bool gate_up, cudaStream_t s) {
  // SEGPIPE_WGMMA_DEEP=1: the deep variant in place of variant 0 (A/B). (A first overlap variant,
  // 3 stages and two barriers a step with the MMAs in flight across them, was slower on an H200:
  // 0.606 against 0.542 ms a layer.)
  static const bool deep = [] {
    const char* v = std::getenv("SEGPIPE_WGMMA_DEEP");
    return v && v[0] == '1';
  }();
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
    default:
      return deep ? launch_both<CfgDeep>(a, gate_up, s) : launch_both<CfgV0>(a, gate_up, s);
  }
}

}  // namespace segpipe::cuda::grouped_detail

namespace segpipe::cuda {

void set_moe_wgmma_variant(int v) {
  SEGPIPE_ASSERT_MSG(v >= 0 && v < kMoeWgmmaVariants, "wgmma grouped GEMM variant out of range");
  grouped_detail::g_variant.store(v);
}
int moe_wgmma_variant() { return grouped_detail::g_variant.load(); }
bool moe_wgmma_variant_merges_tails(int v) { return v == 5; }

}  // namespace segpipe::cuda
