// Device-side grouping of the routed slots and the two grouped expert GEMMs (see moe_grouped.cuh).
//
// GEMM skeleton (both projections): a CTA computes a 128 x 128 tile of one expert's rows (M) by
// output columns (N) with 8 warps, each a 64 x 32 warp tile (2 along M x 4 along N) of 4 x 4
// mma.sync m16n8k16 fragments. K advances 64 columns at a time through a 3-stage cp.async pipeline;
// a stage holds A [128][64] and B [128][64] bf16, rows of 128 bytes whose 16-byte chunks are
// XOR-swizzled by (row & 7), so that the 8 rows an ldmatrix 8x8 matrix reads land on 8 distinct
// chunk positions (all 32 banks, no conflict) and the cp.async writes do too. B rows are weight
// rows ([N][K], K contiguous), so the non-transposed ldmatrix gives the "col" B fragment directly.
// 96 KB of shared memory and at most 128 registers a thread: two CTAs per SM.
//
// Tile order: blockIdx.x = tile * n_tiles_n + n_tile, so the CTAs of one row tile (sharing its A
// rows) are neighbours, and the row tiles of one expert (sharing its weights) follow each other:
// both are re-read from L2 while they are in flight rather than from memory.
#include <atomic>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/moe_grouped.cuh"
#include "segments/kernels/cuda/moe_grouped_impl.cuh"

