// Single-token matrix-vector products for decode (T = 1), replacing cuBLAS there (which reads the
// weights at about half the copy bandwidth for these shapes): one warp per weight row, 16-byte
// streaming loads, four such loads in flight per lane, float32 accumulation, the input vector staged
// in shared memory as float32. Optionally the RMSNorm of a float32 residual row is computed in the
// same kernel (each block normalizes the row itself: the separate one-block RMSNorm kernel and its
// launch disappear). The decode layer also uses the fused router (router.cuh) and the fused expert
// down-projection + combine (moe.cuh).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "segments/core/dtype.h"
#include "segments/kernels/cuda/l2_request.h"

namespace segpipe::cuda {

// Decode kernels launched with programmatic dependent launch (each may start while the previous
// kernel finishes, loading its weights before it waits for its inputs) and L2 prefetches of the next
// kernel's weights. Process-wide; on by default. Graphs captured under one setting must be
// re-captured after a change.
void set_decode_overlap(bool on);
bool decode_overlap();
// How the decode kernels ask L2 for their own weights (with overlap on): 0 none (only the next
// kernel's weights, from the kernel before it); 1 each kernel's whole matrix, spread over its blocks,
// at its start; 2 each block its own rows.
void set_decode_l2_prefetch(int mode);
int decode_l2_prefetch();
// Persistent grids for the decode GEMVs (gemv, gemv_rmsnorm, moe_gate_up_gemv, moe_down_combine):
// exactly as many blocks as are resident at once, each warp walking several rows (the next row's
// loads issued before the current one is reduced), so there is no partial last wave and the
// per-block prologue (RMSNorm, routing) runs once per block instead of once per wave. Each output's
// summation order is the same either way (bit-identical results). Process-wide, on by default; off:
// the earlier grids (one row per warp where the grid allows). Graphs must be re-captured after a change.
void set_decode_persistent(bool on);
bool decode_persistent();
// At most this many blocks per multiprocessor in the persistent decode grids (0: as many as fit).
// One block of a kernel that takes half the registers leaves room for the next kernel's blocks,
// which then load their weights while this one finishes (programmatic dependent launch).
void set_decode_blocks_per_sm(int n);
// Which decode kernels ask L2 for the next kernel's weights (only with decode_overlap()), a mask:
// bit 0 the o_proj matrix during attention, bit 1 the chosen experts' down matrices during gate/up,
// bit 2 the next layer's q/k/v during down, bit 3 the next layer's q/k/v during the router, bit 4 the
// o_proj matrix during the q/k/v product. Default 9 (bits 0 and 3, the two that fetch while the memory
// idles): on an H100 the decode step 3.51 -> 3.43 ms/token, on an H200 no change (3.05); the others
// cost more than they save on both (docs/benchmarks-cuda.md).
void set_decode_prefetch_next(int mask);
int decode_prefetch_next();
// Those prefetches ask L2 to keep their lines (evict_last, kL2KeepBit) so that they outlive the expert
// stream between the router and the next layer's q/k/v; takes an L2 portion set aside for persisting
// lines (l2_set_aside, segments/cuda/device.h). Off by default.
void set_decode_l2_keep(bool on);
bool decode_l2_keep();
int decode_blocks_per_sm();

// y[r] = (accumulate ? y[r] : 0) + W[r, :] · x for r < rows. x: [cols] in xt (F32 or the weights'
// dtype wt); W: [rows, cols] in wt (F32 or BF16); y float32. cols must be a multiple of 8.
// prefetch (optional): the next kernel's weights, asked into L2 by the blocks once past their wait
// (prefetch_bytes may carry kL2KeepBit).
void gemv(const void* x, DType xt, const void* w, DType wt, int64_t rows, int64_t cols, float* y, bool accumulate,
          cudaStream_t s, const void* prefetch = nullptr, uint64_t prefetch_bytes = 0);

// The same with x = rmsnorm(xf) computed in the kernel, exactly as rmsnorm() (norm.cuh) computes it
// and rounded to wt (what the library path feeds the product). h_out (optional, [cols] in wt)
// receives that normalized row.
void gemv_rmsnorm(const float* xf, const float* norm_w, float eps, const void* w, DType wt, int64_t rows, int64_t cols,
                  float* y, bool accumulate, void* h_out, cudaStream_t s, const void* prefetch = nullptr,
                  uint64_t prefetch_bytes = 0);

}  // namespace segpipe::cuda
