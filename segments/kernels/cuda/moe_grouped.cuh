// The bf16 prefill path of the routed experts (moe.cuh's slot contract) without a host round trip:
// the slots are grouped by expert on the device, then two grouped GEMMs on tensor cores (mma.sync
// m16n8k16, bf16 operands, fp32 accumulation) run over every expert of the bank in one launch each.
//
//  1. moe_grouped_group: per-expert counts and offsets of the bank's slots, the permutation perm
//     (slot ids grouped by expert, ascending slot id inside each expert: deterministic) and the
//     tile table of the GEMMs (each expert's first row tile; tile -> expert), in `ws`. Tiles hold
//     128 rows but an expert's last (moe_grouped_tile_count).
//  2. moe_grouped_gate_up: act[r, j] = silu(g) * u for grouped row r, where g and u are the fp32
//     accumulators of x[perm[r] / k, :] . gate[e, j, :] and . up[e, j, :] (the A rows gathered on the
//     fly; silu as swiglu.cu computes it, in fp32); act [n, I] bf16 in perm order.
//  3. moe_grouped_down: slots[perm[r], :] = weights[perm[r]] * (act[r, :] . down[e]^T) in fp32,
//     stored in bf16 (moe_slot_dtype of a bf16 grouped request; replaces moe_scatter_weighted);
//     slots of experts outside [e0, e1] are not written.
//
// Compared with the cuBLAS path (gather, GEMM to bf16, swiglu_rows, GEMM to bf16, scatter), gate and
// up and the down product are not rounded to bf16 before SwiGLU and the weighting: results differ
// from it by that rounding, and are closer to the float32 reference.
//
// The GEMM grid is sized from an upper bound of the tile count (ceil(S / 128) + experts, times the
// N tiles); CTAs past the real count (known only on the device) return at once.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// Whether the kernels take this problem: H and I multiples of 8 (16-byte rows; tails of the tiles
// are masked) and index ranges within int32. Otherwise the caller keeps the cuBLAS path.
bool moe_grouped_supported(int64_t T, int k, int64_t H, int64_t I, int num_bank_experts);

// int32 elements of the workspace for S = T * k slots and a bank of n experts. Layout (tests read
// it): off [n + 1] (expert b's grouped rows are off[b] .. off[b + 1] - 1), tile_first [n + 1]
// (expert b's first row tile, rows off[b] + 128 * (tile - tile_first[b]) ..; tile_first[n] = the
// tile count), tile_expert [ceil(S / 128) + n] (bank-relative expert of each tile), perm [S] (slot
// id of each grouped row).
constexpr int kMoeGroupedTileRows = 128;
size_t moe_grouped_workspace_ints(int64_t S, int n);

// Which kernels run the two GEMMs: wgmma (warpgroup MMA, sm_90a machine code,
// sm90a/moe_grouped_wgmma.cu) where path.wgmma, else mma.sync m16n8k16 (the portable kernel). The
// two differ in the fp32 accumulation order (last bits): every segment of a run must take one path
// for segmented runs to equal monolithic ones.

// Row tiles of an expert with `rows` grouped rows: ceil(rows / 128), or with merged tails (the
// wgmma kernels) a remainder of <= 64 rows joins the last full tile (tiles of up to 192 rows): every
// tile holds 128 rows but an expert's last, which holds the rest. moe_grouped_group builds the table
// for the kernels of the path; the grouping and the GEMMs of one layer must take one path.
__host__ __device__ inline int moe_grouped_tile_count(int rows, bool merged) {
  const int f = rows / kMoeGroupedTileRows, r = rows % kMoeGroupedTileRows;
  return f + ((r > 0 && (!merged || f == 0 || r > kMoeGroupedTileRows / 2)) ? 1 : 0);
}
inline bool moe_grouped_merged_tails(const KernelPath& path) { return path.wgmma; }

// The steps, for tests and benchmarks. experts: [S] (device); ws: moe_grouped_workspace_ints(S, n).
void moe_grouped_group(const int32_t* experts, int64_t S, int e0, int e1, int32_t* ws, const KernelPath& path,
                       cudaStream_t s);
// x: [T, H] bf16; w_gate_up: the bank's [n, 2I, H] bf16; act: [S, I] bf16 (rows beyond the bank's
// slot count are not written).
void moe_grouped_gate_up(const void* x, int64_t S, int k, int e0, int e1, const void* w_gate_up, int64_t I,
                         int64_t H, const int32_t* ws, void* act, const KernelPath& path, cudaStream_t s);
// w_down: the bank's [n, H, I] bf16; slots: [S, H] bf16.
void moe_grouped_down(const void* act, int64_t S, int e0, int e1, const float* weights, const void* w_down,
                      int64_t I, int64_t H, const int32_t* ws, void* slots, const KernelPath& path, cudaStream_t s);

// All three: the bank's slots of one layer. act: scratch of [S, I] bf16.
void moe_grouped_experts(const void* x, int64_t T, int k, const int32_t* experts, const float* weights, int e0,
                         int e1, const void* w_gate_up, const void* w_down, int64_t I, int64_t H, int32_t* ws,
                         void* act, void* slots, const KernelPath& path, cudaStream_t s);

}  // namespace segpipe::cuda