namespace segpipe::cuda {

namespace {

using namespace grouped_detail;

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One block per expert b of the bank: the histogram of all S ids (integer shared-memory atomics:
// the counts do not depend on their order), its offset and first tile from the counts of experts
// before it, then a stable compaction of its slots (ballot + prefix over the block's warps, chunk
// after chunk in slot order).
__global__ void __launch_bounds__(kGroupThreads) group_kernel(const int32_t* __restrict__ experts, int S, int e0,
                                                              int n, bool merged, int32_t* ws) {
  extern __shared__ int hist[];
  __shared__ int wcnt[kGroupThreads / 32];
  __shared__ int base_s[2];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, b = blockIdx.x;
  for (int i = tid; i < n; i += kGroupThreads) hist[i] = 0;
  __syncthreads();
  for (int s = tid; s < S; s += kGroupThreads) {
    const unsigned e = unsigned(experts[s] - e0);
    if (e < unsigned(n)) atomicAdd(&hist[e], 1);
  }
  __syncthreads();
  if (warp == 0) {
    int o = 0, t = 0;
    for (int i = lane; i < b; i += 32) {
      o += hist[i];
      t += moe_grouped_tile_count(hist[i], merged);
    }
    o = warp_sum_int(o);
    t = warp_sum_int(t);
    if (lane == 0) base_s[0] = o, base_s[1] = t;
  }
  __syncthreads();
  const int off_b = base_s[0], tile_b = base_s[1], cnt = hist[b], tiles = moe_grouped_tile_count(cnt, merged);
  Workspace w = carve(ws, S, n);
  if (tid == 0) {
    w.off[b] = off_b;
    w.tile_first[b] = tile_b;
    if (b == n - 1) {
      w.off[n] = off_b + cnt;
      w.tile_first[n] = tile_b + tiles;
    }
  }
  for (int i = tid; i < tiles; i += kGroupThreads) w.tile_expert[tile_b + i] = b;
  const int e = e0 + b, end = off_b + cnt;
  int base = off_b;
  for (int s0 = 0; s0 < S && base < end; s0 += kGroupThreads) {  // base is block-uniform
    const int s = s0 + tid;
    const bool mine = s < S && experts[s] == e;
    const unsigned m = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) wcnt[warp] = __popc(m);
    __syncthreads();
    int before = 0, total = 0;
#pragma unroll
    for (int q = 0; q < kGroupThreads / 32; q++) {
      before += q < warp ? wcnt[q] : 0;
      total += wcnt[q];
    }
    if (mine) w.perm[base + before + __popc(m & ((1u << lane) - 1u))] = s;
    base += total;
    __syncthreads();  // wcnt is rewritten by the next chunk
  }
}


// kGateUp: A rows gathered through perm, B row n of the tile is gate row j (n % 32 < 16) or up row
// I + j (n % 32 >= 16) of act column j = n_tile * 64 + (n / 32) * 16 + n % 16, so that warp wn's
// fragments 0, 1 (gate) and 2, 3 (up) hold matching columns in the same registers of the same
// threads: the SwiGLU epilogue needs no exchange. Otherwise (down) A rows are contiguous and the
// epilogue scatters weighted rows into the slots.
template <bool kGateUp>
__global__ void __launch_bounds__(kThreads, 2) grouped_gemm_kernel(const GemmArgs p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* sm = reinterpret_cast<bf16*>(smem_raw);
  const Workspace ws = carve(const_cast<int32_t*>(p.ws), p.S, p.n);
  const int t = int(blockIdx.x) / p.n_tiles_n, nt = int(blockIdx.x) % p.n_tiles_n;
  if (t >= ws.tile_first[p.n]) return;  // past the real tile count
  const int b = ws.tile_expert[t];
  const int row0 = ws.off[b] + (t - ws.tile_first[b]) * kBM;
  const int rows = min(kBM, ws.off[b + 1] - row0);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;
  const int K = p.K;
  const int ktiles = (K + kBK - 1) / kBK;

  // This thread's load rows (tid / 8 + 32 i of A and of B) and chunk column (tid % 8); null: a
  // masked row (zero-filled, nothing read).
  const int lrow = tid / 8, lc = tid % 8;
  const bf16* wexp = p.w + int64_t(b) * p.w_stride;
  const bf16* a_src[4];
  const bf16* b_src[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = lrow + 32 * i;
    if (kGateUp)
      a_src[i] = r < rows ? p.a + int64_t(ws.perm[row0 + r] / p.k) * K : nullptr;
    else
      a_src[i] = r < rows ? p.a + int64_t(row0 + r) * K : nullptr;
    const int wrow = b_weight_row(kGateUp, r, nt, kBN, p.N);
    b_src[i] = wrow >= 0 ? wexp + int64_t(wrow) * K : nullptr;
  }

  auto load_stage = [&](int stage, int kt) {
    bf16* sa = sm + stage * kStageElems;
    bf16* sb = sa + kBM * kBK;
    const int col = kt * kBK + lc * 8;
    const bool kin = col < K;  // K is a multiple of 8: a chunk is wholly inside or outside
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int r = lrow + 32 * i;
      const bool av = kin && a_src[i] != nullptr, bv = kin && b_src[i] != nullptr;
      cp_async16(sa + swz(r, lc), av ? a_src[i] + col : p.a, av ? 16 : 0);
      cp_async16(sb + swz(r, lc), bv ? b_src[i] + col : p.w, bv ? 16 : 0);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int ni = 0; ni < 4; ni++) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0.f;

  // Warp-uniform: m16 fragments wholly past the tile's rows are neither loaded nor multiplied.
  const int warp_rows = rows - wm * kWarpM;

#pragma unroll
  for (int st = 0; st < kStages - 1; st++) {
    if (st < ktiles) load_stage(st, st);
    cp_async_commit();  // empty groups keep the wait count uniform
  }
  for (int kt = 0; kt < ktiles; kt++) {
    // Groups committed so far: kStages - 1 + kt; stage kt's is complete when at most kStages - 2
    // are pending. The barrier then makes every thread's copies visible, and tells that all warps
    // are done with the buffer of iteration kt - 1, which the load below refills.
    cp_async_wait<kStages - 2>();
    __syncthreads();
    if (kt + kStages - 1 < ktiles) load_stage((kt + kStages - 1) % kStages, kt + kStages - 1);
    cp_async_commit();
    const bf16* sa = sm + (kt % kStages) * kStageElems;
    const bf16* sb = sa + kBM * kBK;
    if (warp_rows > 0) {
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ks++) {
        uint32_t af[4][4], bfr[4][2];
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
          if (mi * 16 < warp_rows)
            ldmatrix_x4(af[mi], sa + swz(wm * kWarpM + mi * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
        for (int np = 0; np < 2; np++) {
          uint32_t r4[4];
          ldmatrix_x4(r4, sb + swz(wn * kWarpN + np * 16 + ((lane >> 4) << 3) + (lane & 7),
                                   ks * 2 + ((lane >> 3) & 1)));
          bfr[2 * np][0] = r4[0];
          bfr[2 * np][1] = r4[1];
          bfr[2 * np + 1][0] = r4[2];
          bfr[2 * np + 1][1] = r4[3];
        }
#pragma unroll
        for (int mi = 0; mi < 4; mi++)
          if (mi * 16 < warp_rows)
#pragma unroll
            for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], af[mi], bfr[ni][0], bfr[ni][1]);
      }
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending; none outlives the block

  // Fragment (mi, ni) element q is row wm*64 + mi*16 + lane/4 (+8 for q >= 2), column
  // wn*32 + ni*8 + 2*(lane%4) (+1 for odd q) of the tile.
  const int g = lane / 4, tq = lane % 4;
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = wm * kWarpM + mi * 16 + g + 8 * h;
      if (r >= rows) continue;
      if (kGateUp) {
        bf16* out = p.act + int64_t(row0 + r) * p.N;
#pragma unroll
        for (int ni = 0; ni < 2; ni++) {
          const int j = nt * (kBN / 2) + wn * 16 + ni * 8 + 2 * tq;
          if (j >= p.N) continue;  // p.N is even: j + 1 < p.N as well
          const float g0 = acc[mi][ni][2 * h], g1 = acc[mi][ni][2 * h + 1];
          const float u0 = acc[mi][ni + 2][2 * h], u1 = acc[mi][ni + 2][2 * h + 1];
          // swiglu.cu's formula, in fp32 from the accumulators
          const float v0 = __fmul_rn(g0 / (1.0f + expf(-g0)), u0), v1 = __fmul_rn(g1 / (1.0f + expf(-g1)), u1);
          *reinterpret_cast<__nv_bfloat162*>(out + j) = __floats2bfloat162_rn(v0, v1);
        }
      } else {
        const int s = ws.perm[row0 + r];
        const float wt = p.weights[s];
        bf16* out = p.slots + int64_t(s) * p.N;
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
          const int c = nt * kBN + wn * kWarpN + ni * 8 + 2 * tq;
          if (c >= p.N) continue;
          // weight * value (IEEE products commute: equal to moe_scatter_weighted's value * weight),
          // rounded once to the bf16 slot
          *reinterpret_cast<__nv_bfloat162*>(out + c) =
              __floats2bfloat162_rn(__fmul_rn(wt, acc[mi][ni][2 * h]), __fmul_rn(wt, acc[mi][ni][2 * h + 1]));
        }
      }
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
      cudaFuncSetAttribute(grouped_gemm_kernel<kGateUp>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(grouped_gemm_kernel<kGateUp>,
                                          cudaFuncAttributePreferredSharedMemoryCarveout,
                                          int(cudaSharedmemCarveoutMaxShared)));
  done.fetch_or(bit);
}

template <bool kGateUp>
void launch_gemm(const GemmArgs& a, const KernelPath& path, cudaStream_t s) {
  if (path.wgmma) {
    launch_gemm_wgmma(a, kGateUp, s);
    return;
  }
  raise_smem_once<kGateUp>();
  const int64_t blocks = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(blocks < (int64_t(1) << 31), "grouped expert GEMM: grid too large");
  grouped_gemm_kernel<kGateUp><<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, s>>>(a);
  SEGPIPE_CUDA_LAUNCH_CHECK("grouped_gemm_kernel");
}

}  // namespace

bool moe_grouped_supported(int64_t T, int k, int64_t H, int64_t I, int num_bank_experts) {
  // Slot ids, grouped rows and tile indices are int32; every element offset is formed in int64.
  return H > 0 && I > 0 && H % 8 == 0 && I % 8 == 0 && k >= 1 && T >= 0 && T * k < (int64_t(1) << 30) &&
         H < (int64_t(1) << 30) && I < (int64_t(1) << 30) && num_bank_experts >= 1 &&
         num_bank_experts <= kMaxBankExperts;
}

size_t moe_grouped_workspace_ints(int64_t S, int n) {
  return size_t(2 * (n + 1)) + size_t(max_tiles(S, n)) + size_t(S);
}

void moe_grouped_group(const int32_t* experts, int64_t S, int e0, int e1, int32_t* ws, const KernelPath& path,
                       cudaStream_t s) {
  const int n = e1 - e0 + 1;
  SEGPIPE_ASSERT_MSG(n >= 1 && n <= kMaxBankExperts && S < (int64_t(1) << 30), "moe_grouped_group: shape");
  if (S == 0) return;
  const bool merged = moe_grouped_merged_tails(path);
  group_kernel<<<static_cast<unsigned>(n), kGroupThreads, size_t(n) * sizeof(int), s>>>(experts, int(S), e0, n,
                                                                                      merged, ws);
  SEGPIPE_CUDA_LAUNCH_CHECK("group_kernel");
}

void moe_grouped_gate_up(const void* x, int64_t S, int k, int e0, int e1, const void* w_gate_up, int64_t I,
                         int64_t H, const int32_t* ws, void* act, const KernelPath& path, cudaStream_t s) {
  const int n = e1 - e0 + 1;
  SEGPIPE_ASSERT_MSG(moe_grouped_supported(S / k, k, H, I, n), "moe_grouped_gate_up: shape");
  if (S == 0) return;
  GemmArgs a{};
  a.a = static_cast<const bf16*>(x);
  a.w = static_cast<const bf16*>(w_gate_up);
  a.w_stride = 2 * I * H;
  a.K = int(H);
  a.N = int(I);
  a.k = k;
  a.n = n;
  a.max_tiles = max_tiles(S, n);
  a.n_tiles_n = int(div_up(I, kBN / 2));
  a.ws = ws;
  a.S = S;
  a.act = static_cast<bf16*>(act);
  launch_gemm<true>(a, path, s);
}

void moe_grouped_down(const void* act, int64_t S, int e0, int e1, const float* weights, const void* w_down,
                      int64_t I, int64_t H, const int32_t* ws, void* slots, const KernelPath& path, cudaStream_t s) {
  const int n = e1 - e0 + 1;
  SEGPIPE_ASSERT_MSG(moe_grouped_supported(S, 1, H, I, n), "moe_grouped_down: shape");
  if (S == 0) return;
  GemmArgs a{};
  a.a = static_cast<const bf16*>(act);
  a.w = static_cast<const bf16*>(w_down);
  a.w_stride = H * I;
  a.K = int(I);
  a.N = int(H);
  a.k = 1;
  a.n = n;
  a.max_tiles = max_tiles(S, n);
  a.n_tiles_n = int(div_up(H, kBN));
  a.ws = ws;
  a.S = S;
  a.slots = static_cast<bf16*>(slots);
  a.weights = weights;
  launch_gemm<false>(a, path, s);
}

void moe_grouped_experts(const void* x, int64_t T, int k, const int32_t* experts, const float* weights, int e0,
                         int e1, const void* w_gate_up, const void* w_down, int64_t I, int64_t H, int32_t* ws,
                         void* act, void* slots, const KernelPath& path, cudaStream_t s) {
  const int64_t S = T * k;
  if (S == 0) return;
  moe_grouped_group(experts, S, e0, e1, ws, path, s);
  moe_grouped_gate_up(x, S, k, e0, e1, w_gate_up, I, H, ws, act, path, s);
  moe_grouped_down(act, S, e0, e1, weights, w_down, I, H, ws, slots, path, s);
}

}  // namespace segpipe::cuda
