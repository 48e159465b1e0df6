// What the two implementations of the grouped expert GEMMs share (moe_grouped.cu: mma.sync, the
// portable kernel; sm90a/moe_grouped_wgmma.cu: wgmma, built for sm_90a only): the tile shape, the
// shared-memory layout of a pipeline stage, the workspace layout and the kernels' arguments.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/moe_grouped.cuh"

namespace segpipe::cuda::grouped_detail {

constexpr int kBM = kMoeGroupedTileRows, kBN = 128, kBK = 64, kStages = 3, kThreads = 256;
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kStageElems = (kBM + kBN) * kBK;                             // bf16 elements
constexpr int kSmemBytes = kStages * kStageElems * int(sizeof(uint16_t));  // 98304
constexpr int kGroupThreads = 256;
constexpr int kMaxBankExperts = 12288;  // the grouping kernel's histogram in 48 KB of shared memory
static_assert(kBM == kBN, "the load mapping covers A and B rows with the same thread rows");
static_assert(kBM * kBK / 8 == 4 * kThreads, "four 16-byte chunks of A (and of B) per thread and stage");
static_assert(2 * kWarpM == kBM && 4 * kWarpN == kBN, "8 warps, 2 along M x 4 along N");

// Element offset of 16-byte chunk `chunk` (0..7) of row `row` in a [rows][64] bf16 tile.
__device__ __forceinline__ int swz(int row, int chunk) { return row * kBK + ((chunk ^ (row & 7)) << 3); }


__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The workspace: off [n + 1] (grouped row offsets), tile_first [n + 1] (first row tile of each
// expert; tile_first[n] = the real tile count), tile_expert [max_tiles], perm [S].
struct Workspace {
  int32_t *off, *tile_first, *tile_expert, *perm;
};
__host__ __device__ inline int max_tiles(int64_t S, int n) { return int((S + kBM - 1) / kBM) + n; }
__host__ __device__ inline Workspace carve(int32_t* ws, int64_t S, int n) {
  Workspace w;
  w.off = ws;
  w.tile_first = ws + n + 1;
  w.tile_expert = w.tile_first + n + 1;
  w.perm = w.tile_expert + max_tiles(S, n);
  return w;
}

struct GemmArgs {
  const bf16* a;      // gate_up: x [T, K]; down: act [rows, K]
  const bf16* w;      // the bank's weights, expert b at w + b * w_stride
  int64_t w_stride;
  int K;              // reduction length (H for gate_up, I for down)
  int N;              // gate_up: I (act columns; B holds 2I rows); down: H
  int k;              // top-k (gate_up: slot s reads token s / k)
  int n;              // experts in the bank
  int max_tiles, n_tiles_n;
  const int32_t* ws;
  int64_t S;
  bf16* act;             // gate_up output [rows, I]
  bf16* slots;           // down output [S, H]
  const float* weights;  // [S]
};

// Which weight row feeds B row r of N-tile nt (tile width BN), or -1 past the matrix. gate_up: B rows
// in groups of 32, the 16 gate rows then the 16 up rows of the same act columns (so that a warp's
// accumulators hold matching gate and up values for the fused SwiGLU); down: row nt * BN + r.
__device__ __forceinline__ int b_weight_row(bool gate_up, int r, int nt, int BN, int N) {
  if (gate_up) {
    const int j = nt * (BN / 2) + (r / 32) * 16 + (r % 16);
    return j < N ? (r % 32 < 16 ? 0 : N) + j : -1;
  }
  const int row = nt * BN + r;
  return row < N ? row : -1;
}

// The wgmma kernels (sm90a/moe_grouped_wgmma.cu, sm_90a machine code only: called only where the
// context's KernelPath has wgmma, compute capability 9.0).
void launch_gemm_wgmma(const GemmArgs& a, bool gate_up, cudaStream_t s);

}  // namespace segpipe::cuda::grouped_detail
