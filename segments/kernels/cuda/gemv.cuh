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
#include "segments/kernels/cuda/device_caps.h"

namespace segpipe::cuda {

// The decode kernels are launched with programmatic dependent launch (launch.cuh: each may start
// while the previous kernel finishes, loading its weights before it waits for its inputs) on
// persistent grids (resident_grid, launch.cuh: exactly as many blocks as are resident at once, every
// block that fits a multiprocessor, each warp walking several rows, the next row's loads issued
// before the current one is reduced; each output's summation order is that of one row per warp, so no
// partial last wave and the per-block prologue runs once per block). No kernel asks L2 for its own
// matrix. Removed on 2026-12-07 (third session), each slower where measured (figures in
// docs/benchmarks-cuda.md): no overlap, the L2 self-prefetch modes 1 / 2, one block per
// multiprocessor, and the earlier one-row-per-warp grids. Where the context's KernelPath has no pdl
// (device_caps.h), the same kernels are launched plainly.

// y[r] = (accumulate ? y[r] : 0) + W[r, :] · x for r < rows. x: [cols] in xt (F32 or the weights'
// dtype wt); W: [rows, cols] in wt (F32 or BF16); y float32. cols must be a multiple of 8.
void gemv(const void* x, DType xt, const void* w, DType wt, int64_t rows, int64_t cols, float* y, bool accumulate,
          const KernelPath& path, cudaStream_t s);

// The same with x = rmsnorm(xf) computed in the kernel, exactly as rmsnorm() (norm.cuh) computes it
// and rounded to wt (what the library path feeds the product). h_out (optional, [cols] in wt)
// receives that normalized row.
void gemv_rmsnorm(const float* xf, const float* norm_w, float eps, const void* w, DType wt, int64_t rows, int64_t cols,
                  float* y, bool accumulate, void* h_out, const KernelPath& path, cudaStream_t s);

}  // namespace segpipe::cuda
